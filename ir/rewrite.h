// Bottom-up rewriting of expression DAGs (after Halide's IRMutator), shared by the passes:
// shared nodes are visited once and stay shared, unchanged nodes are returned as they are.
#pragma once

#include <functional>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "ir/kernel.h"

namespace fuseopt::ir {

/// Rewrites expressions bottom-up: `visit` sees each node with its operands already
/// rewritten (via with_operands) and returns its replacement. Results are remembered per
/// node for the rewriter's lifetime, so one rewriter can serve a whole kernel.
class ExprRewriter {
 public:
  using Visit = std::function<Expr(const Expr&)>;
  explicit ExprRewriter(Visit visit) : visit_(std::move(visit)) {}

  Expr operator()(const Expr& e);

 private:
  Visit visit_;
  std::unordered_map<const ExprNode*, Expr> done_;
  std::vector<Expr> keep_alive_;  ///< the keys of done_, so no address is reused
};

/// Applies `rewrite` to every expression root of `kernel`: prologue values, reduction
/// bodies, buffer stores and scalar stores.
Kernel rewrite_exprs(const Kernel& kernel, const std::function<Expr(const Expr&)>& rewrite);

/// Adds the name of every Var in `e` to `names`.
void collect_var_names(const Expr& e, std::set<std::string>& names);

}  // namespace fuseopt::ir

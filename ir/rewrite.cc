// Bottom-up rewriting of expression DAGs, the machinery under every pass.
#include "ir/rewrite.h"

#include <unordered_set>

namespace fuseopt::ir {

Expr ExprRewriter::operator()(const Expr& e) {
  if (e == nullptr) return e;
  auto found = done_.find(e.get());
  if (found != done_.end()) return found->second;
  std::vector<Expr> operands;
  operands.reserve(e->operands.size());
  for (const Expr& operand : e->operands) operands.push_back((*this)(operand));
  Expr result = visit_(with_operands(e, std::move(operands)));
  // Keep `e` alive while it is a key, so its address is never reused by a new node.
  done_.emplace(e.get(), result);
  keep_alive_.push_back(e);
  return result;
}

Kernel rewrite_exprs(const Kernel& kernel, const std::function<Expr(const Expr&)>& rewrite) {
  Kernel result = kernel;
  for (Phase& phase : result.phases) {
    for (ScalarDef& def : phase.prologue) def.value = rewrite(def.value);
    for (Reduction& reduction : phase.reductions) reduction.body = rewrite(reduction.body);
    for (Store& store : phase.stores) store.value = rewrite(store.value);
  }
  for (Store& store : result.scalar_stores) store.value = rewrite(store.value);
  return result;
}

namespace {

void collect(const Expr& e, std::set<std::string>& names,
             std::unordered_set<const ExprNode*>& seen) {
  if (e == nullptr || !seen.insert(e.get()).second) return;
  if (e->kind == NodeKind::kVar) names.insert(e->name);
  for (const Expr& operand : e->operands) collect(operand, names, seen);
}

}  // namespace

void collect_var_names(const Expr& e, std::set<std::string>& names) {
  std::unordered_set<const ExprNode*> seen;
  collect(e, names, seen);
}

}  // namespace fuseopt::ir

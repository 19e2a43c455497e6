// Semantic checks: names, types (number or boolean, scalar or element), what may be
// assigned, declarations. Reports every problem it finds, plus the language's warnings.
// Checks that depend on option values (a `when` state used where its option is false)
// happen in lowering, which runs once per option combination.
#pragma once

#include "frontend/ast.h"
#include "support/diagnostics.h"

namespace fuseopt::frontend {

/// Checks `module`; returns true when it has no errors (warnings allowed).
bool check_semantics(const ast::Module& module, support::Diagnostics& diags);

/// The functions of the language and their argument counts, for messages and docs.
struct FunctionInfo {
  enum class Kind { kMath, kIsFinite, kSelect, kReduction } kind;
  int arity;
};
const FunctionInfo* find_function(const std::string& name);
std::vector<std::string> function_names();

}  // namespace fuseopt::frontend

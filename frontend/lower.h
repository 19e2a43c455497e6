// Lowering: a checked AST plus one value per option -> an unsplit IR Kernel. Options are
// compile-time constants: `if OPTION` keeps only the taken branch. A scalar `if` becomes
// selects of both branches' results. Reductions become Kernel reductions.
#pragma once

#include <optional>
#include <vector>

#include "frontend/ast.h"
#include "ir/kernel.h"
#include "support/diagnostics.h"

namespace fuseopt::frontend {

/// Lowers `module` (which passed check_semantics) with `options` (every option of the rule,
/// in declaration order). Errors that depend on option values, such as a `when` state used
/// where its option is false, go to `diags`; then the result is empty.
std::optional<ir::Kernel> lower_to_ir(const ast::Module& module,
                                      const std::vector<ir::OptionValue>& options,
                                      support::Diagnostics& diags);

}  // namespace fuseopt::frontend

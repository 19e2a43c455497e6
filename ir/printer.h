// The stable text form of the IR, used by `fuseopt emit --ir`, logs and golden files.
#pragma once

#include <string>

#include "ir/kernel.h"

namespace fuseopt::ir {

/// Prints a scalar expression inline, e.g. `sub(1, pow(beta1, t))`.
std::string print_expr(const Expr& e);
/// Prints the whole kernel; element expressions as numbered lines, shared nodes once.
std::string print_kernel(const Kernel& kernel);

}  // namespace fuseopt::ir

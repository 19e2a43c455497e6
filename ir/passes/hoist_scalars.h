// Pass: Moves every scalar subexpression of an element expression into its phase's prologue as a named temporary (%N), so element code only reads scalar names.
#pragma once

#include "ir/kernel.h"

namespace fuseopt::ir {

/// Moves every scalar subexpression of an element expression into its phase's prologue as a named temporary (%N), so element code only reads scalar names.
Kernel hoist_scalars(const Kernel& kernel);

}  // namespace fuseopt::ir

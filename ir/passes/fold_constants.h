// Pass: Folds operations on constants and exact identities (x*1, x/1, x-0, select on a constant), with the arithmetic of eval.h.
#pragma once

#include "ir/kernel.h"

namespace fuseopt::ir {

/// Folds operations on constants and exact identities (x*1, x/1, x-0, select on a constant), with the arithmetic of eval.h.
Kernel fold_constants(const Kernel& kernel);

}  // namespace fuseopt::ir

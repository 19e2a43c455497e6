// Checks a Kernel's invariants; the pass pipeline runs it after every pass.
#pragma once

#include "ir/kernel.h"

namespace fuseopt::ir {

/// Throws InternalError describing the first broken invariant.
void verify(const Kernel& kernel);

}  // namespace fuseopt::ir

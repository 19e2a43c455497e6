// Pass: Makes structurally equal expressions one shared node, across the whole kernel.
#pragma once

#include "ir/kernel.h"

namespace fuseopt::ir {

/// Makes structurally equal expressions one shared node, across the whole kernel.
Kernel eliminate_common_subexpressions(const Kernel& kernel);

}  // namespace fuseopt::ir

// Pass: Drops prologue temporaries and reductions nothing uses.
#pragma once

#include "ir/kernel.h"

namespace fuseopt::ir {

/// Drops prologue temporaries and reductions nothing uses.
Kernel eliminate_dead_code(const Kernel& kernel);

}  // namespace fuseopt::ir

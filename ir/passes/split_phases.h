// Pass: Puts each reduction in the first phase after the reductions it uses, and the stores in the last phase; sets is_split.
#pragma once

#include "ir/kernel.h"

namespace fuseopt::ir {

/// Puts each reduction in the first phase after the reductions it uses, and the stores in the last phase; sets is_split.
Kernel split_phases(const Kernel& kernel);

}  // namespace fuseopt::ir

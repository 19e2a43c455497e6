// The optimisation pipeline over a freshly lowered Kernel, in order, with the verifier run
// after every pass. One straight-line function lists it (after Halide's Lower.cpp).
#pragma once

#include <ostream>

#include "ir/kernel.h"

namespace fuseopt::ir {

struct PipelineOptions {
  /// When set, the IR is printed here after each pass, headed by the pass's name.
  std::ostream* print_after_each = nullptr;
};

/// fold_constants, eliminate_common_subexpressions, eliminate_dead_code, split_phases,
/// hoist_scalars, eliminate_common_subexpressions, eliminate_dead_code.
Kernel optimize(Kernel kernel, const PipelineOptions& options = {});

}  // namespace fuseopt::ir

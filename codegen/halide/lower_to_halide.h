// IR phase -> Halide pipeline, the first half of the CPU backend (cpu_codegen.cc compiles and
// links the result). Internal to codegen/halide: it includes Halide.h, which no header
// outside this folder may expose.
#pragma once

#include <Halide.h>

#include <cstddef>
#include <string>
#include <vector>

#include "codegen/halide/cpu_schedule.h"
#include "ir/kernel.h"

namespace fuseopt::codegen {

/// Lanes of the per-chunk partial accumulators of a reduction. Fixed, not taken from the
/// schedule, so a chunk's partial result depends on the chunk's data alone.
inline constexpr int kReductionLanes = 32;

/// One phase as a Halide pipeline, ready for compile_to_module.
struct HalidePhase {
  Halide::Pipeline pipeline;
  /// The inputs in the calling convention's order (buffers, scalars, then for a phase with
  /// stochastic stores the first index and the keys; cpu_codegen.h); Halide appends
  /// the outputs in the pipeline's output order (the stores' Tuple, then each reduction).
  std::vector<Halide::Argument> arguments;
  /// Every Func defined, in definition order, for describing the pipeline.
  std::vector<Halide::Func> funcs;
  /// The scheduling calls applied, one per line, as C++.
  std::string schedule;
};

/// The buffers phase `phase` of `kernel` stores with stochastic rounding, in buffer order:
/// one rounding key argument each, in this order (cpu_codegen.h, the calling convention).
std::vector<size_t> stochastic_store_buffers(const ir::Kernel& kernel, size_t phase);

/// Lowers phase `phase` of `kernel` (verified, split, scalars hoisted so element code reads
/// only names and constants). Throws InternalError for IR a backend cannot take.
HalidePhase lower_phase_to_halide(const ir::Kernel& kernel, size_t phase,
                                  const CpuSchedule& schedule);

}  // namespace fuseopt::codegen

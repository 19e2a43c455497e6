// Loss scaling and global-norm gradient clipping for any rule: the gradient every phase
// reads becomes `(grad * unscale) * clip`, two float32 multiplications (as PyTorch's
// GradScaler.unscale_ and clip_grad_norm_ apply them one after the other), where the two
// factors come from statistics of the whole group's gradients, gathered before the step:
//
//   unscale = f32(1 / grad_scale)                         (1 without loss scaling)
//   total   = sqrt(sum over tensors, in group order, of sum over elements of (grad*unscale)^2)
//   clip    = f32(min(1, max_grad_norm / (total + 1e-6)))  (1 without clipping)
//
// The sums are float64 in a fixed order, so the result does not depend on threads or
// chunking. With loss scaling, a non-finite unscaled gradient anywhere in the group skips the
// whole step: parameters, states, scalars and step counts stay as they were. So does a
// nonzero `found_inf` hyper: what PyTorch's GradScaler found, passed in as its fused
// optimizers take it (the step then skips whatever this group's own check says).
//
// The statistics are the kernel's own phase 0 (two per-tensor reductions, no stores), so every
// backend computes them with the code it has for reductions. The factors reach kernels as two
// hidden hypers (kGradUnscaleInput, kGradClipInput): the runtime sets the unscale factor
// before the step and the clip factor after phase 0, once it has combined every tensor's
// statistics in group order. Nothing is stored before the last phase, so a skipped step
// changes nothing.
#pragma once

#include <span>

#include "ir/kernel.h"

namespace fuseopt::ir {

inline constexpr const char* kGradScaleHyper = "grad_scale";       ///< loss scale, default 1
inline constexpr const char* kMaxGradNormHyper = "max_grad_norm";  ///< clipping threshold
/// With loss scaling: nonzero skips the step (an inf or NaN found elsewhere), default 0.
inline constexpr const char* kFoundInfHyper = "found_inf";
inline constexpr const char* kGradUnscaleInput = "%grad_unscale";  ///< hidden, set per step
inline constexpr const char* kGradClipInput = "%grad_clip";        ///< hidden, set per step
/// Phase 0's reductions: sum((grad*unscale)^2) and max(isfinite(grad*unscale) ? 0 : 1).
inline constexpr const char* kGradSumOfSquares = "%grad_sumsq";
inline constexpr const char* kGradNonFinite = "%grad_nonfinite";

/// Rewrites every phase's reads of `grad`, prepends the statistics phase and adds the hypers
/// the transform needs (grad_scale = 1 and found_inf = 0 with loss scaling, max_grad_norm = 1
/// with clipping, and the two hidden factors). The
/// kernel must be split and have no transform yet; neither flag leaves it unchanged. Throws
/// UserError when the rule declares a hyper of one of those names or a state that starts as
/// the gradient.
void apply_grad_transform(Kernel& kernel, GradTransform transform);

/// Whether a device backend can decide the step on the device (combine phase 0's statistics,
/// skip and clip there, with no host round trip): the kernel has a transform, its element
/// code reads the hidden factors only as the phase scalars kGradUnscaleInput and
/// kGradClipInput themselves (no prologue temporary derives from them), phase 0 reads no
/// clip factor, and nothing after phase 0 needs the host between phases (no reductions, no
/// scalar stores). LAMB-like rules, whose later phases reduce, decide on the host.
bool can_decide_on_device(const Kernel& kernel);

/// Whether `name` is a hyper users set (not one of the hidden factors).
bool is_user_hyper(const std::string& name);

/// One tensor's (or a group's) statistics, combined in group order.
struct GradStatistics {
  double sum_of_squares = 0;
  bool nonfinite = false;
  void add(double tensor_sum_of_squares, double tensor_nonfinite) {
    sum_of_squares += tensor_sum_of_squares;
    // An empty tensor's max is the identity, -inf: only a 1 means a non-finite gradient.
    nonfinite = nonfinite || tensor_nonfinite > 0;
  }
};

/// What a step does with the group's statistics.
struct GradFactors {
  bool skip = false;   ///< loss scaling saw inf or NaN, or found_inf was set: take no step
  double unscale = 1;  ///< the hidden hypers' values (already rounded to float32)
  double clip = 1;
  double total_norm = 0;  ///< of the unscaled gradients (before clipping)
};

/// The unscale factor of the kernel's grad_scale hyper (1 without loss scaling), which the
/// runtime gives the hidden hyper before the step. `hypers` follows kernel.hypers. A UserError for
/// a grad_scale that is not positive and finite.
double grad_unscale_factor(const Kernel& kernel, std::span<const double> hypers);
/// The kernel's max_grad_norm hyper (1 without clipping), which the clip factor divides. A
/// UserError for a value that is negative or not finite.
double max_grad_norm(const Kernel& kernel, std::span<const double> hypers);
/// The factors of a step from the group's statistics.
GradFactors grad_factors(const Kernel& kernel, std::span<const double> hypers,
                         const GradStatistics& statistics);

}  // namespace fuseopt::ir

// The reference interpreter: runs a Kernel exactly as the IR defines it (f64 host scalars,
// f32 element math, reductions accumulated in f64 in element order, tensors one after
// another). Every backend is tested against it.
//
// Buffers are float arrays whatever their storage type: a bf16 or f16 buffer holds values of
// that type (support/low_precision.h), which loads take as they are and stores round to, to
// nearest even or stochastically. Backends store those types in two bytes and must produce
// the same values.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "ir/grad_transform.h"
#include "ir/kernel.h"

namespace fuseopt::ir {

/// One tensor of a group: its element count, its buffers and its scalar states.
struct TensorArgs {
  int64_t numel = 0;
  /// One pointer per Kernel::buffers entry, in that order (param, grad, states...).
  /// The grad buffer is only read.
  std::vector<float*> buffers;
  /// One value per Kernel::scalars entry; initialize() sets them, step() updates them.
  std::vector<double> scalars;
};

class Interpreter {
  struct Program;  ///< the kernel compiled to instruction lists, built once

 public:
  /// `kernel` must be verified and split into phases; it is copied.
  explicit Interpreter(Kernel kernel);

  const Kernel& kernel() const { return kernel_; }

  /// Fills every state buffer and scalar state as its declaration says, before step 1.
  /// States whose entry in `already_filled` (indexed like Kernel::buffers) is true are kept.
  void initialize(TensorArgs& tensor, std::span<const double> hypers,
                  const std::vector<bool>& already_filled = {}) const;

  /// Runs step `t` (1 on the first step) over every tensor. `hypers` follows Kernel::hypers.
  /// With a gradient transform (ir/grad_transform.h), first gathers the group's gradient
  /// statistics and sets the hidden factors itself (their values in `hypers` are ignored);
  /// returns false, changing nothing, when loss scaling skips the step. True otherwise.
  bool step(std::span<TensorArgs> tensors, std::span<const double> hypers, int64_t t) const;

  /// The factors the group's gradients give under the kernel's transform (what step() uses):
  /// runs phase 0, the statistics, over every tensor (it stores nothing).
  GradFactors grad_factors_for(std::span<TensorArgs> tensors, std::span<const double> hypers) const;

  // ---- Pieces of a step, for runtimes that cut tensors into chunks -------------------------

  /// Runs the element code of phase `phase` over `count` elements: `buffers` holds one
  /// pointer per Kernel::buffers entry at the chunk's first element, `scalar_inputs` the
  /// values of phase_scalar_inputs(phase) in that order, and `partials` receives one value
  /// per reduction, accumulated in f64 in element order from the reduction's identity.
  /// Stores are written after all values of a block are computed, so in-place use is safe.
  /// The kernel's element code must read only scalar names and constants (as ir::optimize
  /// leaves it). Safe to call from several threads at once.
  void run_phase_chunk(size_t phase, int64_t count, float* const* buffers,
                       std::span<const double> scalar_inputs, double* partials) const;
  /// The same for kernels with stochastic stores: the chunk starts at element `first_index`
  /// of its tensor, and `keys` holds one rounding stream key per Kernel::buffers entry
  /// (rounding_stream_key(rounding_seed(...), t, rounding_stream(tensor, buffer))).
  void run_phase_chunk(size_t phase, int64_t count, float* const* buffers,
                       std::span<const double> scalar_inputs, double* partials,
                       int64_t first_index, std::span<const uint32_t> keys) const;

  /// The host side of one tensor's step, computed exactly as step() does: start(), then per
  /// phase run_prologue(), scalar_inputs() and set_reductions(), then finish(). Reusable
  /// across steps and tensors (start() resets it); not shared between threads.
  class HostStep {
   public:
    explicit HostStep(const Interpreter& interpreter);

    /// Binds the hypers (Kernel::hypers order), `t`, `numel` and the scalar states' values.
    void start(std::span<const double> hypers, int64_t t, int64_t numel,
               std::span<const double> scalars);
    /// Evaluates phase `phase`'s prologue (every earlier phase's reductions must be set).
    void run_prologue(size_t phase);
    /// The f64 values of phase_scalar_inputs(phase), in that order.
    void scalar_inputs(size_t phase, std::span<double> out) const;
    /// Sets the results of phase `phase`'s reductions, in Kernel order.
    void set_reductions(size_t phase, std::span<const double> results);
    /// Replaces hyper `index`'s value (Kernel::hypers order) for the prologues still to run:
    /// how the runtime sets the gradient clip factor after phase 0 (ir/grad_transform.h).
    void set_hyper(size_t index, double value);
    /// Evaluates the scalar stores (all from the step's starting values) into `scalars`.
    void finish(std::span<double> scalars);

   private:
    std::shared_ptr<const Program> program_;
    std::vector<double> slots_;
  };

 private:
  Kernel kernel_;
  std::shared_ptr<const Program> program_;

  struct TensorStep;
  void start_tensor(TensorStep& state, const TensorArgs& tensor, size_t tensor_index,
                    std::span<const double> hypers, int64_t t, uint64_t seed) const;
  void run_tensor_phase(TensorStep& state, TensorArgs& tensor, size_t phase) const;
  void finish_tensor(TensorStep& state, TensorArgs& tensor) const;
  /// Sets the unscale factor in `hypers`, starts every tensor's step in `states` and runs
  /// phase 0 (the gradient statistics); returns the group's factors.
  GradFactors run_statistics(std::span<TensorArgs> tensors, std::vector<double>& hypers,
                             int64_t t, uint64_t seed, std::vector<TensorStep>& states) const;
};

/// The seed of a kernel's rounding stream: its rounding_seed hyper's value in `hypers`
/// (Kernel::hypers order). A UserError unless it is an integer in [0, 2^53).
uint64_t rounding_seed(const Kernel& kernel, std::span<const double> hypers);

/// Evaluates a host expression (f64 or bool, bools as 0 or 1) with eval.h's arithmetic;
/// `lookup` gives each Var's value. Each node is evaluated once per call, however often the
/// DAG shares it, and deep expressions do not recurse on the stack.
double evaluate_host(const Expr& e, const std::function<double(const std::string&)>& lookup);

}  // namespace fuseopt::ir

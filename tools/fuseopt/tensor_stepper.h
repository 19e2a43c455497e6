// One tensor stepped by the reference interpreter: owns the parameter, the gradient and
// every state buffer of a Kernel, and the step count. Used by `fuseopt run` and the demo.
// Values given for a bf16 or f16 buffer (the parameter, a gradient, a starting state) are
// rounded to nearest even into its type, as the runtime's Optimizer::write_*() does.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "ir/interpreter.h"
#include "ir/kernel.h"

namespace fuseopt::tools {

class TensorStepper {
 public:
  /// `kernel` is compiled (verified and split); `param` is the starting parameter.
  TensorStepper(ir::Kernel kernel, std::span<const float> param);

  const ir::Kernel& kernel() const { return interpreter_.kernel(); }
  int64_t numel() const { return numel_; }
  /// The number of steps run so far (the `t` of the last step).
  int64_t steps_done() const { return t_; }

  /// Gives state `name` its starting value instead of its INIT; only before the first step.
  /// `name` must be a state buffer of the kernel and `values` hold numel() elements.
  void set_state(const std::string& name, std::span<const float> values);

  /// Runs one step with `grad` (numel() elements) and `hypers` (Kernel::hypers order).
  /// The first call fills the states not given by set_state(), as the rule says.
  void step(std::span<const float> grad, std::span<const double> hypers);

  /// The current values of a buffer (by Kernel::buffers index): param, grad or a state.
  std::span<const float> buffer(size_t index) const;
  std::span<const float> param() const { return buffer(0); }
  /// The current scalar states, in Kernel::scalars order.
  const std::vector<double>& scalars() const { return args_.scalars; }

 private:
  ir::Interpreter interpreter_;
  int64_t numel_;
  std::vector<std::vector<float>> storage_;  // one per Kernel::buffers entry
  std::vector<bool> given_;                  // set_state() filled it
  ir::TensorArgs args_;
  int64_t t_ = 0;
};

}  // namespace fuseopt::tools

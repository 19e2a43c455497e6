// The reference interpreter: runs a Kernel exactly as the IR defines it (f64 host scalars,
// f32 element math, reductions accumulated in f64 in element order, tensors one after
// another). Every backend is tested against it.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

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
 public:
  /// `kernel` must be verified and split into phases; it is copied.
  explicit Interpreter(Kernel kernel);

  const Kernel& kernel() const { return kernel_; }

  /// Fills every state buffer and scalar state as its declaration says, before step 1.
  /// States whose entry in `already_filled` (indexed like Kernel::buffers) is true are kept.
  void initialize(TensorArgs& tensor, std::span<const double> hypers,
                  const std::vector<bool>& already_filled = {}) const;

  /// Runs step `t` (1 on the first step) over every tensor. `hypers` follows Kernel::hypers.
  void step(std::span<TensorArgs> tensors, std::span<const double> hypers, int64_t t) const;

 private:
  struct Program;  ///< the kernel compiled to instruction lists, built once
  Kernel kernel_;
  std::shared_ptr<const Program> program_;
};

}  // namespace fuseopt::ir

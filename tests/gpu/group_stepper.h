// The host side of a step for GPU tests and benchmarks, without the Optimizer: per tensor,
// each phase's prologue in f64, its scalar inputs rounded to f32, the rounding keys of
// stochastic stores (as the Optimizer makes them), one run_group() call per phase, reduction
// results fed to later phases, and the scalar-state updates after the last.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "codegen/cuda/cuda_codegen.h"
#include "ir/kernel.h"
#include "runtime/cuda/cuda_kernel.h"
#include "runtime/kernel_abi.h"

namespace fuseopt::gpu_testing {

class GroupStepper {
 public:
  /// Hypers start at their defaults and scalar states at their initial values.
  GroupStepper(const ir::Kernel& kernel, std::vector<int64_t> numels);
  ~GroupStepper();

  size_t tensor_count() const { return numels_.size(); }
  std::vector<double>& hypers() { return hypers_; }
  /// Scalar states of `tensor`, in ir::Kernel::scalars order.
  std::vector<double>& scalars(size_t tensor) { return scalars_[tensor]; }

  /// One step `t` (1 on the first) over device buffers (tensor-major, one pointer per
  /// ir::Kernel::buffers entry). `group_version` goes to GroupArgs unchanged.
  void step(const runtime::CompiledKernel& compiled, std::span<void* const> buffers,
            uint64_t group_version, int64_t t);

  /// The reductions of `phase` at the last step: tensor_count x reductions.
  const std::vector<double>& reductions(size_t phase) const { return reductions_[phase]; }

 private:
  struct Program;
  std::unique_ptr<Program> program_;
  std::vector<int64_t> numels_;
  std::vector<double> hypers_;
  std::vector<std::vector<double>> scalars_;
  std::vector<std::vector<double>> reductions_;
  std::vector<float> scalar_rows_;
};

/// The loader's view of a compiled binary.
runtime::CudaBinaryView view_of(const codegen::CudaBinary& binary);

}  // namespace fuseopt::gpu_testing

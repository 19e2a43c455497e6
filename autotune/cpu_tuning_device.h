// The CPU as a TuningDevice: configs run through the real runtime (Optimizer: prologue,
// chunking, thread pool) on scratch tensors the device owns. The user's tensors are never
// touched: tuning happens on synthetic data of the problem's size, restored from a
// pristine copy before every sample, and each config is checked against the interpreter
// (the same runtime with the interpreter backend) before it is timed.
#pragma once

#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "autotune/tuner.h"
#include "ir/kernel.h"
#include "runtime/kernel_abi.h"
#include "runtime/optimizer.h"

namespace fuseopt::autotune {

struct CpuProblem {
  int64_t elements = 1;  ///< all tensors together
  int64_t tensors = 1;   ///< the elements are split evenly over this many tensors
};

class CpuTuningDevice final : public TuningDevice {
 public:
  /// Loads (compiling if need be) the kernel for a config, with the config's chunk size.
  using Loader = std::function<std::shared_ptr<const runtime::CompiledKernel>(const Config&)>;

  /// `kernel` is the split, optimized IR the loader compiles; hypers take their defaults.
  CpuTuningDevice(ir::Kernel kernel, CpuProblem problem, Loader loader,
                  int64_t memory_limit_bytes = int64_t{1} << 30);
  ~CpuTuningDevice() override;

  void prepare(const Config& config) override;
  std::string check(const Config& config) override;
  void restore(const Config& config) override;
  void run(const Config& config, int64_t iterations) override;
  std::string environment_json() override;

  /// A copy of a scratch parameter as `config`'s runner holds it now (for tests).
  std::vector<float> scratch_param(const Config& config, size_t tensor);

  /// Bytes a step reads and writes per element (every buffer a phase loads, every store).
  double bytes_per_element() const { return bytes_per_element_; }

  /// Relative and absolute tolerance of the correctness check: |got - want| <= kRelative *
  /// |want| + kAbsolute * (largest |want| of that buffer). Backends reorder f64 reduction
  /// sums and use their own exp/log/pow (within a few ulp); a wrong kernel is off by far more.
  static constexpr double kRelativeTolerance = 1e-5;
  static constexpr double kAbsoluteTolerance = 1e-6;

 private:
  struct Data;  // pristine tensors for a problem
  struct Runner;
  Runner& runner(const Config& config);
  std::shared_ptr<const runtime::CompiledKernel> kernel_for(const Config& config);

  ir::Kernel kernel_;
  CpuProblem problem_;
  Loader loader_;
  int64_t memory_limit_;
  double bytes_per_element_ = 0;
  std::unique_ptr<Data> timing_data_;
  std::map<Config, std::shared_ptr<const runtime::CompiledKernel>> kernels_;
  // Optimizers kept for reuse, most recently used first, within memory_limit_.
  std::list<std::pair<Config, std::unique_ptr<Runner>>> runners_;
  // Interpreter results per chunk size for the correctness check.
  std::map<int64_t, std::vector<std::vector<float>>> references_;
};

}  // namespace fuseopt::autotune

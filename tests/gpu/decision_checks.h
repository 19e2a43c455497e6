// Checks of a gradient transform decided on the device (Optimizer::set_decide_on_device):
// the same group and steps on a device kernel deciding on the device and on the interpreter
// deciding on the host, compared bit for bit after every step. Written once for any device:
// tests/gpu runs them on the GPU, tests/codegen_cuda on the CPU emulation.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "runtime/cuda/cuda_device.h"
#include "runtime/kernel_abi.h"

namespace fuseopt::gpu_testing {

/// A float in device memory, e.g. GradScaler's scale or found_inf.
class DeviceFloat {
 public:
  DeviceFloat(const runtime::CudaDevice& device, float value);
  void set(float value) const;
  float get() const;
  void* pointer() const { return reinterpret_cast<void*>(memory_.get()); }

 private:
  runtime::CudaBuffer memory_;
  const runtime::CudaDevice& device_;
};

/// "" when `a` and `b` hold the same bits, else where and how they first differ.
std::string first_difference(const std::vector<float>& a, const std::vector<float>& b);

/// Sees each of the device optimizer's steps: `step` runs it; `group_changed` says whether
/// tensors were left out or taken back since the last step (or it is the first), which
/// uploads a new tensor table.
using DecisionStepObserver =
    std::function<void(const std::function<void()>& step, bool group_changed)>;

/// Steps an Optimizer of `device_kernel` (device memory on `device`, deciding on the device)
/// and one of `host_kernel` (the same IR deciding on the host, e.g. the interpreter at the
/// same chunk size) through the same steps: new gradients each step, carrying a loss scale
/// of 1024 or 512; with clipping, a max_grad_norm so small that every step clips; with loss
/// scaling, a step with an inf gradient, one with found_inf set (a device float on the
/// device, the hyper on the host), one reading grad_scale from a device float, and one with
/// both; then a tensor left out and taken back. After every step: skipped or not (and
/// found_inf set to 1 on a skip), the gradient norm, step counts, parameters and states, bit
/// for bit. "" when all agree, else
/// the first difference.
std::string compare_device_decision(
    const std::shared_ptr<const runtime::CompiledKernel>& device_kernel,
    const std::shared_ptr<const runtime::CompiledKernel>& host_kernel,
    const runtime::CudaDevice& device, const std::vector<int64_t>& numels,
    const DecisionStepObserver& observe);

}  // namespace fuseopt::gpu_testing

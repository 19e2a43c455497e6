// Checks of a CUDA backend against the interpreter, written once for any runtime::CudaDevice:
// tests/gpu runs them on the GPU, tests/codegen_cuda on a CPU emulation of the generated code.
// A group is many tensors of mixed sizes in device memory, some as views misaligned by one
// float, optionally with the gradient aliasing the parameter; each check runs a few steps on
// the device and on the interpreter from the same values and compares.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "codegen/cuda/cuda_codegen.h"
#include "ir/interpreter.h"
#include "ir/kernel.h"
#include "runtime/cuda/cuda_device.h"
#include "runtime/kernel_abi.h"

namespace fuseopt::gpu_testing {

/// n values uniform in [-1, 1), the same for a seed.
std::vector<float> random_values(size_t n, uint32_t seed);
/// "0.100000001 (0x3dcccccd)": a float's value and bits, for failure messages.
std::string describe_float(float x);
/// Whether any phase of `kernel` has a reduction (its sums may be added in another order).
bool has_reductions(const ir::Kernel& kernel);

struct GroupSpec {
  std::vector<int64_t> numels;
  /// Tensors whose buffers start one float after a 256-byte boundary (no vector loads).
  std::vector<bool> misaligned;
  /// The gradient buffer is the parameter's memory (a kernel must read before it writes).
  bool grad_aliases_param = false;
};

/// The sizes of the issue: 1, 3, 7, 8, 15, 16, 17, 31, 33, 1000003 (unless `large` is
/// false), around `chunk` (chunk - 1, chunk, chunk + 1, 2 chunk + 3), and `many` more of
/// random sizes up to 5000, every third of them misaligned, plus an empty tensor.
GroupSpec mixed_group(int64_t chunk, bool large, size_t many, uint32_t seed);

/// A group in device memory, with the same values on the host for the interpreter.
class DeviceGroup {
 public:
  DeviceGroup(const runtime::CudaDevice& device, const ir::Kernel& kernel, GroupSpec spec,
              uint32_t seed);
  ~DeviceGroup();
  DeviceGroup(const DeviceGroup&) = delete;
  DeviceGroup& operator=(const DeviceGroup&) = delete;

  const GroupSpec& spec() const { return spec_; }
  /// Device pointers, tensor-major, one per ir::Kernel::buffers entry.
  const std::vector<void*>& device_buffers() const { return device_pointers_; }
  /// The host copy (the interpreter steps it).
  std::vector<ir::TensorArgs>& host() { return host_args_; }
  /// New random gradients, on the host and the device.
  void new_gradients(uint32_t seed);
  /// Every buffer as the device has it: [tensor][buffer][element].
  std::vector<std::vector<std::vector<float>>> read_device() const;
  /// Every buffer as the host has it.
  std::vector<std::vector<std::vector<float>>> read_host() const;
  /// Copies the host values to the device (all buffers).
  void upload() const;

 private:
  const runtime::CudaDevice& device_;
  const ir::Kernel& kernel_;
  GroupSpec spec_;
  std::vector<std::vector<std::vector<float>>> host_;  // [tensor][buffer]
  std::vector<ir::TensorArgs> host_args_;
  struct Allocation;
  std::vector<std::unique_ptr<Allocation>> allocations_;
  std::vector<void*> device_pointers_;
};

/// Hypers for checks: the defaults, with weight decay made non-zero so its code runs.
std::vector<double> check_hypers(const ir::Kernel& kernel);

/// Runs `steps` steps of `compiled` on `device` and of the interpreter on the same group and
/// returns "" when they agree: bit for bit (NaN equals NaN) when the kernel has no
/// reductions, otherwise within `reduction_ulps` ulps for buffers and 1e-9 relative for
/// scalar states (reductions are summed in another order). Otherwise a description of the
/// first differences.
std::string compare_with_interpreter(const runtime::CudaDevice& device,
                                     const runtime::CompiledKernel& compiled, const GroupSpec& spec,
                                     int steps, uint32_t seed, int reduction_ulps = 16);

/// Runs the same steps twice from the same values (reloading the group, with the table
/// cache cold then warm) and once more with `other` (the same binary with another grid
/// limit) and returns "" when all three give identical bits, reductions included.
std::string compare_repeated_runs(const runtime::CudaDevice& device,
                                  const runtime::CompiledKernel& compiled,
                                  const runtime::CompiledKernel& other, const GroupSpec& spec,
                                  int steps, uint32_t seed);

/// Distance in units in the last place between two floats (0 when both are NaN).
int64_t ulp_distance(float a, float b);

}  // namespace fuseopt::gpu_testing

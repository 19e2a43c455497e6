// Runs generated CUDA C on the CPU, to test code generation, the tensor table and the CUDA
// runtime's logic without a GPU: the generated files are compiled as C++ at build time
// (cuda_shim.h supplies what NVRTC would), every CUDA thread of a block is a fiber, and
// __syncthreads and warp shuffles are barriers between them. One launch at a time. EmulatedDevice is a runtime::CudaDevice whose
// memory is host memory and whose modules are the kernels compiled this way.
#pragma once

#include <atomic>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "codegen/cuda/cuda_source.h"
#include "ir/kernel.h"
#include "runtime/cuda/cuda_device.h"
#include "runtime/cuda/cuda_kernel.h"

namespace fuseopt::emulation {

struct Dim3 {
  unsigned int x = 0, y = 1, z = 1;
};

const Dim3& thread_index();
const Dim3& block_index();
const Dim3& grid_dim();
void sync_block();
double shuffle_down(double value, int offset);

/// The arguments of a generated function (codegen/cuda/cuda_source.h), pointers untyped.
struct LaunchArgs {
  const void* table = nullptr;
  const float* scalars = nullptr;
  unsigned int stride = 0;
  double* partials = nullptr;
  const unsigned int* rounding_keys = nullptr;
  void* gate = nullptr;
  const float* grad_scale = nullptr;
  float* found_inf = nullptr;
  double max_grad_norm = 1;
};

/// A function of an emulated kernel (a phase, or the decide function), called with them.
using KernelEntry = void (*)(const LaunchArgs& args);

/// One generated file compiled into the test, with what made it.
struct EmulatedKernel {
  std::string rule;  ///< a built-in rule, or "every_op" (tests/codegen_cuda/every_op_kernel.h)
  std::map<std::string, std::string> options;
  /// CompileOptions::storage style: buffer -> "bf16", "f16 stochastic", ... (empty: all f32)
  std::map<std::string, std::string> storage;
  int block_size = 0;
  int elements_per_thread = 0;
  int vector_width = 0;
  int64_t chunk_elements = 0;
  std::string source;  ///< the generated CUDA C it was compiled from
  std::vector<std::pair<std::string, KernelEntry>> functions;
};

/// Called by the generated test sources at start-up.
bool register_kernel(EmulatedKernel kernel);
const std::vector<EmulatedKernel>& emulated_kernels();

/// An emulated kernel ready for the loader: its IR rebuilt from rule, options and storage,
/// its source generated again (equal to EmulatedKernel::source unless the build is stale),
/// and the loader's view of it (the source as "PTX", which EmulatedDevice looks up).
struct Loaded {
  ir::Kernel kernel;
  codegen::CudaLaunchShape shape;
  codegen::CudaSource source;
  runtime::CudaBinaryView view;
};
Loaded prepare(const EmulatedKernel& emulated);

/// The gradient transform an emulated kernel's name asks for: "RULE+grad_transform" (loss
/// scaling and clipping), "RULE+loss_scaling", "RULE+clipping", or none.
inline ir::GradTransform transform_of(const std::string& rule) {
  if (rule.ends_with("+grad_transform")) return {true, true};
  if (rule.ends_with("+loss_scaling")) return {true, false};
  if (rule.ends_with("+clipping")) return {false, true};
  return {};
}

/// Runs `entry` over `grid` blocks of `block` threads, one block after another.
void run_grid(KernelEntry entry, unsigned int grid, unsigned int block, const LaunchArgs& args);

/// A CudaDevice on the CPU. load_module() takes the generated source as its "PTX" and finds
/// the kernel compiled from it.
class EmulatedDevice final : public runtime::CudaDevice {
 public:
  explicit EmulatedDevice(int sm_count = 2, int resident_blocks = 1);
  ~EmulatedDevice() override;

  const runtime::CudaDeviceInfo& device() const override { return info_; }
  runtime::CudaDevicePtr allocate(size_t bytes) const override;
  void free(runtime::CudaDevicePtr pointer) const noexcept override;
  void copy_to_device(runtime::CudaDevicePtr destination, const void* source,
                      size_t bytes) const override;
  void copy_to_host(void* destination, runtime::CudaDevicePtr source,
                    size_t bytes) const override;
  void copy_to_host_async(void* destination, runtime::CudaDevicePtr source,
                          size_t bytes) const override;
  void synchronize() const override { ++synchronizations; }
  runtime::CudaModule load_module(std::string_view cubin, std::string_view ptx) const override;
  runtime::CudaFunction function(runtime::CudaModule module,
                                 const std::string& name) const override;
  int resident_blocks_per_sm(runtime::CudaFunction function, int block_size) const override;
  void launch(runtime::CudaFunction function, unsigned grid, unsigned block,
              void** args) const override;

  mutable std::atomic<int> launches{0};
  mutable std::atomic<int> uploads{0};          ///< copy_to_device calls
  mutable std::atomic<int> downloads{0};        ///< copy_to_host calls (the host waits)
  mutable std::atomic<int> async_downloads{0};  ///< copy_to_host_async calls
  mutable std::atomic<int> synchronizations{0};
  mutable std::atomic<size_t> allocated{0};     ///< live allocations

 private:
  runtime::CudaDeviceInfo info_;
  int resident_blocks_;
  mutable std::mutex mutex_;
  mutable std::set<void*> live_;
};

}  // namespace fuseopt::emulation

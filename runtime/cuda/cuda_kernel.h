// Loading CUDA kernels: a cubin (or PTX) produced by codegen/cuda, read from a cache or pack,
// becomes a CompiledKernel whose group phases step a whole tensor group with one launch per
// phase. Needs only the driver (opened with dlopen): no NVRTC, compiler or toolkit.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/cuda/cuda_driver.h"
#include "runtime/kernel_abi.h"

namespace fuseopt::runtime {

/// What the loader needs of a CUDA binary (codegen::CudaBinary has these fields; the views
/// need to live only during load_cuda_kernel()).
struct CudaBinaryView {
  std::string name;
  std::string arch;        ///< "sm_90" or "compute_90", for messages
  std::string_view cubin;  ///< tried first; may be empty
  std::string_view ptx;    ///< used when the cubin is empty or for another GPU
  std::vector<std::string> phase_functions;
  int block_size = 512;
  int grid_limit = 0;  ///< 0: resident blocks per SM x SM count
  int64_t chunk_elements = 65536;
  std::string table_layout;  ///< must equal cuda_tensor_table_layout(buffer count)
};

/// The memory of `device` (which must outlive the result) as the Optimizer uses it:
/// allocations, copies and fills on the device's default stream.
std::shared_ptr<const DeviceMemory> make_cuda_device_memory(const CudaDevice& device);

/// Loads `binary`, compiled from `kernel`, on `device` (which must outlive the kernel). The
/// returned kernel has one GroupPhaseKernel per phase, device_memory = true, `device` =
/// make_cuda_device_memory(device) and backend "cuda":
///   - GroupArgs::buffers are device pointers to elements of each buffer's storage type
///     (4-byte f32, 2-byte bf16/f16), aligned to the element size; a chunk whose pointers are
///     all aligned to their vector size (16 bytes f32, 8 bytes bf16/f16 at vector width 4)
///     takes the vector path; the tensor table is uploaded only when group_version changes (0 means
///     "unknown": upload every call); group_version must be unique in the process for a
///     given set of tensors and pointers, since kernels are shared between optimizers;
///   - the per-tensor scalars are uploaded on every call (one row when all rows are equal);
///   - phases with stochastic stores read GroupArgs::rounding_keys (required for them) from a
///     device array uploaded when the keys change (every step);
///   - one launch per phase on the legacy default stream; only phases with reductions wait
///     for the device, to read the per-chunk partials back and combine them per tensor in
///     chunk order (GroupArgs::partials). Other calls return once the kernel is queued.
/// Throws UserError for a binary that does not match the kernel, EnvironmentError when the
/// device cannot run it.
std::shared_ptr<const CompiledKernel> load_cuda_kernel(ir::Kernel kernel,
                                                       const CudaBinaryView& binary,
                                                       const CudaDevice& device);
/// The same on the process's driver (CudaDriver::get()).
std::shared_ptr<const CompiledKernel> load_cuda_kernel(ir::Kernel kernel,
                                                       const CudaBinaryView& binary);

}  // namespace fuseopt::runtime

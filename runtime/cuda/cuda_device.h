// What running kernels needs of a CUDA device, as a small interface: the driver implements
// it (cuda_driver.h), and tests implement it with a fake that runs the generated code on the
// CPU, so the loader, tensor table and kernel logic are tested without a GPU.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace fuseopt::runtime {

/// A device address (CUdeviceptr).
using CudaDevicePtr = uint64_t;

struct CudaDeviceInfo {
  int ordinal = 0;
  std::string name;  ///< e.g. "NVIDIA H200"
  int sm_major = 0;  ///< compute capability
  int sm_minor = 0;
  int sm_count = 0;           ///< multiprocessors
  uint64_t total_memory = 0;  ///< bytes
  int driver_version = 0;     ///< e.g. 13000 for CUDA 13.0
  int max_threads_per_sm = 0;

  /// "sm_90".
  std::string arch() const;
};

/// Opaque handles.
struct CudaModuleHandle;
struct CudaFunctionHandle;
using CudaModule = CudaModuleHandle*;
using CudaFunction = CudaFunctionHandle*;
struct CudaFenceHandle;
/// A point in the default stream's queue (a CUevent without timing); null is a fence that
/// has always passed.
using CudaFence = CudaFenceHandle*;

class CudaDevice {
 public:
  virtual ~CudaDevice() = default;

  virtual const CudaDeviceInfo& device() const = 0;

  // Memory, synchronous with respect to the host and ordered after earlier launches.
  virtual CudaDevicePtr allocate(size_t bytes) const = 0;
  virtual void free(CudaDevicePtr pointer) const noexcept = 0;
  virtual void copy_to_device(CudaDevicePtr destination, const void* source,
                              size_t bytes) const = 0;
  virtual void copy_to_host(void* destination, CudaDevicePtr source, size_t bytes) const = 0;
  /// Device to device (ranges that do not overlap). The default goes through the host.
  virtual void copy_on_device(CudaDevicePtr destination, CudaDevicePtr source, size_t bytes) const;
  /// Sets `count` 32-bit words at `destination` (4-byte aligned) to `value`. The default
  /// uploads them from the host.
  virtual void fill_words(CudaDevicePtr destination, uint32_t value, size_t count) const;
  /// Sets `count` 16-bit elements at `destination` (2-byte aligned) to `value` (bf16 and f16
  /// buffers). The default uploads them from the host.
  virtual void fill_halves(CudaDevicePtr destination, uint16_t value, size_t count) const;
  /// Waits for all queued work; reports errors of earlier launches.
  virtual void synchronize() const = 0;

  // Asynchronous transfers: queued on the default stream after the work before them; the
  // host returns at once and does not wait for the device. What makes a step free of host
  // round trips: the per-step uploads and the read-back of a step's skip decision.
  /// Page-locked host memory (cuMemAllocHost) for the copies below. The defaults (used by
  /// the CPU emulation) are plain host memory and synchronous copies.
  virtual void* allocate_host(size_t bytes) const;
  virtual void free_host(void* pointer) const noexcept;
  /// Queues a copy from memory of allocate_host(), which must stay unchanged until a fence
  /// recorded after the copy has passed.
  virtual void copy_to_device_async(CudaDevicePtr destination, const void* source,
                                    size_t bytes) const;
  /// Queues a copy into memory of allocate_host(), whose contents are defined once a fence
  /// recorded after the copy has passed.
  virtual void copy_to_host_async(void* destination, CudaDevicePtr source, size_t bytes) const;
  virtual CudaFence create_fence() const;
  virtual void destroy_fence(CudaFence fence) const noexcept;
  /// Marks the current end of the queue.
  virtual void record_fence(CudaFence fence) const;
  /// Waits for the work before the fence's last record (not for later work); reports errors
  /// of earlier launches.
  virtual void wait_fence(CudaFence fence) const;

  /// Loads a module from `cubin` (tried first when not empty), else from `ptx`.
  virtual CudaModule load_module(std::string_view cubin, std::string_view ptx) const = 0;
  virtual CudaFunction function(CudaModule module, const std::string& name) const = 0;
  /// Blocks of `block_size` threads that fit on one multiprocessor at once.
  virtual int resident_blocks_per_sm(CudaFunction function, int block_size) const = 0;
  /// Queues a launch; `args` points at each kernel argument's value.
  virtual void launch(CudaFunction function, unsigned grid, unsigned block, void** args) const = 0;
};

/// Device memory owned by a scope.
class CudaBuffer {
 public:
  CudaBuffer() = default;
  CudaBuffer(const CudaDevice& device, size_t bytes);
  ~CudaBuffer();
  CudaBuffer(CudaBuffer&& other) noexcept;
  CudaBuffer& operator=(CudaBuffer&& other) noexcept;

  CudaDevicePtr get() const { return pointer_; }
  size_t bytes() const { return bytes_; }

 private:
  const CudaDevice* device_ = nullptr;
  CudaDevicePtr pointer_ = 0;
  size_t bytes_ = 0;
};

}  // namespace fuseopt::runtime

// The CUDA driver API, opened with dlopen: nothing links libcuda, so programs build and run
// on machines without a driver or GPU and report the absence clearly. Every failure names
// the driver call and the error (CUDA_ERROR_...): EnvironmentError when the machine lacks
// something (no driver, no device, the toolkit's stub library, out of memory, a binary for
// another GPU), InternalError otherwise.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "runtime/cuda/cuda_device.h"

namespace fuseopt::runtime {

/// Names the CUresult `code` ("CUDA_ERROR_NO_DEVICE"); works without a driver.
std::string cuda_error_name(int code);

struct CudaEventHandle;
using CudaEvent = CudaEventHandle*;

class CudaDriver final : public CudaDevice {
 public:
  /// Opens `library` (a name for the loader, or a path), resolves the entry points, calls
  /// cuInit and checks that a device exists. Throws EnvironmentError "no CUDA driver
  /// (LIBRARY not found): ..." when the library cannot be opened, and an EnvironmentError
  /// naming the error when cuInit fails (CUDA_ERROR_STUB_LIBRARY for the toolkit's stub,
  /// CUDA_ERROR_NO_DEVICE, ...).
  static std::unique_ptr<CudaDriver> open(const std::string& library = "libcuda.so.1",
                                          int device = 0);

  /// The process's driver on device 0 (or $FUSEOPT_CUDA_DEVICE), from libcuda.so.1 (or
  /// $FUSEOPT_CUDA_DRIVER), opened on first use. Every later call rethrows the same
  /// EnvironmentError when CUDA is unavailable.
  static CudaDriver& get();
  /// Why the process cannot use CUDA, in one line, or "" when it can. Never throws (for
  /// `--backend auto`, which then runs on the CPU).
  static std::string unavailable_reason();

  ~CudaDriver() override;
  CudaDriver(const CudaDriver&) = delete;
  CudaDriver& operator=(const CudaDriver&) = delete;

  const CudaDeviceInfo& device() const override { return device_; }
  const std::string& library() const { return library_; }

  /// Makes this driver's context (the device's primary context, shared with the CUDA
  /// runtime and PyTorch) current on the calling thread. Every method below does it.
  void make_current() const;

  // ---- Memory (synchronous with respect to the host, on the default stream) --------------
  CudaDevicePtr allocate(size_t bytes) const override;
  void free(CudaDevicePtr pointer) const noexcept override;
  void copy_to_device(CudaDevicePtr destination, const void* source, size_t bytes) const override;
  void copy_to_host(void* destination, CudaDevicePtr source, size_t bytes) const override;
  void copy_on_device(CudaDevicePtr destination, CudaDevicePtr source, size_t bytes) const override;
  void fill_words(CudaDevicePtr destination, uint32_t value, size_t count) const override;
  void fill_halves(CudaDevicePtr destination, uint16_t value, size_t count) const override;
  void fill_bytes(CudaDevicePtr destination, uint8_t value, size_t bytes) const;

  // ---- Asynchronous transfers and fences (cuda_device.h) ----------------------------------
  void* allocate_host(size_t bytes) const override;
  void free_host(void* pointer) const noexcept override;
  void copy_to_device_async(CudaDevicePtr destination, const void* source,
                            size_t bytes) const override;
  void copy_to_host_async(void* destination, CudaDevicePtr source, size_t bytes) const override;
  CudaFence create_fence() const override;
  void destroy_fence(CudaFence fence) const noexcept override;
  void record_fence(CudaFence fence) const override;
  void wait_fence(CudaFence fence) const override;

  // ---- Code ------------------------------------------------------------------------------
  /// Loads a module from `cubin` (tried first when not empty), else from `ptx` (compiled by
  /// the driver for this device). Modules stay loaded for the process's life.
  CudaModule load_module(std::string_view cubin, std::string_view ptx) const override;
  CudaFunction function(CudaModule module, const std::string& name) const override;
  /// Registers per thread of `function`, and its local (spill) memory per thread.
  int function_registers(CudaFunction function) const;
  int function_local_bytes(CudaFunction function) const;
  /// Blocks of `block_size` threads that fit on one multiprocessor at once.
  int resident_blocks_per_sm(CudaFunction function, int block_size) const override;
  /// Launches on the default stream; `args` points at each kernel argument's value.
  void launch(CudaFunction function, unsigned grid, unsigned block, void** args) const override;
  /// Waits for all work of the context; reports errors of earlier launches.
  void synchronize() const override;

  // ---- Timing ----------------------------------------------------------------------------
  CudaEvent create_event() const;
  void destroy_event(CudaEvent event) const noexcept;
  void record_event(CudaEvent event) const;
  /// Milliseconds between two recorded events (waits for `end`).
  float elapsed_ms(CudaEvent start, CudaEvent end) const;

  /// Throws for a failed driver call: `code` is a CUresult, `call` the function's name.
  void check(int code, const char* call) const;

 private:
  struct Api;
  CudaDriver() = default;
  std::unique_ptr<Api> api_;
  std::string library_;
  void* context_ = nullptr;
  int device_handle_ = 0;
  CudaDeviceInfo device_;
};

/// Device-to-device copy bandwidth in bytes per second (bytes read plus bytes written, as
/// memory-bound kernels are counted), the best of `repeats` copies of `bytes` bytes: the
/// reference that kernel bandwidths are compared with, measured in the same process.
double measure_copy_bandwidth(const CudaDriver& driver, size_t bytes, int repeats = 20);

}  // namespace fuseopt::runtime

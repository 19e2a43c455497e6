// The CUDA runtime's view of a device (runtime/cuda/cuda_device.h) as the tuner's
// GpuDescription. L2 size, memory bus width and memory clock are not in CudaDeviceInfo yet;
// until they are, they stay 0 and GPU device classes differ only by the rest.
#pragma once

#include <string>

#include "autotune/fingerprint.h"
#include "runtime/cuda/cuda_device.h"

namespace fuseopt::autotune {

inline GpuDescription describe_gpu(const runtime::CudaDeviceInfo& info) {
  GpuDescription gpu;
  gpu.name = info.name;
  gpu.sm_major = info.sm_major;
  gpu.sm_minor = info.sm_minor;
  gpu.sm_count = info.sm_count;
  gpu.memory_bytes = static_cast<int64_t>(info.total_memory);
  // cuDriverGetVersion's 12040 is "12.4".
  gpu.driver_version = std::to_string(info.driver_version / 1000) + "." +
                       std::to_string(info.driver_version % 1000 / 10);
  return gpu;
}

}  // namespace fuseopt::autotune

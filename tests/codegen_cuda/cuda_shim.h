// What NVRTC provides to generated CUDA C, for compiling it as C++ on the host
// (cuda_emulation.h runs it). Included only by the build-time generated emulation sources.
#pragma once

#include <math.h>

#include <cstring>

#include "tests/codegen_cuda/cuda_emulation.h"

#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(...)
// One block runs at a time, so a function's statics serve as its block's shared memory.
#define __shared__ static

#define threadIdx (::fuseopt::emulation::thread_index())
#define blockIdx (::fuseopt::emulation::block_index())
#define gridDim (::fuseopt::emulation::grid_dim())

struct alignas(16) float4 {
  float x, y, z, w;
};
struct alignas(8) float2 {
  float x, y;
};
struct alignas(8) ushort4 {
  unsigned short x, y, z, w;
};
struct alignas(4) ushort2 {
  unsigned short x, y;
};

inline float __int_as_float(unsigned int bits) {
  float value;
  std::memcpy(&value, &bits, sizeof(value));
  return value;
}

inline float __uint_as_float(unsigned int bits) {
  float value;
  std::memcpy(&value, &bits, sizeof(value));
  return value;
}

inline unsigned int __float_as_uint(float value) {
  unsigned int bits;
  std::memcpy(&bits, &value, sizeof(bits));
  return bits;
}

inline double __longlong_as_double(unsigned long long bits) {
  double value;
  std::memcpy(&value, &bits, sizeof(value));
  return value;
}

inline void __syncthreads() { ::fuseopt::emulation::sync_block(); }

inline double __shfl_down_sync(unsigned int, double value, int offset) {
  return ::fuseopt::emulation::shuffle_down(value, offset);
}

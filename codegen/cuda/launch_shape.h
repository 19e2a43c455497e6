// The launch shape of a generated CUDA kernel: the explicit parameters the autotuner
// searches. The shape is compiled into the code (loop bounds, unrolling) except the grid
// limit, which only the launch uses.
#pragma once

#include <cstdint>
#include <string>

namespace fuseopt::codegen {

struct CudaLaunchShape {
  /// Threads per block: a multiple of 32, at most 1024.
  int block_size = 512;
  /// Elements each thread handles per iteration of the main loop (elements_per_thread /
  /// vector_width loads in flight per buffer; a multiple of vector_width, at most 64). The
  /// last partial iteration and unaligned chunks take one vector or element per thread.
  int elements_per_thread = 8;
  /// Elements per load and store: 4 (16-byte float4), 2 (float2) or 1. Chunks whose
  /// pointers are not aligned to 4 * vector_width bytes take a one-element-per-thread loop.
  int vector_width = 4;
  /// Most blocks per launch; 0 fills the device (resident blocks per SM x SM count). The
  /// blocks stride over the chunk map, so every grid gives the same bits.
  int grid_limit = 0;
  /// Elements per chunk, a multiple of vector_width: the unit of the chunk map and of
  /// reduction partials (results depend on it, as on the CPU).
  int64_t chunk_elements = 65536;

  /// e.g. "b512_e8_v4_c65536_g0".
  std::string spelling() const;
  /// Throws UserError naming the first field out of range.
  void validate() const;

  bool operator==(const CudaLaunchShape&) const = default;
};

}  // namespace fuseopt::codegen

// The memory traffic of one step of a compiled kernel, read off its IR, in the bytes
// convention of bench/baselines.h: per phase, each buffer loaded counts its element size
// (4 bytes for f32, 2 for bf16 and f16), each buffer stored that size again, and each buffer
// stored but not loaded in that phase that size once more (write-allocate); phases are
// summed (a later phase streams its buffers again).
#pragma once

#include <cstdint>

#include "ir/kernel.h"

namespace fuseopt::bench {

struct KernelTraffic {
  int phases = 0;
  int buffer_reads = 0;       ///< buffers loaded, summed over phases
  int buffer_writes = 0;      ///< buffers stored, summed over phases
  int write_allocates = 0;    ///< buffers stored without being loaded in the same phase
  /// Bytes of the reads, writes and write-allocates per element, each buffer counted at its
  /// storage type's size.
  int64_t read_bytes = 0;
  int64_t write_bytes = 0;
  int64_t write_allocate_bytes = 0;
  /// read_bytes + write_bytes + write_allocate_bytes: the bytes that really move per element
  /// (f32 Adam: 28; bf16 param and grad with f32 states: 22).
  int64_t bytes_per_element = 0;
  /// read_bytes + write_bytes: STREAM's convention, for comparison with published figures.
  int64_t stream_bytes_per_element = 0;
  /// Some buffer is stored in two bytes (bf16 or f16).
  bool narrow = false;
};

KernelTraffic kernel_traffic(const ir::Kernel& kernel);

}  // namespace fuseopt::bench

// The memory traffic of one step of a compiled kernel, read off its IR, in the bytes
// convention of bench/baselines.h: per phase, each buffer loaded counts 4 bytes per element,
// each buffer stored 4 more, and each buffer stored but not loaded in that phase 4 more again
// (write-allocate); phases are summed (a later phase streams its buffers again).
#pragma once

#include <cstdint>

#include "ir/kernel.h"

namespace fuseopt::bench {

struct KernelTraffic {
  int phases = 0;
  int buffer_reads = 0;       ///< buffers loaded, summed over phases
  int buffer_writes = 0;      ///< buffers stored, summed over phases
  int write_allocates = 0;    ///< buffers stored without being loaded in the same phase
  /// 4 * (reads + writes + write_allocates): the bytes that really move per element.
  int64_t bytes_per_element = 0;
  /// 4 * (reads + writes): STREAM's convention, for comparison with published figures.
  int64_t stream_bytes_per_element = 0;
};

KernelTraffic kernel_traffic(const ir::Kernel& kernel);

}  // namespace fuseopt::bench

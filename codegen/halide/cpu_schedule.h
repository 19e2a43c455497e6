// The knobs of a CPU kernel, explicit so the autotuner can search them. Threads and chunk
// size belong to the runtime's cutting of the group; vector width and unroll to the code.
#pragma once

#include <cstdint>
#include <string>

namespace fuseopt::codegen {

struct CpuSchedule {
  int vector_width = 8;            ///< float32 lanes per vector operation (4, 8, 16)
  int unroll = 1;                  ///< vectors per loop iteration (1, 2, 4)
  int64_t chunk_elements = 16384;  ///< elements per task handed to a thread
  int threads = 0;                 ///< 0: every core

  /// "v8_u1_c16384", used in kernel names.
  std::string spelling() const;
  bool operator==(const CpuSchedule&) const = default;
};

/// The built-in heuristic: the host's widest float vector, unroll 2, 16384-element chunks.
CpuSchedule default_cpu_schedule();

}  // namespace fuseopt::codegen

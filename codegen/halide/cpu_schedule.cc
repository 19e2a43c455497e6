// The CPU schedule's spelling (part of kernel names) and the built-in heuristic used before
// the autotuner has measured anything.
#include "codegen/halide/cpu_schedule.h"

namespace fuseopt::codegen {

std::string CpuSchedule::spelling() const {
  return "v" + std::to_string(vector_width) + "_u" + std::to_string(unroll) + "_c" +
         std::to_string(chunk_elements);
}

CpuSchedule default_cpu_schedule() {
  CpuSchedule schedule;
  // The widest float vector the host has. Update rules are memory-bound streams, so wider
  // than the hardware buys nothing and costs register spills.
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) {
    schedule.vector_width = 16;
  } else if (__builtin_cpu_supports("avx")) {
    schedule.vector_width = 8;
  } else {
    schedule.vector_width = 4;
  }
  // Two vectors per iteration hide the latency of sqrt and division in Adam-like rules
  // (measured on fp32 Adam; see codegen/halide/README.md).
  schedule.unroll = 2;
  schedule.chunk_elements = 16384;
  schedule.threads = 0;
  return schedule;
}

}  // namespace fuseopt::codegen

// The CPU schedule's spelling and built-in heuristic.
#include "codegen/halide/cpu_schedule.h"

#include <gtest/gtest.h>

namespace fuseopt::codegen {
namespace {

TEST(CpuSchedule, SpellsItsKnobs) {
  CpuSchedule schedule;
  schedule.vector_width = 8;
  schedule.unroll = 1;
  schedule.chunk_elements = 16384;
  EXPECT_EQ(schedule.spelling(), "v8_u1_c16384");
  schedule.vector_width = 16;
  schedule.unroll = 4;
  schedule.chunk_elements = 65536;
  EXPECT_EQ(schedule.spelling(), "v16_u4_c65536");
}

TEST(CpuSchedule, DefaultFollowsTheHostsWidestVector) {
  const CpuSchedule schedule = default_cpu_schedule();
  __builtin_cpu_init();
  const int expected = __builtin_cpu_supports("avx512f") ? 16
                       : __builtin_cpu_supports("avx")   ? 8
                                                         : 4;
  EXPECT_EQ(schedule.vector_width, expected);
  EXPECT_GE(schedule.unroll, 1);
  EXPECT_EQ(schedule.chunk_elements, 16384);
  EXPECT_EQ(schedule.threads, 0);
}

}  // namespace
}  // namespace fuseopt::codegen

// Tests of runtime::plan_work: chunk boundaries (below, at, above and between multiples of
// the chunk size), one chunk for a tiny tensor, and batching of small chunks into tasks.
#include "runtime/chunking.h"

#include <gtest/gtest.h>

#include <vector>

namespace fuseopt::runtime {
namespace {

// Checks the invariants every plan has: chunks tile each tensor in order, tasks tile the
// chunk list, and each task but the last holds at least `min_task` elements.
void check_plan(const WorkList& work, const std::vector<int64_t>& numels, int64_t chunk,
                int64_t min_task) {
  ASSERT_EQ(work.tensor_begin.size(), numels.size() + 1);
  for (size_t t = 0; t < numels.size(); ++t) {
    int64_t next = 0;
    for (size_t c = work.tensor_begin[t]; c < work.tensor_begin[t + 1]; ++c) {
      EXPECT_EQ(work.chunks[c].tensor, t);
      EXPECT_EQ(work.chunks[c].offset, next);
      EXPECT_GE(work.chunks[c].count, 1);
      EXPECT_LE(work.chunks[c].count, chunk);
      next += work.chunks[c].count;
    }
    EXPECT_EQ(next, numels[t]) << "tensor " << t;
  }
  if (work.chunks.empty()) {
    EXPECT_EQ(work.task_count(), 0u);
    return;
  }
  ASSERT_GE(work.task_begin.size(), 2u);
  EXPECT_EQ(work.task_begin.front(), 0u);
  EXPECT_EQ(work.task_begin.back(), work.chunks.size());
  for (size_t k = 0; k < work.task_count(); ++k) {
    ASSERT_LT(work.task_begin[k], work.task_begin[k + 1]);
    int64_t elements = 0;
    for (size_t c = work.task_begin[k]; c < work.task_begin[k + 1]; ++c) {
      elements += work.chunks[c].count;
    }
    if (k + 1 < work.task_count()) {
      EXPECT_GE(elements, min_task) << "task " << k;
    }
    // A task closes as soon as it is big enough: without its last chunk it was too small.
    const int64_t before_last = elements - work.chunks[work.task_begin[k + 1] - 1].count;
    EXPECT_LT(before_last, min_task) << "task " << k;
  }
}

TEST(Chunking, SizesAroundTheChunkWidth) {
  const int64_t chunk = 1000;
  for (int64_t n : {1, 999, 1000, 1001, 1999, 2000, 2001, 2500, 10000}) {
    const std::vector<int64_t> numels = {n};
    WorkList work = plan_work(numels, chunk);
    check_plan(work, numels, chunk, chunk);
    EXPECT_EQ(work.chunks.size(), static_cast<size_t>((n + chunk - 1) / chunk)) << n;
    EXPECT_EQ(work.chunks.back().count, n % chunk == 0 ? chunk : n % chunk) << n;
  }
}

TEST(Chunking, TinyTensorsAreOneChunkEach) {
  const std::vector<int64_t> numels = {1, 2, 3};
  WorkList work = plan_work(numels, 16384);
  ASSERT_EQ(work.chunks.size(), 3u);
  EXPECT_EQ(work.task_count(), 1u);  // batched together
  check_plan(work, numels, 16384, 16384);
}

TEST(Chunking, BatchesManySmallTensors) {
  std::vector<int64_t> numels(1000, 100);  // 100,000 elements in 1000 tensors
  WorkList work = plan_work(numels, 16384);
  check_plan(work, numels, 16384, 16384);
  EXPECT_EQ(work.chunks.size(), 1000u);
  // ceil(100000 / 16400): tasks of 164 tensors, the last one smaller.
  EXPECT_EQ(work.task_count(), 7u);
}

TEST(Chunking, MixedSizesKeepOrder) {
  const std::vector<int64_t> numels = {5, 40000, 7, 7, 16384, 1, 3000};
  for (int64_t chunk : {1, 7, 1000, 16384, 100000}) {
    for (int64_t min_task : {0, 1, 500, 50000}) {
      WorkList work = plan_work(numels, chunk, min_task);
      check_plan(work, numels, chunk, min_task <= 0 ? chunk : min_task);
    }
  }
}

TEST(Chunking, LargeTensorChunksAreSeparateTasks) {
  const std::vector<int64_t> numels = {65536};
  WorkList work = plan_work(numels, 16384);
  EXPECT_EQ(work.chunks.size(), 4u);
  EXPECT_EQ(work.task_count(), 4u);
}

TEST(Chunking, EmptyGroupAndEmptyTensors) {
  WorkList empty = plan_work(std::vector<int64_t>{}, 100);
  EXPECT_TRUE(empty.chunks.empty());
  EXPECT_EQ(empty.task_count(), 0u);
  const std::vector<int64_t> numels = {0, 10, 0};
  WorkList work = plan_work(numels, 100);
  check_plan(work, numels, 100, 100);
  EXPECT_EQ(work.chunks.size(), 1u);
}

}  // namespace
}  // namespace fuseopt::runtime

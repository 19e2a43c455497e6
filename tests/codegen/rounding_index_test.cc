// rounding_random_at_expr (the random word of element first_index + x of a chunk, as CPU
// kernels compute it) JIT-compiled for the host against support/low_precision.h, for chunks
// that start anywhere in a tensor: at 0, below and across 2^32 (where the index's upper
// half, and so its mixed word, changes inside the chunk) and far beyond.
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "codegen/halide/storage_conversions.h"

namespace fuseopt::codegen {
namespace {

TEST(HalideRoundingIndex, ChunkWordsMatchTheStreamAtAnyFirstIndex) {
  constexpr int kCount = 1000;
  const uint32_t key = rounding_stream_key(99, 17, (3u << 6) ^ 1u);
  const std::vector<int64_t> firsts = {0,
                                       1,
                                       4095,
                                       (int64_t{1} << 32) - 500,
                                       (int64_t{1} << 32) - 1,
                                       int64_t{1} << 32,
                                       (int64_t{3} << 32) - 999,
                                       (int64_t{1} << 40) + 12345,
                                       (int64_t{1} << 62) - 7};
  Halide::Param<int64_t> first("first");
  Halide::Var x("x");
  Halide::Func words("words");
  words(x) = rounding_random_at_expr(Halide::Expr(key), first, x);
  words.vectorize(x, 8, Halide::TailStrategy::GuardWithIf);
  const Halide::Target target =
      Halide::get_jit_target_from_environment().with_feature(Halide::Target::StrictFloat);
  words.compile_jit(target);
  for (int64_t start : firsts) {
    first.set(start);
    Halide::Buffer<uint32_t> out = words.realize({kCount}, target);
    for (int j = 0; j < kCount; ++j) {
      ASSERT_EQ(out(j), rounding_random(key, static_cast<uint64_t>(start + j)))
          << "first index " << start << ", element " << j;
    }
  }
}

}  // namespace
}  // namespace fuseopt::codegen

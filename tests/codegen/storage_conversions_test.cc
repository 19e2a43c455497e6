// The Halide storage conversions, JIT-compiled for the host (with strict_float, as the CPU
// backend compiles), against support/low_precision.h bit for bit: every 16-bit value widened,
// and a large set of float32 values (every boundary, midpoint and their neighbours, plus random
// bit patterns) rounded to nearest and stochastically.
#include "codegen/halide/storage_conversions.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <random>
#include <vector>

namespace fuseopt::codegen {
namespace {

Halide::Target jit_target() {
  return Halide::get_jit_target_from_environment().with_feature(Halide::Target::StrictFloat);
}

std::vector<uint32_t> interesting_bits() {
  std::vector<uint32_t> bits = {0u, 0x80000000u, 0x7f800000u, 0xff800000u, 0x7fc00000u,
                                0x7f800001u, 0xffffffffu, 0x477fe000u, 0x477ff000u, 0x477fefffu,
                                0x47800000u, 0x33000000u, 0x33000001u, 0x38800000u, 0x387fffffu,
                                0x00000001u, 0x007fffffu, 0x7f7fffffu, 0x7f7f8000u};
  // Every 16-bit value's float, the midpoints above them, and the neighbours of both.
  for (uint32_t h = 0; h < 0x10000u; h += 3) {
    for (uint32_t base : {h << 16, std::bit_cast<uint32_t>(f16_to_float(static_cast<uint16_t>(h)))}) {
      for (uint32_t delta : {0u, 1u, 0x7fffu, 0x8000u, 0x8001u, 0xfffu, 0x1000u, 0x1001u}) {
        bits.push_back(base + delta);
        bits.push_back(base - delta);
      }
    }
  }
  std::mt19937 rng(2024);
  for (int i = 0; i < 200000; ++i) bits.push_back(static_cast<uint32_t>(rng()));
  return bits;
}

TEST(HalideStorage, WideningMatchesTheDefinition) {
  Halide::Var x;
  Halide::Func bf16, f16;
  const Halide::Expr h = Halide::cast(Halide::UInt(16), x);
  bf16(x) = widen_from_storage(h, StorageType::kBF16);
  f16(x) = widen_from_storage(h, StorageType::kF16);
  bf16.vectorize(x, 8);
  f16.vectorize(x, 8);
  Halide::Buffer<float> bf16_out = bf16.realize({0x10000}, jit_target());
  Halide::Buffer<float> f16_out = f16.realize({0x10000}, jit_target());
  for (uint32_t i = 0; i < 0x10000u; ++i) {
    const auto b = static_cast<uint16_t>(i);
    ASSERT_EQ(std::bit_cast<uint32_t>(bf16_out(static_cast<int>(i))),
              std::bit_cast<uint32_t>(bf16_to_float(b))) << i;
    ASSERT_EQ(std::bit_cast<uint32_t>(f16_out(static_cast<int>(i))),
              std::bit_cast<uint32_t>(f16_to_float(b))) << i;
  }
}

TEST(HalideStorage, RoundingMatchesTheDefinition) {
  const std::vector<uint32_t> bits = interesting_bits();
  const int n = static_cast<int>(bits.size());
  Halide::Buffer<uint32_t> input(n);
  for (int i = 0; i < n; ++i) input(i) = bits[static_cast<size_t>(i)];
  const uint32_t key = rounding_stream_key(11, 3, 5);

  Halide::Var x;
  const Halide::Expr value = Halide::reinterpret(Halide::Float(32), input(x));
  const Halide::Expr random = rounding_random_expr(Halide::Expr(key), Halide::cast(Halide::UInt(32), x));
  Halide::Func words, bf16_rn, f16_rn, bf16_sr, f16_sr;
  words(x) = random;
  bf16_rn(x) = round_to_storage_expr(value, StorageType::kBF16);
  f16_rn(x) = round_to_storage_expr(value, StorageType::kF16);
  bf16_sr(x) = round_to_storage_expr(value, StorageType::kBF16, true, random);
  f16_sr(x) = round_to_storage_expr(value, StorageType::kF16, true, random);
  for (Halide::Func* f : {&words, &bf16_rn, &f16_rn, &bf16_sr, &f16_sr}) f->vectorize(x, 8);

  Halide::Buffer<uint32_t> words_out = words.realize({n}, jit_target());
  Halide::Buffer<uint16_t> bf16_rn_out = bf16_rn.realize({n}, jit_target());
  Halide::Buffer<uint16_t> f16_rn_out = f16_rn.realize({n}, jit_target());
  Halide::Buffer<uint16_t> bf16_sr_out = bf16_sr.realize({n}, jit_target());
  Halide::Buffer<uint16_t> f16_sr_out = f16_sr.realize({n}, jit_target());
  for (int i = 0; i < n; ++i) {
    const float v = std::bit_cast<float>(bits[static_cast<size_t>(i)]);
    const uint32_t r = rounding_random(key, static_cast<uint64_t>(i));
    ASSERT_EQ(words_out(i), r) << i;
    ASSERT_EQ(bf16_rn_out(i), float_to_bf16(v)) << std::hex << bits[static_cast<size_t>(i)];
    ASSERT_EQ(f16_rn_out(i), float_to_f16(v)) << std::hex << bits[static_cast<size_t>(i)];
    ASSERT_EQ(bf16_sr_out(i), float_to_bf16_stochastic(v, r)) << std::hex << bits[static_cast<size_t>(i)];
    ASSERT_EQ(f16_sr_out(i), float_to_f16_stochastic(v, r)) << std::hex << bits[static_cast<size_t>(i)];
  }
}

}  // namespace
}  // namespace fuseopt::codegen

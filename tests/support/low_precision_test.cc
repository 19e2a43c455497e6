// The storage conversions against independent oracles: round to nearest even computed by
// comparing distances exactly in double, the compiler's own _Float16 conversion where it has
// one, and statistics for stochastic rounding.
#include "support/low_precision.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

namespace fuseopt {
namespace {

uint32_t bits_of(float value) { return std::bit_cast<uint32_t>(value); }

// Every finite value of a 16-bit type, sorted, with its bits: the oracle's candidates.
struct Grid {
  std::vector<double> values;
  std::vector<uint16_t> bits;
};

Grid positive_grid(StorageType type) {
  Grid grid;
  for (uint32_t b = 0; b < 0x8000u; ++b) {
    const float v = load_bits(b, type);
    if (!std::isfinite(v)) break;  // the positive range ends at infinity in both types
    grid.values.push_back(v);
    grid.bits.push_back(static_cast<uint16_t>(b));
  }
  return grid;
}

// Round to nearest, ties to the even bit pattern, overflow past the midpoint to the next
// power of two to infinity: computed from distances alone.
uint16_t oracle_nearest(const Grid& grid, float value, uint16_t infinity_bits) {
  const double magnitude = std::fabs(static_cast<double>(value));
  const uint16_t sign = std::signbit(value) ? 0x8000u : 0u;
  const double largest = grid.values.back();
  const double next_power = largest + (largest - grid.values[grid.values.size() - 2]);
  if (magnitude >= (largest + next_power) / 2) return sign | infinity_bits;
  auto it = std::upper_bound(grid.values.begin(), grid.values.end(), magnitude);
  const size_t above = static_cast<size_t>(it - grid.values.begin());
  if (above == grid.values.size()) return sign | grid.bits.back();
  const size_t below = above - 1;
  const double down = magnitude - grid.values[below];
  const double up = grid.values[above] - magnitude;
  if (down < up) return sign | grid.bits[below];
  if (up < down) return sign | grid.bits[above];
  return sign | ((grid.bits[below] & 1u) == 0 ? grid.bits[below] : grid.bits[above]);
}

std::vector<float> interesting_floats() {
  std::vector<float> values = {0.0f, -0.0f, 1.0f, -1.0f, 65504.0f, 65519.99f, 65520.0f,
                               65536.0f, 3.0e38f, std::numeric_limits<float>::max(),
                               std::numeric_limits<float>::min(),
                               std::numeric_limits<float>::denorm_min(), 0x1p-14f, 0x1p-24f,
                               0x1p-25f, 0x1.000002p-25f, 0x1.8p-24f, 0x1.8p-23f, 0x1.fffffep-15f};
  // Every 16-bit value, the float32 neighbours of it and of each midpoint between values.
  for (StorageType type : {StorageType::kBF16, StorageType::kF16}) {
    const Grid grid = positive_grid(type);
    for (size_t i = 0; i + 1 < grid.values.size(); i += 7) {
      const auto mid = static_cast<float>((grid.values[i] + grid.values[i + 1]) / 2);
      for (float v : {static_cast<float>(grid.values[i]), mid}) {
        values.push_back(v);
        values.push_back(std::nextafter(v, 0.0f));
        values.push_back(std::nextafter(v, 1e30f));
        values.push_back(-v);
      }
    }
  }
  std::mt19937 rng(1234);
  for (int i = 0; i < 400000; ++i) {
    float v = std::bit_cast<float>(static_cast<uint32_t>(rng()));
    if (std::isfinite(v)) values.push_back(v);
  }
  return values;
}

TEST(LowPrecision, NamesAndSizes) {
  EXPECT_EQ(parse_storage_type("bf16"), StorageType::kBF16);
  EXPECT_EQ(parse_storage_type("f16"), StorageType::kF16);
  EXPECT_EQ(parse_storage_type("f32"), StorageType::kF32);
  EXPECT_FALSE(parse_storage_type("fp16").has_value());
  EXPECT_STREQ(storage_type_name(StorageType::kBF16), "bf16");
  EXPECT_EQ(storage_type_bytes(StorageType::kF16), 2);
  EXPECT_EQ(storage_type_bytes(StorageType::kF32), 4);
}

TEST(LowPrecision, WideningIsExact) {
  // Every bf16 is the upper half of a float32; every f16 matches the compiler's conversion
  // where it has _Float16, else the formula (-1)^s 2^(e-15) (1 + m/1024).
  for (uint32_t b = 0; b <= 0xffffu; ++b) {
    const float bf = bf16_to_float(static_cast<uint16_t>(b));
    EXPECT_EQ(bits_of(bf), b << 16);
    const float h = f16_to_float(static_cast<uint16_t>(b));
    const uint32_t e = (b >> 10) & 0x1f, m = b & 0x3ff;
    const double sign = (b & 0x8000u) ? -1.0 : 1.0;
    if (e == 0x1f) {
      EXPECT_TRUE(m == 0 ? std::isinf(h) : std::isnan(h)) << b;
      continue;
    }
    const double expected = e == 0 ? sign * std::ldexp(m, -24)
                                   : sign * std::ldexp(1.0 + m / 1024.0, static_cast<int>(e) - 15);
    EXPECT_EQ(static_cast<double>(h), expected) << b;
    EXPECT_EQ(std::signbit(h), (b & 0x8000u) != 0) << b;
#ifdef __FLT16_MAX__
    const _Float16 native = std::bit_cast<_Float16>(static_cast<uint16_t>(b));
    EXPECT_EQ(bits_of(static_cast<float>(native)), bits_of(h)) << b;
#endif
  }
}

TEST(LowPrecision, NearestEvenMatchesTheOracle) {
  const Grid bf16 = positive_grid(StorageType::kBF16);
  const Grid f16 = positive_grid(StorageType::kF16);
  for (float v : interesting_floats()) {
    ASSERT_EQ(float_to_bf16(v), oracle_nearest(bf16, v, 0x7f80u)) << v;
    ASSERT_EQ(float_to_f16(v), oracle_nearest(f16, v, 0x7c00u)) << v;
#ifdef __FLT16_MAX__
    ASSERT_EQ(float_to_f16(v), std::bit_cast<uint16_t>(static_cast<_Float16>(v))) << v;
#endif
  }
}

TEST(LowPrecision, NanAndInfinity) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  for (StorageType type : {StorageType::kBF16, StorageType::kF16}) {
    for (bool stochastic : {false, true}) {
      EXPECT_TRUE(std::isnan(round_to_storage(nan, type, stochastic, 0xffffffffu)));
      EXPECT_TRUE(std::isnan(round_to_storage(-nan, type, stochastic, 0x12345678u)));
      EXPECT_EQ(round_to_storage(inf, type, stochastic, 0xffffffffu), inf);
      EXPECT_EQ(round_to_storage(-inf, type, stochastic, 0), -inf);
    }
    // A signalling NaN pattern still comes back a NaN (the quiet bit is set).
    EXPECT_TRUE(std::isnan(round_to_storage(std::bit_cast<float>(0x7f800001u), type)));
  }
  EXPECT_EQ(round_to_storage(1e6f, StorageType::kF16), inf);
  EXPECT_EQ(round_to_storage(-1e6f, StorageType::kF16, true, 0), -inf);
}

// The two neighbours of `value` in `type`, below and above in magnitude.
std::pair<float, float> neighbours(float value, StorageType type) {
  const Grid grid = positive_grid(type);
  const double magnitude = std::fabs(static_cast<double>(value));
  auto it = std::upper_bound(grid.values.begin(), grid.values.end(), magnitude);
  const float sign = std::signbit(value) ? -1.0f : 1.0f;
  return {sign * static_cast<float>(*(it - 1)), sign * static_cast<float>(*it)};
}

TEST(LowPrecision, StochasticRoundsToANeighbour) {
  std::mt19937 rng(99);
  for (StorageType type : {StorageType::kBF16, StorageType::kF16}) {
    for (float v : {1.0f + 0x1p-12f, -3.14159f, 1e-3f, 6e-8f, 0x1p-20f, 60000.5f, 0.0f, 2.0f}) {
      const auto [below, above] = neighbours(v, type);
      for (int i = 0; i < 2000; ++i) {
        const float r = round_to_storage(v, type, true, static_cast<uint32_t>(rng()));
        ASSERT_TRUE(r == below || r == above) << v << " -> " << r;
      }
      // A value the type holds exactly never moves.
      if (round_to_storage(v, type) == v) {
        for (uint32_t random : {0u, 0x80000000u, 0xffffffffu}) {
          EXPECT_EQ(round_to_storage(v, type, true, random), v);
        }
      }
    }
  }
}

TEST(LowPrecision, StochasticIsUnbiased) {
  // Over N independent random words, the mean of the rounded value lies within 6 standard
  // deviations (spacing * sqrt(p (1 - p) / N)) of the value itself.
  constexpr int kSamples = 1 << 16;
  const uint32_t key = rounding_stream_key(7, 1, 0);
  for (StorageType type : {StorageType::kBF16, StorageType::kF16}) {
    for (float v : {1.0f + 0x1p-10f, 1.0f + 3 * 0x1p-12f, -0.3f, 1234.567f, 0x1.3p-19f}) {
      const auto [below, above] = neighbours(v, type);
      const double spacing = std::fabs(static_cast<double>(above) - below);
      const double p = std::fabs(static_cast<double>(v) - below) / spacing;
      double sum = 0;
      for (int i = 0; i < kSamples; ++i) {
        sum += round_to_storage(v, type, true, rounding_random(key, static_cast<uint64_t>(i)));
      }
      const double mean = sum / kSamples;
      const double sigma = spacing * std::sqrt(p * (1 - p) / kSamples);
      EXPECT_NEAR(mean, v, 6 * sigma + spacing * 0x1p-24) << storage_type_name(type) << " " << v;
    }
  }
}

TEST(LowPrecision, StochasticKeepsTinyUpdatesInExpectation) {
  // 1000 steps of adding 1e-4 to a bf16 1.0 (spacing 2^-7, 78x the update): round to nearest
  // never moves; stochastic rounding ends near 1.1 (the expected value), for every stream.
  for (uint32_t stream = 0; stream < 8; ++stream) {
    float nearest = 1.0f, stochastic = 1.0f;
    for (int step = 1; step <= 1000; ++step) {
      nearest = round_to_storage(nearest + 1e-4f, StorageType::kBF16);
      const uint32_t key = rounding_stream_key(42, step, stream);
      stochastic =
          round_to_storage(stochastic + 1e-4f, StorageType::kBF16, true, rounding_random(key, 0));
    }
    EXPECT_EQ(nearest, 1.0f);
    // Each step moves by one spacing with probability ~1.28%: the count is binomial with
    // standard deviation sqrt(1000 * 0.0128) ~ 3.6 spacings ~ 0.028.
    EXPECT_NEAR(stochastic, 1.1f, 0.12f) << stream;
  }
}

TEST(LowPrecision, RandomStreamIsDeterministicAndSpread) {
  // Same key and index, same word; neighbouring indices, steps, streams and seeds differ.
  const uint32_t key = rounding_stream_key(1, 5, 3);
  EXPECT_EQ(rounding_random(key, 17), rounding_random(rounding_stream_key(1, 5, 3), 17));
  EXPECT_NE(rounding_random(key, 17), rounding_random(key, 18));
  EXPECT_NE(key, rounding_stream_key(1, 6, 3));
  EXPECT_NE(key, rounding_stream_key(1, 5, 4));
  EXPECT_NE(key, rounding_stream_key(2, 5, 3));
  EXPECT_NE(rounding_random(key, 5), rounding_random(key, 5 + (uint64_t{1} << 32)));
  // The top 4 bits of consecutive indices fill 16 bins evenly (chi-square, 15 degrees of
  // freedom: 50 is far beyond its 99.9th percentile, 37.7).
  constexpr int kCount = 1 << 16;
  std::vector<int> bins(16);
  for (uint64_t i = 0; i < kCount; ++i) ++bins[rounding_random(key, i) >> 28];
  double chi2 = 0;
  for (int b : bins) chi2 += (b - kCount / 16.0) * (b - kCount / 16.0) / (kCount / 16.0);
  EXPECT_LT(chi2, 50.0);
  // And each output bit flips for about half of the consecutive pairs.
  for (int bit = 0; bit < 32; ++bit) {
    int flips = 0;
    for (uint64_t i = 0; i + 1 < 4096; ++i) {
      flips += ((rounding_random(key, i) ^ rounding_random(key, i + 1)) >> bit) & 1u;
    }
    EXPECT_NEAR(flips, 2048, 250) << bit;
  }
}

}  // namespace
}  // namespace fuseopt

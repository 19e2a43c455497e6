#include "codegen/halide/storage_conversions.h"

#include "support/error.h"

namespace fuseopt::codegen {

using Halide::cast;
using Halide::Expr;
using Halide::reinterpret;
using Halide::select;

namespace {

Expr u32(uint32_t value) { return Halide::Internal::UIntImm::make(Halide::UInt(32), value); }
// The storage bits, computed as UInt(32) values below 2^16, narrowed once. A saturating
// narrowing of the (non-negative) Int(32) value is exact and becomes vpackusdw plus a lane
// permute on x86; a plain truncation becomes vpmovdw to memory under AVX-512, which is slow
// on some cores (AMD Zen 4: all-bf16 Adam on one thread took 1.26 instead of 0.85 ns/element).
Expr narrow_to_u16(const Expr& bits) {
  return Halide::saturating_cast(Halide::UInt(16), reinterpret(Halide::Int(32), bits));
}

// 2^exponent as f32 for an Int(32) exponent in float32's normal range.
Expr power_of_two(const Expr& exponent) {
  return reinterpret(Halide::Float(32), cast(Halide::UInt(32), exponent + 127) << 23);
}

Expr bf16_nearest(const Expr& bits) {
  const Expr magnitude = bits & u32(0x7fffffffu);
  const Expr nan = (bits >> 16) | u32(0x0040u);
  const Expr rounded = (bits + u32(0x7fffu) + ((bits >> 16) & u32(1))) >> 16;
  return select(magnitude > u32(0x7f800000u), nan, rounded);
}

Expr f16_nearest(const Expr& bits) {
  const Expr sign = (bits >> 16) & u32(0x8000u);
  const Expr magnitude = bits & u32(0x7fffffffu);
  // Normal f16: rebias the exponent, round the 13 dropped bits to nearest even.
  const Expr rebiased = magnitude - u32(0x38000000u);
  const Expr normal = (rebiased + u32(0x0fffu) + ((rebiased >> 13) & u32(1))) >> 13;
  // Subnormal f16: the value in units of 2^-24; the shift is clamped so that every lane is
  // defined, and only lanes in the subnormal range use it.
  const Expr exponent = magnitude >> 23;
  const Expr shift = Halide::clamp(u32(126) - exponent, u32(14), u32(24));
  const Expr significand = (magnitude & u32(0x7fffffu)) | u32(0x800000u);
  const Expr units = significand >> shift;
  const Expr remainder = significand & ((u32(1) << shift) - u32(1));
  const Expr half = u32(1) << (shift - u32(1));
  const Expr round_up = remainder > half || (remainder == half && (units & u32(1)) != u32(0));
  const Expr subnormal = units + select(round_up, u32(1), u32(0));
  const Expr result =
      select(magnitude > u32(0x7f800000u), u32(0x7e00u),           // NaN
             magnitude >= u32(0x477ff000u), u32(0x7c00u),          // to infinity
             magnitude >= u32(0x38800000u), normal,                // normal
             magnitude <= u32(0x33000000u), u32(0),                // to zero
             subnormal);
  return sign | result;
}

Expr bf16_stochastic(const Expr& bits, const Expr& random) {
  const Expr finite = (bits & u32(0x7fffffffu)) < u32(0x7f800000u);
  return select(finite, (bits + (random >> 16)) >> 16, bf16_nearest(bits));
}

Expr f16_stochastic(const Expr& value, const Expr& bits, const Expr& random) {
  const Expr magnitude_bits = bits & u32(0x7fffffffu);
  const Expr sign = (bits >> 16) & u32(0x8000u);
  const Expr exponent =
      Halide::max(cast(Halide::Int(32), magnitude_bits >> 23) - 127, -126);
  const Expr spacing_exponent = Halide::max(exponent, -14) - 10;
  const Expr magnitude = Halide::abs(value);
  const Expr q = magnitude * power_of_two(-spacing_exponent);
  const Expr below = Halide::floor(q);
  const Expr fraction = q - below;
  const Expr uniform = cast(Halide::Float(32), random >> 8) * 0x1p-24f;
  const Expr units = select(fraction > uniform, below + 1.0f, below);
  const Expr rounded = units * power_of_two(spacing_exponent);
  // The rounded magnitude is an f16 value (or 65536, which becomes infinity): exact.
  const Expr rounded_bits = f16_nearest(reinterpret(Halide::UInt(32), rounded));
  const Expr stochastic =
      sign | select(magnitude_bits >= u32(0x47800000u), u32(0x7c00u), rounded_bits);
  return select(magnitude_bits < u32(0x7f800000u), stochastic, f16_nearest(bits));
}

}  // namespace

Halide::Type halide_storage_type(StorageType type) {
  return type == StorageType::kF32 ? Halide::Float(32) : Halide::UInt(16);
}

Expr widen_from_storage(const Expr& stored, StorageType type) {
  switch (type) {
    case StorageType::kF32:
      return stored;
    case StorageType::kBF16:
      return reinterpret(Halide::Float(32), cast(Halide::UInt(32), stored) << 16);
    case StorageType::kF16: {
      const Expr h = cast(Halide::UInt(32), stored);
      const Expr sign = (h & u32(0x8000u)) << 16;
      const Expr exponent = (h >> 10) & u32(0x1fu);
      const Expr mantissa = h & u32(0x3ffu);
      const Expr special = sign | u32(0x7f800000u) | (mantissa << 13);
      const Expr normal = sign | ((exponent + u32(112)) << 23) | (mantissa << 13);
      // Zero and subnormals: mantissa * 2^-24 is exact; the sign goes on as a bit (Halide
      // negates as 0 - x, which would lose the sign of -0).
      const Expr tiny = cast(Halide::Float(32), mantissa) * 0x1p-24f;
      const Expr subnormal = reinterpret(Halide::UInt(32), tiny) | sign;
      return reinterpret(Halide::Float(32), select(exponent == u32(0), subnormal,
                                                   exponent == u32(0x1f), special, normal));
    }
  }
  FUSEOPT_UNREACHABLE("bad StorageType");
}

Expr round_to_storage_expr(const Expr& value, StorageType type, bool stochastic,
                           const Expr& random) {
  FUSEOPT_CHECK(!stochastic || random.defined(), "a stochastic store needs a random word");
  const Expr bits = reinterpret(Halide::UInt(32), value);
  switch (type) {
    case StorageType::kF32:
      return value;
    case StorageType::kBF16:
      return narrow_to_u16(stochastic ? bf16_stochastic(bits, random) : bf16_nearest(bits));
    case StorageType::kF16:
      return narrow_to_u16(stochastic ? f16_stochastic(value, bits, random) : f16_nearest(bits));
  }
  FUSEOPT_UNREACHABLE("bad StorageType");
}

Expr mix32_expr(const Expr& input) {
  Expr x = input;
  x = x ^ (x >> 16);
  x = x * u32(0x21f0aaadu);
  x = x ^ (x >> 15);
  x = x * u32(0x735a2d97u);
  x = x ^ (x >> 15);
  return x;
}

Expr rounding_random_expr(const Expr& key, const Expr& index) {
  return mix32_expr(key ^ mix32_expr(index ^ u32(rounding_index_high(0))));
}

// The constant of rounding_index_high, checked against the definition.
static_assert(rounding_index_high(0) == mix32(0x85ebca6bu) &&
              rounding_index_high(uint64_t{7} << 32) == mix32(7u ^ 0x85ebca6bu));

Expr rounding_random_at_expr(const Expr& key, const Expr& first, const Expr& offset) {
  const Expr start = cast(Halide::UInt(64), first);
  const Expr start_low = cast(Halide::UInt(32), start);
  const Expr start_high = cast(Halide::UInt(32), start >> 32);
  // The index's lower half, modulo 2^32; it wrapped (the upper half is one more) exactly
  // when it is below the chunk's first lower half, since offset < 2^32.
  const Expr low = start_low + cast(Halide::UInt(32), offset);
  // rounding_index_high(h) is mix32(h ^ 0x85ebca6b) (support/low_precision.h); the two
  // candidates are scalars.
  const Expr high_word = mix32_expr(start_high ^ u32(0x85ebca6bu));
  const Expr next_high_word = mix32_expr((start_high + u32(1)) ^ u32(0x85ebca6bu));
  const Expr high = select(low < start_low, next_high_word, high_word);
  return mix32_expr(key ^ mix32_expr(low ^ high));
}

}  // namespace fuseopt::codegen

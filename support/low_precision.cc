#include "support/low_precision.h"

#include <algorithm>
#include <bit>
#include <cmath>

#include "support/error.h"

namespace fuseopt {
namespace {

constexpr uint32_t kAbsMask = 0x7fffffffu;
constexpr uint32_t kF32Infinity = 0x7f800000u;

uint32_t bits_of(float value) { return std::bit_cast<uint32_t>(value); }
float float_of(uint32_t bits) { return std::bit_cast<float>(bits); }

/// 2^exponent as a float, for exponents a normal float32 holds.
float power_of_two(int exponent) { return float_of(static_cast<uint32_t>(exponent + 127) << 23); }

}  // namespace

const char* storage_type_name(StorageType type) {
  switch (type) {
    case StorageType::kF32: return "f32";
    case StorageType::kBF16: return "bf16";
    case StorageType::kF16: return "f16";
  }
  FUSEOPT_UNREACHABLE("bad StorageType");
}

std::optional<StorageType> parse_storage_type(std::string_view name) {
  if (name == "f32") return StorageType::kF32;
  if (name == "bf16") return StorageType::kBF16;
  if (name == "f16") return StorageType::kF16;
  return std::nullopt;
}

int storage_type_bytes(StorageType type) { return type == StorageType::kF32 ? 4 : 2; }

float bf16_to_float(uint16_t bits) { return float_of(static_cast<uint32_t>(bits) << 16); }

float f16_to_float(uint16_t bits) {
  const uint32_t sign = static_cast<uint32_t>(bits & 0x8000u) << 16;
  const uint32_t exponent = (bits >> 10) & 0x1fu;
  const uint32_t mantissa = bits & 0x3ffu;
  if (exponent == 0x1f) {  // infinity or NaN: keep the payload
    return float_of(sign | kF32Infinity | (mantissa << 13));
  }
  if (exponent == 0) {  // zero or subnormal: mantissa * 2^-24, exact in float32
    const float magnitude = static_cast<float>(mantissa) * power_of_two(-24);
    return sign != 0 ? -magnitude : magnitude;
  }
  // Normal: rebias the exponent from 15 to 127.
  return float_of(sign | ((exponent + 112) << 23) | (mantissa << 13));
}

uint16_t float_to_bf16(float value) {
  const uint32_t bits = bits_of(value);
  if ((bits & kAbsMask) > kF32Infinity) {
    return static_cast<uint16_t>((bits >> 16) | 0x0040u);  // quiet NaN, sign and payload kept
  }
  // Adding 0x7fff plus the lowest kept bit rounds ties to even; a carry out of the mantissa
  // moves into the exponent, and past the largest finite value into infinity.
  const uint32_t rounding = 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>((bits + rounding) >> 16);
}

uint16_t float_to_f16(float value) {
  const uint32_t bits = bits_of(value);
  const auto sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  const uint32_t magnitude = bits & kAbsMask;
  if (magnitude > kF32Infinity) return sign | 0x7e00u;  // quiet NaN
  // 65520 is halfway between 65504 (odd mantissa) and 65536: it and everything above is inf.
  if (magnitude >= 0x477ff000u) return sign | 0x7c00u;
  if (magnitude >= 0x38800000u) {  // 2^-14 and above: a normal f16
    const uint32_t rebiased = magnitude - 0x38000000u;  // exponent bias 127 -> 15
    const uint32_t rounding = 0x0fffu + ((rebiased >> 13) & 1u);
    return sign | static_cast<uint16_t>((rebiased + rounding) >> 13);
  }
  // 2^-25 (a tie between 0 and 2^-24, going to 0) and below: zero.
  if (magnitude <= 0x33000000u) return sign;
  // Subnormal f16: the value in units of 2^-24, rounded to nearest even. Here the float32 is
  // normal with biased exponent 102..112, so the shift is 14..24.
  const uint32_t exponent = magnitude >> 23;
  const uint32_t significand = (magnitude & 0x7fffffu) | 0x800000u;
  const uint32_t shift = 126 - exponent;
  uint32_t units = significand >> shift;
  const uint32_t remainder = significand & ((1u << shift) - 1);
  const uint32_t half = 1u << (shift - 1);
  if (remainder > half || (remainder == half && (units & 1u) != 0)) ++units;
  return sign | static_cast<uint16_t>(units);  // 1024 units is the smallest normal, 0x0400
}

uint16_t float_to_bf16_stochastic(float value, uint32_t random) {
  const uint32_t bits = bits_of(value);
  if ((bits & kAbsMask) >= kF32Infinity) return float_to_bf16(value);
  // Sign-magnitude: adding to the magnitude's dropped bits rounds away from zero with
  // probability equal to their fraction of the spacing.
  return static_cast<uint16_t>((bits + (random >> 16)) >> 16);
}

uint16_t float_to_f16_stochastic(float value, uint32_t random) {
  const uint32_t bits = bits_of(value);
  const uint32_t magnitude_bits = bits & kAbsMask;
  if (magnitude_bits >= kF32Infinity) return float_to_f16(value);
  const auto sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  if (magnitude_bits >= 0x47800000u) return sign | 0x7c00u;  // 65536 and above
  // Exponent of |value| (float32 subnormals count as 2^-126; f16 clamps to -14 anyway).
  const int exponent = std::max(static_cast<int>(magnitude_bits >> 23) - 127, -126);
  const int spacing_exponent = std::max(exponent, -14) - 10;
  const float magnitude = float_of(magnitude_bits);
  // Both scalings are by powers of two in float32's normal range: exact.
  const float q = magnitude * power_of_two(-spacing_exponent);
  const float below = std::floor(q);
  const float fraction = q - below;  // exact: q and below share an exponent or below is 0
  const float uniform = static_cast<float>(random >> 8) * power_of_two(-24);
  const float units = fraction > uniform ? below + 1.0f : below;
  const float rounded = units * power_of_two(spacing_exponent);  // exact; 65536 -> inf below
  return sign | float_to_f16(rounded);
}

uint32_t store_bits(float value, StorageType type, bool stochastic, uint32_t random) {
  switch (type) {
    case StorageType::kF32: return bits_of(value);
    case StorageType::kBF16:
      return stochastic ? float_to_bf16_stochastic(value, random) : float_to_bf16(value);
    case StorageType::kF16:
      return stochastic ? float_to_f16_stochastic(value, random) : float_to_f16(value);
  }
  FUSEOPT_UNREACHABLE("bad StorageType");
}

float load_bits(uint32_t bits, StorageType type) {
  switch (type) {
    case StorageType::kF32: return float_of(bits);
    case StorageType::kBF16: return bf16_to_float(static_cast<uint16_t>(bits));
    case StorageType::kF16: return f16_to_float(static_cast<uint16_t>(bits));
  }
  FUSEOPT_UNREACHABLE("bad StorageType");
}

float round_to_storage(float value, StorageType type, bool stochastic, uint32_t random) {
  return load_bits(store_bits(value, type, stochastic, random), type);
}

}  // namespace fuseopt

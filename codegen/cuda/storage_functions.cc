#include "codegen/cuda/storage_functions.h"

#include "support/error.h"

namespace fuseopt::codegen {

const std::string& cuda_storage_functions() {
  // Kept line for line with support/low_precision.cc; see the comments there for why each
  // step is exact.
  static const std::string text = R"CUDA(
// ---- Storage types (support/low_precision.h) ----
__device__ __forceinline__ float fuseopt_bf16_to_float(unsigned short bits) {
  return __uint_as_float(static_cast<unsigned int>(bits) << 16);
}

__device__ __forceinline__ float fuseopt_f16_to_float(unsigned short h) {
  const unsigned int sign = static_cast<unsigned int>(h & 0x8000u) << 16;
  const unsigned int exponent = (h >> 10) & 0x1fu;
  const unsigned int mantissa = h & 0x3ffu;
  if (exponent == 0x1fu) return __uint_as_float(sign | 0x7f800000u | (mantissa << 13));
  if (exponent == 0u) {
    return __uint_as_float(__float_as_uint(static_cast<float>(mantissa) * 5.9604644775390625e-08f) | sign);
  }
  return __uint_as_float(sign | ((exponent + 112u) << 23) | (mantissa << 13));
}

__device__ __forceinline__ unsigned short fuseopt_float_to_bf16(float value) {
  const unsigned int bits = __float_as_uint(value);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<unsigned short>((bits >> 16) | 0x0040u);
  return static_cast<unsigned short>((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
}

__device__ __forceinline__ unsigned short fuseopt_float_to_f16(float value) {
  const unsigned int bits = __float_as_uint(value);
  const unsigned int sign = (bits >> 16) & 0x8000u;
  const unsigned int magnitude = bits & 0x7fffffffu;
  if (magnitude > 0x7f800000u) return static_cast<unsigned short>(sign | 0x7e00u);
  if (magnitude >= 0x477ff000u) return static_cast<unsigned short>(sign | 0x7c00u);
  if (magnitude >= 0x38800000u) {
    const unsigned int rebiased = magnitude - 0x38000000u;
    return static_cast<unsigned short>(sign | ((rebiased + 0x0fffu + ((rebiased >> 13) & 1u)) >> 13));
  }
  if (magnitude <= 0x33000000u) return static_cast<unsigned short>(sign);
  const unsigned int shift = 126u - (magnitude >> 23);
  const unsigned int significand = (magnitude & 0x7fffffu) | 0x800000u;
  unsigned int units = significand >> shift;
  const unsigned int remainder = significand & ((1u << shift) - 1u);
  const unsigned int half = 1u << (shift - 1u);
  if (remainder > half || (remainder == half && (units & 1u) != 0u)) ++units;
  return static_cast<unsigned short>(sign | units);
}

__device__ __forceinline__ unsigned short fuseopt_float_to_bf16_sr(float value, unsigned int random) {
  const unsigned int bits = __float_as_uint(value);
  if ((bits & 0x7fffffffu) >= 0x7f800000u) return fuseopt_float_to_bf16(value);
  return static_cast<unsigned short>((bits + (random >> 16)) >> 16);
}

__device__ __forceinline__ float fuseopt_power_of_two(int exponent) {
  return __uint_as_float(static_cast<unsigned int>(exponent + 127) << 23);
}

__device__ __forceinline__ unsigned short fuseopt_float_to_f16_sr(float value, unsigned int random) {
  const unsigned int bits = __float_as_uint(value);
  const unsigned int magnitude_bits = bits & 0x7fffffffu;
  if (magnitude_bits >= 0x7f800000u) return fuseopt_float_to_f16(value);
  const unsigned int sign = (bits >> 16) & 0x8000u;
  if (magnitude_bits >= 0x47800000u) return static_cast<unsigned short>(sign | 0x7c00u);
  int exponent = static_cast<int>(magnitude_bits >> 23) - 127;
  if (exponent < -126) exponent = -126;
  const int spacing_exponent = (exponent > -14 ? exponent : -14) - 10;
  const float magnitude = __uint_as_float(magnitude_bits);
  const float q = magnitude * fuseopt_power_of_two(-spacing_exponent);
  const float below = floorf(q);
  const float fraction = q - below;
  const float uniform = static_cast<float>(random >> 8) * 5.9604644775390625e-08f;
  const float units = fraction > uniform ? below + 1.0f : below;
  const float rounded = units * fuseopt_power_of_two(spacing_exponent);
  return static_cast<unsigned short>(sign | fuseopt_float_to_f16(rounded));
}

__device__ __forceinline__ unsigned int fuseopt_mix32(unsigned int x) {
  x ^= x >> 16;
  x *= 0x21f0aaadu;
  x ^= x >> 15;
  x *= 0x735a2d97u;
  x ^= x >> 15;
  return x;
}

// rounding_random(key, index) split at the index's 32-bit halves: `high` is
// fuseopt_rounding_index_high(index >> 32), a constant over most chunks, so kernels compute
// it once per chunk and each element costs two mix32 calls.
__device__ __forceinline__ unsigned int fuseopt_rounding_index_high(unsigned int upper) {
  return fuseopt_mix32(upper ^ 0x85ebca6bu);
}

__device__ __forceinline__ unsigned int fuseopt_rounding_random_split(unsigned int key, unsigned int low,
                                                                      unsigned int high) {
  return fuseopt_mix32(key ^ fuseopt_mix32(low ^ high));
}

// rounding_random(key, index) for index < 2^32.
__device__ __forceinline__ unsigned int fuseopt_rounding_random(unsigned int key, unsigned int index) {
  return fuseopt_mix32(key ^ fuseopt_mix32(index ^ )CUDA" +
                                 std::to_string(rounding_index_high(0)) + R"CUDA(u));
}
)CUDA";
  return text;
}

const char* cuda_storage_c_type(StorageType type) {
  return type == StorageType::kF32 ? "float" : "unsigned short";
}

std::string cuda_widen_expression(StorageType type, const std::string& stored) {
  switch (type) {
    case StorageType::kF32: return stored;
    case StorageType::kBF16: return "fuseopt_bf16_to_float(" + stored + ")";
    case StorageType::kF16: return "fuseopt_f16_to_float(" + stored + ")";
  }
  FUSEOPT_UNREACHABLE("bad StorageType");
}

std::string cuda_round_expression(StorageType type, const std::string& value, bool stochastic,
                                  const std::string& random) {
  FUSEOPT_CHECK(!stochastic || !random.empty(), "a stochastic store needs a random word");
  switch (type) {
    case StorageType::kF32: return value;
    case StorageType::kBF16:
      return stochastic ? "fuseopt_float_to_bf16_sr(" + value + ", " + random + ")"
                        : "fuseopt_float_to_bf16(" + value + ")";
    case StorageType::kF16:
      return stochastic ? "fuseopt_float_to_f16_sr(" + value + ", " + random + ")"
                        : "fuseopt_float_to_f16(" + value + ")";
  }
  FUSEOPT_UNREACHABLE("bad StorageType");
}

}  // namespace fuseopt::codegen

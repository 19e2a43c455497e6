// Storage types narrower than float32 and the exact rounding every backend reproduces.
//
// Element arithmetic is float32 whatever the storage (docs/language.md, "Values and
// precision"); a bf16 or f16 value is widened exactly when it is loaded and rounded when it
// is stored. These functions are the definition of that rounding: the interpreter calls them,
// and the CPU and CUDA code generators emit the same integer and float operations, so every
// backend produces the same bits.
//
// Two roundings:
// - round to nearest, ties to even (the default; what PyTorch's .to(torch.bfloat16) does);
// - stochastic rounding: round up with probability equal to the distance from the value below,
//   in units of the storage type's spacing there. It keeps, in expectation, updates far smaller
//   than the spacing (1e-4 added to a bf16 1.0, whose spacing is 2^-7), which round to
//   nearest loses. The random word comes from a counter-based stream keyed by a seed, the
//   step, a stream number (which tensor and which buffer) and the element's index, so the bits
//   do not depend on thread count, chunking or backend.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace fuseopt {

enum class StorageType : uint8_t {
  kF32,   ///< IEEE binary32
  kBF16,  ///< bfloat16: the upper 16 bits of a binary32 (8 exponent bits, 7 mantissa bits)
  kF16,   ///< IEEE binary16 (5 exponent bits, 10 mantissa bits, max 65504)
};

/// "f32", "bf16", "f16".
const char* storage_type_name(StorageType type);
/// The inverse of storage_type_name(); nullopt for anything else.
std::optional<StorageType> parse_storage_type(std::string_view name);
/// Bytes per element: 4 or 2.
int storage_type_bytes(StorageType type);

// ---- Exact widening ------------------------------------------------------------------------

float bf16_to_float(uint16_t bits);
float f16_to_float(uint16_t bits);

// ---- Round to nearest, ties to even ----------------------------------------------------------
// NaN stays NaN (quiet, sign kept); infinities stay; values beyond the largest finite value
// (past the halfway point to the next power of two) become infinity; f16 keeps subnormals.

uint16_t float_to_bf16(float value);
uint16_t float_to_f16(float value);

// ---- Stochastic rounding ---------------------------------------------------------------------
// `random` is a uniform 32-bit word (rounding_random()). NaN and infinities round as above.
//
// bf16: the 16 bits a bf16 drops are the fraction of its spacing; adding the random word's
//   upper 16 bits and truncating rounds up with probability exactly that fraction (the layout
//   is the same for subnormals, and a carry moves into the exponent correctly).
// f16: with s the f16 spacing at |value| (2^(max(e, -14) - 10) for 2^e <= |value| < 2^(e+1)),
//   q = |value| / s, and u = (random >> 8) * 2^-24: the result is (floor(q) + (q - floor(q) > u))
//   * s with value's sign; 65536 and above become infinity. Unbiased for every value whose
//   distance to the f16 below is a multiple of 2^-24 spacings (every value not in f16's
//   subnormal range); below that, the bias is under 2^-24 spacings.

uint16_t float_to_bf16_stochastic(float value, uint32_t random);
uint16_t float_to_f16_stochastic(float value, uint32_t random);

// ---- The random stream -----------------------------------------------------------------------

/// A 32-bit mixing bijection (xor-shift / multiply, constants from the "lowbias32" search):
/// every output bit depends on every input bit. mix32(0) == 0.
constexpr uint32_t mix32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x21f0aaadu;
  x ^= x >> 15;
  x *= 0x735a2d97u;
  x ^= x >> 15;
  return x;
}

/// The key of one stream for one step: computed once per tensor, buffer and step (on the
/// host), so that each element costs two mix32 calls. `stream` tells the tensors of a group
/// and the buffers of a tensor apart (docs/language.md says how backends number them).
constexpr uint32_t rounding_stream_key(uint64_t seed, int64_t step, uint32_t stream) {
  const auto step_bits = static_cast<uint64_t>(step);
  uint32_t key = mix32(stream ^ 0x9e3779b9u);
  key = mix32(key ^ static_cast<uint32_t>(seed));
  key = mix32(key ^ static_cast<uint32_t>(seed >> 32));
  key = mix32(key ^ static_cast<uint32_t>(step_bits));
  key = mix32(key ^ static_cast<uint32_t>(step_bits >> 32));
  return key;
}

/// The part of an element's random word that depends on the upper half of its index: a
/// constant for every tensor under 2^32 elements, so kernels compute it once per tensor.
constexpr uint32_t rounding_index_high(uint64_t index) {
  return mix32(static_cast<uint32_t>(index >> 32) ^ 0x85ebca6bu);
}

/// The random word of element `index` (its position in its tensor) in the stream `key`.
constexpr uint32_t rounding_random(uint32_t key, uint64_t index) {
  return mix32(key ^ mix32(static_cast<uint32_t>(index) ^ rounding_index_high(index)));
}

// ---- Stores ---------------------------------------------------------------------------------

/// The storage bits of `value` stored as `type` (kF32: the float's own bits), rounded to
/// nearest or, when `stochastic`, with `random`.
uint32_t store_bits(float value, StorageType type, bool stochastic = false, uint32_t random = 0);
/// The float32 value that storage bits stand for.
float load_bits(uint32_t bits, StorageType type);
/// load_bits(store_bits(...)): what a store followed by a load gives.
float round_to_storage(float value, StorageType type, bool stochastic = false,
                       uint32_t random = 0);

}  // namespace fuseopt

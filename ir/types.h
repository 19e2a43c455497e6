// Value types of the IR. Scalar values live on the host in float64; element values are
// computed in float32 for every element, whatever the storage type of the buffers.
#pragma once

#include <cstdint>

#include "ir/ops.def"
#include "support/low_precision.h"

namespace fuseopt::ir {

enum class Type : uint8_t {
  kF64,   ///< scalar number (host, float64)
  kF32,   ///< element number (float32)
  kBool,  ///< scalar boolean
  kMask,  ///< element boolean
};

inline bool is_scalar(Type t) { return t == Type::kF64 || t == Type::kBool; }
inline bool is_boolean(Type t) { return t == Type::kBool || t == Type::kMask; }
const char* spelling(Type t);

/// How a buffer is stored in memory: f32, bf16 or f16 (support/low_precision.h defines the
/// conversions). Element arithmetic is f32 whatever the storage.
using StorageType = ::fuseopt::StorageType;
inline const char* spelling(StorageType t) { return storage_type_name(t); }

}  // namespace fuseopt::ir

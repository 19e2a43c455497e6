// Halide expressions for the storage types of support/low_precision.h: widening loads,
// round-to-nearest-even and stochastic stores, and the counter-based random stream. Each is
// the same integer and float arithmetic as the C++ definition, so generated kernels produce
// the same bits as the interpreter (tests/codegen/storage_conversions_test.cc checks them
// against support/low_precision.h, value by value).
//
// Internal to codegen/halide: it exposes Halide types, which no public header of the
// library does.
#pragma once

#include <Halide.h>

#include "support/low_precision.h"

namespace fuseopt::codegen {

/// The Halide type a buffer of `type` is stored as: Float(32), or UInt(16) holding the bits.
Halide::Type halide_storage_type(StorageType type);

/// The f32 value of `stored` (an expression of halide_storage_type(type)).
Halide::Expr widen_from_storage(const Halide::Expr& stored, StorageType type);

/// `value` (f32) rounded to `type`, as halide_storage_type(type). With `stochastic`,
/// `random` (UInt(32), rounding_random_expr()) decides the rounding.
Halide::Expr round_to_storage_expr(const Halide::Expr& value, StorageType type,
                                   bool stochastic = false,
                                   const Halide::Expr& random = Halide::Expr());

/// mix32 of support/low_precision.h over UInt(32).
Halide::Expr mix32_expr(const Halide::Expr& x);

/// rounding_random(key, index) for an element index below 2^32 (a tensor's elements are
/// addressed by 32-bit indices in Halide pipelines): `key` and `index` are UInt(32).
Halide::Expr rounding_random_expr(const Halide::Expr& key, const Halide::Expr& index);

/// rounding_random(key, first + offset) for any chunk position: `first` is Int(64) (the
/// chunk's first element index in its tensor, >= 0), `offset` a 32-bit integer with
/// 0 <= offset < 2^31 (the position in the chunk), `key` UInt(32). The upper half of the
/// index changes at most once within a chunk, so each lane selects between two words that
/// depend on `first` alone (Halide hoists them out of the loop): one compare and one select
/// per element over rounding_random_expr().
Halide::Expr rounding_random_at_expr(const Halide::Expr& key, const Halide::Expr& first,
                                     const Halide::Expr& offset);

}  // namespace fuseopt::codegen

// The arithmetic of the IR, defined once: the interpreter and constant folding both use it,
// and backends must match it (see docs/language.md, "Precision").
#pragma once

#include <cstdint>

#include "ir/expr.h"
#include "ir/kernel.h"

namespace fuseopt::ir {

double eval_unary(UnaryOp op, double x);   ///< f64 semantics (bool results are 0/1)
float eval_unary(UnaryOp op, float x);     ///< f32 semantics
double eval_binary(BinaryOp op, double a, double b);
float eval_binary(BinaryOp op, float a, float b);
/// The starting value of a reduction and one accumulation step.
double reduce_identity(ReduceOp op);
double reduce_combine(ReduceOp op, double accumulated, double value);

/// f32 semantics over `n` elements, `out[i] = op(x[i])` (`out` may equal `x`): the
/// interpreter's inner loops, generated from the same definitions as the functions above.
void eval_unary_block(UnaryOp op, const float* x, float* out, int64_t n);
void eval_binary_block(BinaryOp op, const float* a, const float* b, float* out, int64_t n);

}  // namespace fuseopt::ir

// A hand-built kernel that uses every unary and binary op of the IR, a select on a mask and
// on a scalar, both reductions (sum and max) feeding a second phase, and special constants
// (-0, a value that overflows f32). Shared by the source, NVRTC and emulation tests.
#pragma once

#include <vector>

#include "ir/expr.h"
#include "ir/kernel.h"

namespace fuseopt::codegen::test {

inline ir::Kernel every_op_kernel() {
  using ir::BinaryOp;
  using ir::Expr;
  using ir::Type;
  using ir::UnaryOp;
  ir::Kernel kernel;
  kernel.rule = "every_op";
  kernel.hypers = {{"h", 0.5}};
  kernel.buffers = {{"param", ir::BufferRole::kParam}, {"grad", ir::BufferRole::kGrad},
                    {"s", ir::BufferRole::kState}};
  kernel.phases.resize(2);
  const Expr p = ir::make_load("param");
  const Expr g = ir::make_load("grad");
  const Expr h = ir::make_cast(Type::kF32, ir::make_var("h", Type::kF64));
  // a >= 1, so sqrt, rsqrt, log and pow stay finite.
  const Expr one = ir::make_cast(Type::kF32, ir::make_const(1));
  const Expr a = ir::make_binary(BinaryOp::kAdd, ir::make_unary(UnaryOp::kAbs, p), one);
  std::vector<Expr> numbers = {ir::make_unary(UnaryOp::kNeg, p),
                               ir::make_unary(UnaryOp::kSqrt, a),
                               ir::make_unary(UnaryOp::kRsqrt, a),
                               ir::make_unary(UnaryOp::kExp, g),
                               ir::make_unary(UnaryOp::kLog, a),
                               ir::make_unary(UnaryOp::kSign, g),
                               ir::make_binary(BinaryOp::kPow, a, g)};
  for (BinaryOp op : {BinaryOp::kAdd, BinaryOp::kSub, BinaryOp::kMul, BinaryOp::kDiv,
                      BinaryOp::kMin, BinaryOp::kMax}) {
    numbers.push_back(ir::make_binary(op, p, g));
  }
  std::vector<Expr> masks = {ir::make_unary(UnaryOp::kIsFinite, g),
                             ir::make_cast(Type::kMask, ir::make_var("%0", Type::kBool))};
  for (BinaryOp op : {BinaryOp::kLt, BinaryOp::kLe, BinaryOp::kGt, BinaryOp::kGe,
                      BinaryOp::kEq, BinaryOp::kNe}) {
    masks.push_back(ir::make_binary(op, p, h));
  }
  Expr mask = ir::make_unary(UnaryOp::kNot, masks[0]);
  for (size_t i = 1; i < masks.size(); ++i) {
    mask = ir::make_binary(i % 2 ? BinaryOp::kAnd : BinaryOp::kOr, mask, masks[i]);
  }
  Expr sum = ir::make_cast(Type::kF32, ir::make_const(-0.0));
  for (const Expr& n : numbers) sum = ir::make_binary(BinaryOp::kAdd, sum, n);
  sum = ir::make_select(mask, sum, ir::make_unary(UnaryOp::kNeg, sum));
  sum = ir::make_select(ir::make_var("%0", Type::kBool), sum, h);
  kernel.phases[0].prologue = {{"%0", ir::make_binary(BinaryOp::kGt, ir::make_var("h", Type::kF64),
                                                      ir::make_const(0))}};
  kernel.phases[0].reductions = {{"%r0", ir::ReduceOp::kSum, sum},
                                 {"%r1", ir::ReduceOp::kMax, g}};
  kernel.phases[1].prologue = {{"%1", ir::make_binary(BinaryOp::kAdd, ir::make_var("%r0", Type::kF64),
                                                      ir::make_var("%r1", Type::kF64))}};
  kernel.phases[1].stores = {
      {"param", ir::make_binary(BinaryOp::kMul, sum, ir::make_cast(Type::kF32, ir::make_var("%1", Type::kF64)))},
      {"s", ir::make_select(mask, p, ir::make_cast(Type::kF32, ir::make_const(1e300)))}};
  kernel.is_split = true;
  return kernel;
}

}  // namespace fuseopt::codegen::test

// Pass: constant folding, first in the pipeline so later passes see the simplest IR. Every
// fold computes exactly what the interpreter would (eval.h), in the operands' precision, and
// only identities that hold bit for bit are applied (never x + 0: -0 + 0 is +0).
#include "ir/passes/fold_constants.h"

#include <cmath>
#include <functional>
#include <optional>

#include "ir/eval.h"
#include "ir/rewrite.h"

namespace fuseopt::ir {
namespace {

// The value of a constant of any type: f64 and bool are Const nodes; f32 and mask constants
// are casts of one (an f32 constant holds the float's value, read back through a float).
std::optional<double> constant_value(const Expr& e) {
  if (e->kind == NodeKind::kConst) return e->value;
  if (e->kind == NodeKind::kCast && e->operands[0]->kind == NodeKind::kConst) {
    double v = e->operands[0]->value;
    return e->type == Type::kF32 ? static_cast<double>(static_cast<float>(v)) : v;
  }
  return std::nullopt;
}

Expr make_constant(Type type, double value) {
  switch (type) {
    case Type::kF64:
      return make_const(value);
    case Type::kF32:
      return make_cast(Type::kF32, make_const(static_cast<double>(static_cast<float>(value))));
    case Type::kBool:
      return make_bool(value != 0);
    case Type::kMask:
      return make_cast(Type::kMask, make_bool(value != 0));
  }
  return nullptr;
}

bool is_constant(const Expr& e, double value) {
  std::optional<double> v = constant_value(e);
  return v.has_value() && *v == value && !std::signbit(*v);
}

// Operands' type decides the precision: f32 (and mask) in float, f64 (and bool) in double.
bool computes_in_float(const Expr& operand) { return !is_scalar(operand); }

Expr fold_unary(const Expr& e) {
  const Expr& x = e->operands[0];
  if (e->unary_op == UnaryOp::kNot && x->kind == NodeKind::kUnary &&
      x->unary_op == UnaryOp::kNot) {
    return x->operands[0];
  }
  std::optional<double> v = constant_value(x);
  if (!v) return e;
  double result = computes_in_float(x)
                      ? static_cast<double>(eval_unary(e->unary_op, static_cast<float>(*v)))
                      : eval_unary(e->unary_op, *v);
  return make_constant(e->type, result);
}

Expr fold_binary(const Expr& e) {
  const Expr& a = e->operands[0];
  const Expr& b = e->operands[1];
  std::optional<double> va = constant_value(a);
  std::optional<double> vb = constant_value(b);
  if (va && vb) {
    double result = computes_in_float(a)
                        ? static_cast<double>(eval_binary(e->binary_op, static_cast<float>(*va),
                                                          static_cast<float>(*vb)))
                        : eval_binary(e->binary_op, *va, *vb);
    return make_constant(e->type, result);
  }
  switch (e->binary_op) {
    case BinaryOp::kMul:
      if (is_constant(b, 1)) return a;
      if (is_constant(a, 1)) return b;
      break;
    case BinaryOp::kDiv:
      if (is_constant(b, 1)) return a;
      break;
    case BinaryOp::kSub:
      if (is_constant(b, 0)) return a;  // +0 only: x - (-0) turns -0 into +0
      break;
    case BinaryOp::kAnd:  // booleans have no signed zero: every identity is exact
      if (is_constant(a, 1)) return b;
      if (is_constant(b, 1)) return a;
      if (is_constant(a, 0) || is_constant(b, 0)) return make_constant(e->type, 0);
      break;
    case BinaryOp::kOr:
      if (is_constant(a, 0)) return b;
      if (is_constant(b, 0)) return a;
      if (is_constant(a, 1) || is_constant(b, 1)) return make_constant(e->type, 1);
      break;
    case BinaryOp::kAdd:
    case BinaryOp::kPow:
    case BinaryOp::kMin:
    case BinaryOp::kMax:
    case BinaryOp::kLt:
    case BinaryOp::kLe:
    case BinaryOp::kGt:
    case BinaryOp::kGe:
    case BinaryOp::kEq:
    case BinaryOp::kNe:
      break;
  }
  return e;
}

Expr fold(const Expr& e) {
  switch (e->kind) {
    case NodeKind::kConst:
    case NodeKind::kVar:
    case NodeKind::kLoad:
    case NodeKind::kCast:  // a cast of a constant is how f32 and mask constants are written
      return e;
    case NodeKind::kUnary:
      return fold_unary(e);
    case NodeKind::kBinary:
      return fold_binary(e);
    case NodeKind::kSelect: {
      std::optional<double> cond = constant_value(e->operands[0]);
      if (cond) return *cond != 0 ? e->operands[1] : e->operands[2];
      return e;
    }
  }
  return e;
}

}  // namespace

Kernel fold_constants(const Kernel& kernel) {
  ExprRewriter rewriter(fold);
  return rewrite_exprs(kernel, std::ref(rewriter));
}

}  // namespace fuseopt::ir

// IR expressions: immutable nodes shared in a DAG, built only through make_*() which check
// the typing invariants. Scalars are float64 values computed on the host once per step per
// tensor; elements are float32 values computed for every element.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "ir/types.h"

namespace fuseopt::ir {

enum class NodeKind : uint8_t {
#define FUSEOPT_X(name, spelling) k##name,
  FUSEOPT_IR_NODE_KINDS(FUSEOPT_X)
#undef FUSEOPT_X
};

enum class UnaryOp : uint8_t {
#define FUSEOPT_X(name, spelling) k##name,
  FUSEOPT_IR_UNARY_OPS(FUSEOPT_X)
#undef FUSEOPT_X
};

enum class BinaryOp : uint8_t {
#define FUSEOPT_X(name, spelling) k##name,
  FUSEOPT_IR_BINARY_OPS(FUSEOPT_X)
#undef FUSEOPT_X
};

const char* spelling(NodeKind kind);
const char* spelling(UnaryOp op);
const char* spelling(BinaryOp op);
bool is_comparison(BinaryOp op);
bool is_logical(BinaryOp op);

class ExprNode;
/// A shared, immutable expression. Equal pointers mean the same node; CSE makes equal
/// structures share one pointer.
using Expr = std::shared_ptr<const ExprNode>;

/// One IR node. Fields not used by a kind are left at their defaults.
class ExprNode {
 public:
  NodeKind kind;
  Type type;
  double value = 0;           ///< Const: the number (bool constants: 0 or 1)
  std::string name;           ///< Var: scalar symbol; Load: buffer
  UnaryOp unary_op = UnaryOp::kNeg;
  BinaryOp binary_op = BinaryOp::kAdd;
  std::vector<Expr> operands;  ///< Cast: 1, Unary: 1, Binary: 2, Select: 3 (cond, a, b)

  ExprNode(NodeKind k, Type t) : kind(k), type(t) {}
};

/// A number constant (f64) or a boolean constant (bool).
Expr make_const(double value);
Expr make_bool(bool value);
/// A scalar symbol: a hyper, `t`, `numel`, a scalar state (its value at step start), a
/// prologue temporary (`%3`) or a reduction result (`%r0`). Type f64 or bool.
Expr make_var(std::string name, Type type);
/// An element of a buffer (param, grad or a state), as it was when the step started.
Expr make_load(std::string buffer);
/// f64 -> f32 (rounded to nearest) or bool -> mask (broadcast).
Expr make_cast(Type to, Expr value);
Expr make_unary(UnaryOp op, Expr value);
Expr make_binary(BinaryOp op, Expr a, Expr b);
/// `cond ? a : b`. cond is bool or mask; a mask condition needs element operands.
Expr make_select(Expr cond, Expr a, Expr b);

/// Rebuilds `node` with new operands, returning `node` itself when nothing changed.
Expr with_operands(const Expr& node, std::vector<Expr> operands);

/// True for the structure of a value computed once per step per tensor.
inline bool is_scalar(const Expr& e) { return is_scalar(e->type); }

}  // namespace fuseopt::ir

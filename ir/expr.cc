// Construction of IR expressions. Every node is built here, so the typing rules of expr.h
// are checked in one place; the verifier rebuilds nodes through these functions to re-check.
#include "ir/expr.h"

#include <utility>

#include "support/error.h"

namespace fuseopt::ir {

const char* spelling(NodeKind kind) {
  switch (kind) {
#define FUSEOPT_X(name, text) \
  case NodeKind::k##name:     \
    return text;
    FUSEOPT_IR_NODE_KINDS(FUSEOPT_X)
#undef FUSEOPT_X
  }
  return "?";
}

const char* spelling(UnaryOp op) {
  switch (op) {
#define FUSEOPT_X(name, text) \
  case UnaryOp::k##name:      \
    return text;
    FUSEOPT_IR_UNARY_OPS(FUSEOPT_X)
#undef FUSEOPT_X
  }
  return "?";
}

const char* spelling(BinaryOp op) {
  switch (op) {
#define FUSEOPT_X(name, text) \
  case BinaryOp::k##name:     \
    return text;
    FUSEOPT_IR_BINARY_OPS(FUSEOPT_X)
#undef FUSEOPT_X
  }
  return "?";
}

bool is_comparison(BinaryOp op) {
  switch (op) {
    case BinaryOp::kLt:
    case BinaryOp::kLe:
    case BinaryOp::kGt:
    case BinaryOp::kGe:
    case BinaryOp::kEq:
    case BinaryOp::kNe:
      return true;
    case BinaryOp::kAdd:
    case BinaryOp::kSub:
    case BinaryOp::kMul:
    case BinaryOp::kDiv:
    case BinaryOp::kPow:
    case BinaryOp::kMin:
    case BinaryOp::kMax:
    case BinaryOp::kAnd:
    case BinaryOp::kOr:
      return false;
  }
  return false;
}

bool is_logical(BinaryOp op) { return op == BinaryOp::kAnd || op == BinaryOp::kOr; }

namespace {

bool is_number(Type t) { return t == Type::kF64 || t == Type::kF32; }

std::string type_message(const char* what, Type got) {
  return std::string(what) + ", got " + spelling(got);
}

}  // namespace

Expr make_const(double value) {
  auto node = std::make_shared<ExprNode>(NodeKind::kConst, Type::kF64);
  node->value = value;
  return node;
}

Expr make_bool(bool value) {
  auto node = std::make_shared<ExprNode>(NodeKind::kConst, Type::kBool);
  node->value = value ? 1 : 0;
  return node;
}

Expr make_var(std::string name, Type type) {
  FUSEOPT_CHECK(!name.empty(), "a var needs a name");
  FUSEOPT_CHECK(is_scalar(type), "var '" + name + "' must be f64 or bool, got " + spelling(type));
  auto node = std::make_shared<ExprNode>(NodeKind::kVar, type);
  node->name = std::move(name);
  return node;
}

Expr make_load(std::string buffer) {
  FUSEOPT_CHECK(!buffer.empty(), "a load needs a buffer name");
  auto node = std::make_shared<ExprNode>(NodeKind::kLoad, Type::kF32);
  node->name = std::move(buffer);
  return node;
}

Expr make_cast(Type to, Expr value) {
  FUSEOPT_CHECK(value != nullptr, "cast of a null expression");
  FUSEOPT_CHECK((to == Type::kF32 && value->type == Type::kF64) ||
                    (to == Type::kMask && value->type == Type::kBool),
                std::string("cast must be f64 -> f32 or bool -> mask, got ") +
                    spelling(value->type) + " -> " + spelling(to));
  auto node = std::make_shared<ExprNode>(NodeKind::kCast, to);
  node->operands.push_back(std::move(value));
  return node;
}

Expr make_unary(UnaryOp op, Expr value) {
  FUSEOPT_CHECK(value != nullptr, std::string("operand of ") + spelling(op) + " is null");
  Type in = value->type;
  Type out = in;
  switch (op) {
    case UnaryOp::kNeg:
    case UnaryOp::kSqrt:
    case UnaryOp::kRsqrt:
    case UnaryOp::kExp:
    case UnaryOp::kLog:
    case UnaryOp::kAbs:
    case UnaryOp::kSign:
      FUSEOPT_CHECK(is_number(in), type_message(spelling(op), in) + "; expected f64 or f32");
      break;
    case UnaryOp::kIsFinite:
      FUSEOPT_CHECK(is_number(in), type_message("isfinite", in) + "; expected f64 or f32");
      out = in == Type::kF64 ? Type::kBool : Type::kMask;
      break;
    case UnaryOp::kNot:
      FUSEOPT_CHECK(is_boolean(in), type_message("not", in) + "; expected bool or mask");
      break;
  }
  auto node = std::make_shared<ExprNode>(NodeKind::kUnary, out);
  node->unary_op = op;
  node->operands.push_back(std::move(value));
  return node;
}

Expr make_binary(BinaryOp op, Expr a, Expr b) {
  FUSEOPT_CHECK(a != nullptr && b != nullptr,
                std::string("operand of ") + spelling(op) + " is null");
  Type in = a->type;
  FUSEOPT_CHECK(in == b->type, std::string(spelling(op)) + " operands differ in type: " +
                                   spelling(a->type) + " and " + spelling(b->type));
  Type out = in;
  if (is_logical(op)) {
    FUSEOPT_CHECK(is_boolean(in), type_message(spelling(op), in) + "; expected bool or mask");
  } else if (is_comparison(op)) {
    FUSEOPT_CHECK(is_number(in), type_message(spelling(op), in) + "; expected f64 or f32");
    out = in == Type::kF64 ? Type::kBool : Type::kMask;
  } else {
    FUSEOPT_CHECK(is_number(in), type_message(spelling(op), in) + "; expected f64 or f32");
  }
  auto node = std::make_shared<ExprNode>(NodeKind::kBinary, out);
  node->binary_op = op;
  node->operands.push_back(std::move(a));
  node->operands.push_back(std::move(b));
  return node;
}

Expr make_select(Expr cond, Expr a, Expr b) {
  FUSEOPT_CHECK(cond != nullptr && a != nullptr && b != nullptr, "operand of select is null");
  FUSEOPT_CHECK(is_boolean(cond->type),
                type_message("select condition", cond->type) + "; expected bool or mask");
  FUSEOPT_CHECK(a->type == b->type, std::string("select branches differ in type: ") +
                                        spelling(a->type) + " and " + spelling(b->type));
  // A per-element condition cannot pick between host scalars: the result would be an element.
  FUSEOPT_CHECK(cond->type == Type::kBool || !is_scalar(a->type),
                std::string("select on a mask needs element branches, got ") +
                    spelling(a->type));
  auto node = std::make_shared<ExprNode>(NodeKind::kSelect, a->type);
  node->operands = {std::move(cond), std::move(a), std::move(b)};
  return node;
}

Expr with_operands(const Expr& node, std::vector<Expr> operands) {
  FUSEOPT_CHECK(node != nullptr, "with_operands on a null expression");
  FUSEOPT_CHECK(operands.size() == node->operands.size(),
                std::string("with_operands: ") + spelling(node->kind) + " takes " +
                    std::to_string(node->operands.size()) + " operands, got " +
                    std::to_string(operands.size()));
  bool same = true;
  for (size_t i = 0; i < operands.size(); ++i) same = same && operands[i] == node->operands[i];
  if (same) return node;
  switch (node->kind) {
    case NodeKind::kConst:
    case NodeKind::kVar:
    case NodeKind::kLoad:
      return node;  // no operands, so `same` held above
    case NodeKind::kCast:
      return make_cast(node->type, std::move(operands[0]));
    case NodeKind::kUnary:
      return make_unary(node->unary_op, std::move(operands[0]));
    case NodeKind::kBinary:
      return make_binary(node->binary_op, std::move(operands[0]), std::move(operands[1]));
    case NodeKind::kSelect:
      return make_select(std::move(operands[0]), std::move(operands[1]), std::move(operands[2]));
  }
  FUSEOPT_UNREACHABLE("with_operands: unknown node kind");
  return node;
}

}  // namespace fuseopt::ir

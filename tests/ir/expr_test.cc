// Tests of IR construction: the typing rules of make_*(), with_operands, spellings and the
// Kernel helpers.
#include <gtest/gtest.h>

#include "ir/expr.h"
#include "ir/kernel.h"
#include "support/error.h"
#include "tests/ir/test_kernels.h"

namespace fuseopt::ir {
namespace {

using namespace test;  // NOLINT: the expression shorthands

TEST(Expr, LeavesHaveTheirTypes) {
  EXPECT_EQ(make_const(2.5)->type, Type::kF64);
  EXPECT_EQ(make_const(2.5)->value, 2.5);
  EXPECT_EQ(make_bool(true)->type, Type::kBool);
  EXPECT_EQ(make_bool(true)->value, 1);
  EXPECT_EQ(make_bool(false)->value, 0);
  EXPECT_EQ(make_var("lr", Type::kF64)->type, Type::kF64);
  EXPECT_EQ(make_var("flag", Type::kBool)->type, Type::kBool);
  EXPECT_EQ(make_load("exp_avg")->type, Type::kF32);
  EXPECT_EQ(make_load("exp_avg")->name, "exp_avg");
}

TEST(Expr, VarMustBeScalar) {
  EXPECT_THROW(make_var("x", Type::kF32), InternalError);
  EXPECT_THROW(make_var("x", Type::kMask), InternalError);
  EXPECT_THROW(make_var("", Type::kF64), InternalError);
}

TEST(Expr, CastOnlyBroadcastsScalars) {
  EXPECT_EQ(make_cast(Type::kF32, num(1))->type, Type::kF32);
  EXPECT_EQ(make_cast(Type::kMask, make_bool(true))->type, Type::kMask);
  EXPECT_THROW(make_cast(Type::kF32, load("param")), InternalError);
  EXPECT_THROW(make_cast(Type::kMask, num(1)), InternalError);
  EXPECT_THROW(make_cast(Type::kF64, num(1)), InternalError);
  EXPECT_THROW(make_cast(Type::kF32, nullptr), InternalError);
}

TEST(Expr, UnaryTyping) {
  EXPECT_EQ(make_unary(UnaryOp::kSqrt, num(2))->type, Type::kF64);
  EXPECT_EQ(make_unary(UnaryOp::kExp, load("grad"))->type, Type::kF32);
  EXPECT_EQ(make_unary(UnaryOp::kIsFinite, num(2))->type, Type::kBool);
  EXPECT_EQ(make_unary(UnaryOp::kIsFinite, load("grad"))->type, Type::kMask);
  EXPECT_EQ(make_unary(UnaryOp::kNot, make_bool(true))->type, Type::kBool);
  Expr mask = gt(load("grad"), f32(num(0)));
  EXPECT_EQ(make_unary(UnaryOp::kNot, mask)->type, Type::kMask);
  EXPECT_THROW(make_unary(UnaryOp::kNot, num(1)), InternalError);
  EXPECT_THROW(make_unary(UnaryOp::kSqrt, make_bool(true)), InternalError);
  EXPECT_THROW(make_unary(UnaryOp::kIsFinite, mask), InternalError);
}

TEST(Expr, BinaryTyping) {
  EXPECT_EQ(add(num(1), num(2))->type, Type::kF64);
  EXPECT_EQ(add(load("param"), load("grad"))->type, Type::kF32);
  EXPECT_EQ(make_binary(BinaryOp::kLt, num(1), num(2))->type, Type::kBool);
  EXPECT_EQ(make_binary(BinaryOp::kEq, load("param"), load("grad"))->type, Type::kMask);
  EXPECT_EQ(make_binary(BinaryOp::kOr, make_bool(true), make_bool(false))->type, Type::kBool);
  EXPECT_THROW(add(num(1), load("grad")), InternalError);  // f64 + f32 needs a cast
  EXPECT_THROW(add(make_bool(true), make_bool(true)), InternalError);
  EXPECT_THROW(make_binary(BinaryOp::kAnd, num(1), num(1)), InternalError);
  EXPECT_THROW(make_binary(BinaryOp::kLt, make_bool(true), make_bool(true)), InternalError);
  EXPECT_THROW(add(num(1), nullptr), InternalError);
}

TEST(Expr, SelectTyping) {
  Expr cond = make_binary(BinaryOp::kLt, var("lr"), num(1));
  Expr mask = gt(load("grad"), f32(num(0)));
  EXPECT_EQ(make_select(cond, num(1), num(2))->type, Type::kF64);
  EXPECT_EQ(make_select(cond, load("param"), load("grad"))->type, Type::kF32);
  EXPECT_EQ(make_select(mask, load("param"), load("grad"))->type, Type::kF32);
  EXPECT_EQ(make_select(mask, mask, mask)->type, Type::kMask);
  EXPECT_THROW(make_select(mask, num(1), num(2)), InternalError);  // element cond, host values
  EXPECT_THROW(make_select(num(1), num(1), num(2)), InternalError);
  EXPECT_THROW(make_select(cond, num(1), load("grad")), InternalError);
}

TEST(Expr, WithOperandsKeepsUnchangedNodes) {
  Expr a = load("param");
  Expr b = load("grad");
  Expr sum = add(a, b);
  EXPECT_EQ(with_operands(sum, {a, b}), sum);
  Expr leaf = var("lr");
  EXPECT_EQ(with_operands(leaf, {}), leaf);
  Expr swapped = with_operands(sum, {b, a});
  EXPECT_NE(swapped, sum);
  EXPECT_EQ(swapped->kind, NodeKind::kBinary);
  EXPECT_EQ(swapped->binary_op, BinaryOp::kAdd);
  EXPECT_EQ(swapped->operands[0], b);
  EXPECT_THROW(with_operands(sum, {a}), InternalError);
  EXPECT_THROW(with_operands(sum, {a, num(1)}), InternalError);  // retyped and rechecked
}

TEST(Expr, Spellings) {
  EXPECT_STREQ(spelling(NodeKind::kSelect), "select");
  EXPECT_STREQ(spelling(UnaryOp::kIsFinite), "isfinite");
  EXPECT_STREQ(spelling(BinaryOp::kNe), "ne");
  EXPECT_STREQ(spelling(ReduceOp::kMax), "max");
  EXPECT_STREQ(spelling(Type::kMask), "mask");
  EXPECT_STREQ(spelling(StorageType::kF32), "f32");
  EXPECT_TRUE(is_comparison(BinaryOp::kLe));
  EXPECT_FALSE(is_comparison(BinaryOp::kAnd));
  EXPECT_TRUE(is_logical(BinaryOp::kOr));
  EXPECT_FALSE(is_logical(BinaryOp::kMin));
}

TEST(Kernel, ConfigNameSpellsOptions) {
  Kernel k = adam_kernel();
  EXPECT_EQ(k.config_name(), "adam_amsgrad0_maximize0");
  k.options[0].value = 1;
  EXPECT_EQ(k.config_name(), "adam_amsgrad1_maximize0");
  k.options.push_back({"k", 5, false});
  EXPECT_EQ(k.config_name(), "adam_amsgrad1_maximize0_k5");
  EXPECT_EQ(sgd_kernel().config_name(), "sgd");
}

TEST(Kernel, Lookups) {
  Kernel k = nested_kernel();
  k.buffers.push_back(state("momentum"));
  EXPECT_EQ(k.buffer_index("param"), 0);
  EXPECT_EQ(k.buffer_index("momentum"), 2);
  EXPECT_EQ(k.buffer_index("nope"), -1);
  ASSERT_NE(k.find_buffer("grad"), nullptr);
  EXPECT_EQ(k.find_buffer("grad")->role, BufferRole::kGrad);
  EXPECT_EQ(k.find_buffer("nope"), nullptr);
  EXPECT_EQ(k.hyper_index("eps"), 1);
  EXPECT_EQ(k.hyper_index("count"), -1);
  EXPECT_EQ(k.scalar_index("count"), 0);
  EXPECT_EQ(k.scalar_index("lr"), -1);
}

}  // namespace
}  // namespace fuseopt::ir

// Tests of the IR's arithmetic (eval.h): precision per type, sign, NaN handling, reductions,
// and that the block loops compute exactly what the one-value functions do.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "ir/eval.h"

namespace fuseopt::ir {
namespace {

constexpr double kNan = std::numeric_limits<double>::quiet_NaN();
constexpr float kNanF = std::numeric_limits<float>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

TEST(Eval, SignKeepsZeroAndNan) {
  EXPECT_EQ(eval_unary(UnaryOp::kSign, 3.5), 1);
  EXPECT_EQ(eval_unary(UnaryOp::kSign, -0.25), -1);
  EXPECT_EQ(eval_unary(UnaryOp::kSign, 0.0), 0);
  EXPECT_TRUE(std::signbit(eval_unary(UnaryOp::kSign, -0.0)));
  EXPECT_TRUE(std::isnan(eval_unary(UnaryOp::kSign, kNan)));
  EXPECT_EQ(eval_unary(UnaryOp::kSign, -2.0f), -1.0f);
  EXPECT_TRUE(std::isnan(eval_unary(UnaryOp::kSign, kNanF)));
}

TEST(Eval, MinMaxPropagateNan) {
  for (BinaryOp op : {BinaryOp::kMin, BinaryOp::kMax}) {
    EXPECT_TRUE(std::isnan(eval_binary(op, kNan, 1.0)));
    EXPECT_TRUE(std::isnan(eval_binary(op, 1.0, kNan)));
    EXPECT_TRUE(std::isnan(eval_binary(op, kNanF, 1.0f)));
    EXPECT_TRUE(std::isnan(eval_binary(op, 1.0f, kNanF)));
  }
  EXPECT_EQ(eval_binary(BinaryOp::kMin, 2.0, -3.0), -3.0);
  EXPECT_EQ(eval_binary(BinaryOp::kMax, 2.0f, -3.0f), 2.0f);
}

TEST(Eval, BooleansAreZeroOrOne) {
  EXPECT_EQ(eval_binary(BinaryOp::kLt, 1.0, 2.0), 1.0);
  EXPECT_EQ(eval_binary(BinaryOp::kGe, 1.0f, 2.0f), 0.0f);
  EXPECT_EQ(eval_binary(BinaryOp::kNe, kNan, kNan), 1.0);
  EXPECT_EQ(eval_binary(BinaryOp::kEq, kNan, kNan), 0.0);
  EXPECT_EQ(eval_binary(BinaryOp::kAnd, 1.0, 0.0), 0.0);
  EXPECT_EQ(eval_binary(BinaryOp::kOr, 1.0f, 0.0f), 1.0f);
  EXPECT_EQ(eval_unary(UnaryOp::kNot, 0.0), 1.0);
  EXPECT_EQ(eval_unary(UnaryOp::kNot, 1.0f), 0.0f);
  EXPECT_EQ(eval_unary(UnaryOp::kIsFinite, kInf), 0.0);
  EXPECT_EQ(eval_unary(UnaryOp::kIsFinite, 1.0f), 1.0f);
  EXPECT_EQ(eval_unary(UnaryOp::kIsFinite, kNanF), 0.0f);
}

TEST(Eval, F32ComputesInFloat) {
  EXPECT_EQ(eval_binary(BinaryOp::kAdd, 1e8f, 1.0f), 1e8f);
  EXPECT_EQ(eval_binary(BinaryOp::kAdd, 1e8, 1.0), 100000001.0);
  EXPECT_EQ(eval_unary(UnaryOp::kRsqrt, 3.0f), 1.0f / std::sqrt(3.0f));
  EXPECT_EQ(eval_unary(UnaryOp::kRsqrt, 3.0), 1.0 / std::sqrt(3.0));
  EXPECT_EQ(eval_binary(BinaryOp::kPow, 0.9f, 7.0f), std::pow(0.9f, 7.0f));
  EXPECT_EQ(eval_binary(BinaryOp::kPow, 0.9, 7.0), std::pow(0.9, 7.0));
  EXPECT_EQ(eval_unary(UnaryOp::kExp, 0.3f), std::exp(0.3f));
  EXPECT_EQ(eval_unary(UnaryOp::kLog, 0.3f), std::log(0.3f));
  EXPECT_EQ(eval_unary(UnaryOp::kNeg, 2.0), -2.0);
  EXPECT_EQ(eval_unary(UnaryOp::kAbs, -2.0f), 2.0f);
}

TEST(Eval, Reductions) {
  EXPECT_EQ(reduce_identity(ReduceOp::kSum), 0.0);
  EXPECT_EQ(reduce_identity(ReduceOp::kMax), -kInf);
  EXPECT_EQ(reduce_combine(ReduceOp::kSum, 1.5, 2.0), 3.5);
  EXPECT_EQ(reduce_combine(ReduceOp::kMax, 1.5, 2.0), 2.0);
  EXPECT_EQ(reduce_combine(ReduceOp::kMax, 1.5, -2.0), 1.5);
  EXPECT_TRUE(std::isnan(reduce_combine(ReduceOp::kMax, kNan, 2.0)));
  EXPECT_TRUE(std::isnan(reduce_combine(ReduceOp::kMax, 2.0, kNan)));
}

std::vector<float> samples() {
  return {0.0f, -0.0f, 1.0f, -1.0f, 0.5f, 3.0f, -2.5f, 1e-30f, 1e30f, kNanF,
          std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity()};
}

bool same(float a, float b) { return (std::isnan(a) && std::isnan(b)) || a == b; }

TEST(Eval, BlocksMatchOneValueFunctions) {
  std::vector<float> x = samples();
  const auto n = static_cast<int64_t>(x.size());
  std::vector<float> out(x.size());
#define FUSEOPT_X(name, text)                                                       \
  eval_unary_block(UnaryOp::k##name, x.data(), out.data(), n);                      \
  for (size_t i = 0; i < x.size(); ++i) {                                           \
    EXPECT_TRUE(same(out[i], eval_unary(UnaryOp::k##name, x[i]))) << text << " " << x[i]; \
  }
  FUSEOPT_IR_UNARY_OPS(FUSEOPT_X)
#undef FUSEOPT_X
  std::vector<float> a;
  std::vector<float> b;
  for (float u : samples()) {
    for (float v : samples()) {
      a.push_back(u);
      b.push_back(v);
    }
  }
  out.resize(a.size());
  const auto m = static_cast<int64_t>(a.size());
#define FUSEOPT_X(name, text)                                                      \
  eval_binary_block(BinaryOp::k##name, a.data(), b.data(), out.data(), m);         \
  for (size_t i = 0; i < a.size(); ++i) {                                          \
    EXPECT_TRUE(same(out[i], eval_binary(BinaryOp::k##name, a[i], b[i])))          \
        << text << " " << a[i] << " " << b[i];                                     \
  }
  FUSEOPT_IR_BINARY_OPS(FUSEOPT_X)
#undef FUSEOPT_X
}

}  // namespace
}  // namespace fuseopt::ir

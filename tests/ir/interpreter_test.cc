// Tests of the reference interpreter: results of optimised kernels against plain C++ written
// from the same formulas, state initialisation, in-place semantics, scalar states, and
// sizes around the block width.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "ir/interpreter.h"
#include "ir/passes/pipeline.h"
#include "ir/passes/split_phases.h"
#include "support/error.h"
#include "tests/ir/test_kernels.h"

namespace fuseopt::ir {
namespace {

using namespace test;  // NOLINT: the expression shorthands

std::vector<float> random_values(size_t n, uint32_t seed, float lo = -1, float hi = 1) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = dist(gen);
  return v;
}

// One tensor's buffers, owned, in Kernel::buffers order.
struct Tensor {
  std::vector<std::vector<float>> buffers;
  TensorArgs args;

  Tensor(const Kernel& k, size_t n, uint32_t seed) {
    for (size_t i = 0; i < k.buffers.size(); ++i) {
      buffers.push_back(random_values(n, seed + static_cast<uint32_t>(i)));
    }
    args.numel = static_cast<int64_t>(n);
    for (auto& b : buffers) args.buffers.push_back(b.data());
  }
  Tensor(const Tensor&) = delete;  // args points into buffers
  Tensor& operator=(const Tensor&) = delete;
  std::vector<float>& operator[](size_t i) { return buffers[i]; }
  // Copies in place: assigning a new vector would move its storage away from args.
  void fill(size_t i, const std::vector<float>& values) {
    std::copy(values.begin(), values.end(), buffers[i].begin());
  }
};

std::vector<double> defaults(const Kernel& k) {
  std::vector<double> hypers;
  for (const HyperDecl& h : k.hypers) hypers.push_back(h.default_value);
  return hypers;
}

void step(const Interpreter& interpreter, Tensor& tensor, const std::vector<double>& hypers,
          int64_t t) {
  interpreter.step(std::span<TensorArgs>(&tensor.args, 1), hypers, t);
}

TEST(Interpreter, AdamMatchesPlainCode) {
  for (size_t n : {0u, 1u, 255u, 256u, 257u, 1000u}) {
    Kernel k = optimize(adam_kernel());
    Interpreter interpreter(k);
    Tensor tensor(k, n, 7);
    std::vector<double> hypers = {0.01, 0.8, 0.99, 1e-6};
    interpreter.initialize(tensor.args, hypers);
    std::vector<float> p = tensor[0];
    std::vector<float> m(n, 0.0f);
    std::vector<float> v(n, 0.0f);
    for (int64_t t = 1; t <= 3; ++t) {
      tensor.fill(1, random_values(n, 100 + static_cast<uint32_t>(t)));
      step(interpreter, tensor, hypers, t);
      const double lr = hypers[0], beta1 = hypers[1], beta2 = hypers[2], eps = hypers[3];
      const double bc1 = 1 - std::pow(beta1, static_cast<double>(t));
      const double bc2 = 1 - std::pow(beta2, static_cast<double>(t));
      for (size_t i = 0; i < n; ++i) {
        const float g = tensor[1][i];
        m[i] = static_cast<float>(beta1) * m[i] + static_cast<float>(1 - beta1) * g;
        v[i] = static_cast<float>(beta2) * v[i] + static_cast<float>(1 - beta2) * g * g;
        const float denom =
            std::sqrt(v[i]) / static_cast<float>(std::sqrt(bc2)) + static_cast<float>(eps);
        p[i] = p[i] - static_cast<float>(lr / bc1) * (m[i] / denom);
      }
      for (size_t i = 0; i < n; ++i) {
        ASSERT_EQ(tensor[0][i], p[i]) << "n=" << n << " t=" << t << " i=" << i;
        ASSERT_EQ(tensor[2][i], m[i]);
        ASSERT_EQ(tensor[3][i], v[i]);
      }
    }
  }
}

TEST(Interpreter, LambMatchesPlainCode) {
  Kernel k = optimize(lamb_kernel());
  ASSERT_EQ(k.phases.size(), 2u);
  Interpreter interpreter(k);
  const size_t n = 700;
  Tensor tensor(k, n, 3);
  std::vector<double> hypers = defaults(k);
  interpreter.initialize(tensor.args, hypers);
  std::vector<float> p = tensor[0];
  const std::vector<float>& g = tensor[1];
  const double lr = hypers[0], beta1 = hypers[1], beta2 = hypers[2], eps = hypers[3],
               wd = hypers[4];
  std::vector<float> m(n), v(n), u(n);
  double w_sq = 0, u_sq = 0;
  for (size_t i = 0; i < n; ++i) {
    m[i] = static_cast<float>(beta1) * 0.0f + static_cast<float>(1 - beta1) * g[i];
    v[i] = static_cast<float>(beta2) * 0.0f + static_cast<float>(1 - beta2) * g[i] * g[i];
    u[i] = m[i] / (std::sqrt(v[i]) + static_cast<float>(eps)) + static_cast<float>(wd) * p[i];
    w_sq += static_cast<double>(p[i] * p[i]);
    u_sq += static_cast<double>(u[i] * u[i]);
  }
  const double w_norm = std::sqrt(w_sq), u_norm = std::sqrt(u_sq);
  const double trust = w_norm > 0 && u_norm > 0 ? w_norm / u_norm : 1;
  step(interpreter, tensor, hypers, 1);
  for (size_t i = 0; i < n; ++i) {
    ASSERT_EQ(tensor[0][i], p[i] - static_cast<float>(lr * trust) * u[i]) << i;
    ASSERT_EQ(tensor[2][i], m[i]);
    ASSERT_EQ(tensor[3][i], v[i]);
  }
}

TEST(Interpreter, ReductionOfAReductionAndScalarState) {
  Kernel k = optimize(nested_kernel());
  ASSERT_EQ(k.phases.size(), 3u);
  Interpreter interpreter(k);
  // Two tensors of different sizes in one group: each has its own numel and scalar state.
  Tensor first(k, 300, 11);
  Tensor second(k, 5, 21);
  Tensor* tensors[] = {&first, &second};
  std::vector<double> hypers = defaults(k);
  std::vector<TensorArgs> args;
  std::vector<std::vector<float>> expected;
  for (Tensor* tensor_ptr : tensors) {
    Tensor& tensor = *tensor_ptr;
    interpreter.initialize(tensor.args, hypers);
    EXPECT_EQ(tensor.args.scalars, std::vector<double>{0.0});
    const std::vector<float>& g = tensor[1];
    const size_t n = g.size();
    double sum = 0;
    for (float x : g) sum += static_cast<double>(x);
    const double mean = sum / static_cast<double>(n);
    double sq = 0;
    for (float x : g) {
      const float c = x - static_cast<float>(mean);
      sq += static_cast<double>(c * c);
    }
    const double sd = std::sqrt(sq / static_cast<double>(n));
    std::vector<float> p = tensor[0];
    for (size_t i = 0; i < n; ++i) {
      const float c = g[i] - static_cast<float>(mean);
      p[i] = p[i] - static_cast<float>(hypers[0]) *
                        (c / (static_cast<float>(sd) + static_cast<float>(hypers[1])));
    }
    expected.push_back(p);
  }
  for (Tensor* tensor : tensors) args.push_back(tensor->args);
  interpreter.step(args, hypers, 1);
  interpreter.step(std::span<TensorArgs>(args).subspan(1), hypers, 2);
  EXPECT_EQ(args[0].scalars, std::vector<double>{1.0});
  EXPECT_EQ(args[1].scalars, std::vector<double>{2.0});
  for (size_t i = 0; i < 300; ++i) ASSERT_EQ(first[0][i], expected[0][i]) << i;
}

TEST(Interpreter, OptimizationPreservesResults) {
  for (const Kernel& source : {adam_kernel(), lamb_kernel(), nested_kernel()}) {
    Interpreter plain(split_phases(source));
    Interpreter optimized(optimize(source));
    Tensor a(source, 513, 5);
    Tensor b(source, 513, 5);
    std::vector<double> hypers = defaults(source);
    plain.initialize(a.args, hypers);
    optimized.initialize(b.args, hypers);
    for (int64_t t = 1; t <= 2; ++t) {
      step(plain, a, hypers, t);
      step(optimized, b, hypers, t);
    }
    EXPECT_EQ(a.buffers, b.buffers) << source.rule;
    EXPECT_EQ(a.args.scalars, b.args.scalars) << source.rule;
  }
}

TEST(Interpreter, NeedsASplitKernel) {
  EXPECT_THROW(Interpreter interpreter(lamb_kernel()), InternalError);
}

TEST(Interpreter, InitializeFillsStates) {
  Kernel k = sgd_kernel();
  k.hypers.push_back({"init", 0.1});
  k.buffers.push_back(state("zero"));
  k.buffers.push_back(state("seven", {StateInit::Kind::kNumber, 7, ""}));
  k.buffers.push_back(state("copy_p", {StateInit::Kind::kParam, 0, ""}));
  k.buffers.push_back(state("copy_g", {StateInit::Kind::kGrad, 0, ""}));
  k.buffers.push_back(state("from_h", {StateInit::Kind::kHyper, 0, "init"}));
  k.buffers.push_back(state("kept", {StateInit::Kind::kNumber, 3, ""}));
  k.scalars = {{"a", 1.5}, {"b", -2}};
  Interpreter interpreter(split_phases(k));
  Tensor tensor(k, 10, 9);
  std::vector<float> kept = tensor[7];
  std::vector<bool> filled(k.buffers.size(), false);
  filled[7] = true;
  interpreter.initialize(tensor.args, std::vector<double>{0.1, 0.3}, filled);
  for (size_t i = 0; i < 10; ++i) {
    EXPECT_EQ(tensor[2][i], 0.0f);
    EXPECT_EQ(tensor[3][i], 7.0f);
    EXPECT_EQ(tensor[4][i], tensor[0][i]);
    EXPECT_EQ(tensor[5][i], tensor[1][i]);
    EXPECT_EQ(tensor[6][i], static_cast<float>(0.3));
    EXPECT_EQ(tensor[7][i], kept[i]);
  }
  EXPECT_EQ(tensor.args.scalars, (std::vector<double>{1.5, -2}));
}

TEST(Interpreter, LoadsSeeTheStepsStartValues) {
  // m = grad; param = param - m (the old m); n = m (the old m): every load is of the value
  // before the step, whatever the order of the stores.
  Kernel k = base_kernel("inplace", {}, {state("m"), state("n")});
  k.phases[0].stores = {{"m", load("grad")},
                        {"param", sub(load("param"), load("m"))},
                        {"n", load("m")}};
  Interpreter interpreter(optimize(k));
  Tensor tensor(k, 300, 4);
  std::vector<float> p = tensor[0], g = tensor[1], m = tensor[2];
  step(interpreter, tensor, {}, 1);
  for (size_t i = 0; i < 300; ++i) {
    EXPECT_EQ(tensor[2][i], g[i]);
    EXPECT_EQ(tensor[0][i], p[i] - m[i]);
    EXPECT_EQ(tensor[3][i], m[i]);
  }
}

TEST(Interpreter, SwapsBuffersAndScalars) {
  Kernel k = base_kernel("swap", {}, {state("a"), state("b")});
  k.phases[0].stores = {{"a", load("b")}, {"b", load("a")}};
  k.scalars = {{"x", 1}, {"y", 2}};
  k.scalar_stores = {{"x", var("y")}, {"y", var("x")}};
  Interpreter interpreter(optimize(k));
  Tensor tensor(k, 260, 8);
  interpreter.initialize(tensor.args, {});
  std::vector<float> a = random_values(260, 1), b = random_values(260, 2);
  tensor.fill(2, a);
  tensor.fill(3, b);
  step(interpreter, tensor, {}, 1);
  EXPECT_EQ(tensor[2], b);
  EXPECT_EQ(tensor[3], a);
  EXPECT_EQ(tensor.args.scalars, (std::vector<double>{2, 1}));
}

TEST(Interpreter, SelectsMasksAndMaxReduction) {
  // param = (t > 1 ? max|grad| : 0) applied where grad < 0, else param * 2.
  Kernel k = base_kernel("select", {}, {});
  Expr g = load("grad");
  Expr mask = make_binary(BinaryOp::kLt, g, f32(num(0)));
  Expr late = make_binary(BinaryOp::kGt, var("t"), num(1));
  k.phases[0].reductions = {{"%r0", ReduceOp::kMax, make_unary(UnaryOp::kAbs, g)}};
  k.phases[0].stores = {
      {"param", make_select(mask, make_select(late, f32(var("%r0")), f32(num(0))),
                            mul(load("param"), f32(num(2))))}};
  Interpreter interpreter(optimize(k));
  Tensor tensor(k, 50, 6);
  std::vector<float> p = tensor[0], g_values = tensor[1];
  double max_abs = 0;
  for (float x : g_values) max_abs = std::max(max_abs, static_cast<double>(std::fabs(x)));
  step(interpreter, tensor, {}, 1);
  for (size_t i = 0; i < 50; ++i) {
    EXPECT_EQ(tensor[0][i], g_values[i] < 0 ? 0.0f : p[i] * 2) << i;
  }
  p = tensor[0];
  step(interpreter, tensor, {}, 2);
  for (size_t i = 0; i < 50; ++i) {
    EXPECT_EQ(tensor[0][i], g_values[i] < 0 ? static_cast<float>(max_abs) : p[i] * 2) << i;
  }
  // A NaN anywhere makes the max NaN.
  tensor[1][17] = NAN;
  step(interpreter, tensor, {}, 2);
  for (size_t i = 0; i < 50; ++i) {
    if (i != 17 && g_values[i] < 0) {
      EXPECT_TRUE(std::isnan(tensor[0][i])) << i;
    }
  }
}

TEST(Interpreter, ChecksArguments) {
  Interpreter interpreter(optimize(adam_kernel()));
  Tensor tensor(adam_kernel(), 4, 1);
  EXPECT_THROW(interpreter.initialize(tensor.args, std::vector<double>{0.1}), InternalError);
  interpreter.initialize(tensor.args, defaults(adam_kernel()));
  EXPECT_THROW(step(interpreter, tensor, defaults(adam_kernel()), 0), InternalError);
  tensor.args.buffers.pop_back();
  EXPECT_THROW(step(interpreter, tensor, defaults(adam_kernel()), 1), InternalError);
}

}  // namespace
}  // namespace fuseopt::ir

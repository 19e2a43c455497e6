// Tests of the IR's text form: inline scalar expressions, the kernel layout, and that output
// depends only on structure (identical across separately built kernels).
#include <gtest/gtest.h>

#include <limits>
#include <string>

#include "ir/passes/pipeline.h"
#include "ir/printer.h"
#include "tests/ir/test_kernels.h"

namespace fuseopt::ir {
namespace {

using namespace test;  // NOLINT: the expression shorthands

size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

TEST(Printer, ScalarExpressionsInline) {
  EXPECT_EQ(print_expr(sub(num(1), pow(var("beta1"), var("t")))), "sub(1, pow(beta1, t))");
  EXPECT_EQ(print_expr(num(0.1)), "0.1");
  EXPECT_EQ(print_expr(num(1e-8)), "1e-08");
  EXPECT_EQ(print_expr(num(-0.0)), "-0");
  EXPECT_EQ(print_expr(num(0.1 + 0.2)), "0.30000000000000004");
  EXPECT_EQ(print_expr(num(std::numeric_limits<double>::infinity())), "inf");
  EXPECT_EQ(print_expr(make_bool(true)), "true");
  EXPECT_EQ(print_expr(make_bool(false)), "false");
  EXPECT_EQ(print_expr(f32(var("lr"))), "f32(lr)");
  EXPECT_EQ(print_expr(make_cast(Type::kMask, make_bool(true))), "mask(true)");
  EXPECT_EQ(print_expr(make_select(var("c", Type::kBool), num(1), num(2))), "select(c, 1, 2)");
  EXPECT_EQ(print_expr(make_unary(UnaryOp::kIsFinite, var("x"))), "isfinite(x)");
  EXPECT_EQ(print_expr(nullptr), "<null>");
}

TEST(Printer, SgdKernelExactly) {
  Kernel k = optimize(sgd_kernel());
  EXPECT_EQ(print_kernel(k),
            "kernel sgd\n"
            "rule sgd\n"
            "hyper lr = 0.1\n"
            "buffer param: param f32 inout\n"
            "buffer grad: grad f32 in\n"
            "phase 0:\n"
            "  %e0: f32 = load param\n"
            "  %e1: f32 = load grad\n"
            "  %e2: f32 = mul(f32(lr), %e1)\n"
            "  %e3: f32 = sub(%e0, %e2)\n"
            "  store param = %e3\n");
}

TEST(Printer, NestedKernelExactly) {
  Kernel k = optimize(nested_kernel());
  k.buffers.push_back(state("slow", {StateInit::Kind::kHyper, 0, "lr"}));
  k.options = {{"centered", 1, true}, {"k", 3, false}};
  EXPECT_EQ(print_kernel(k),
            "kernel center_centered1_k3\n"
            "rule center\n"
            "option centered = true\n"
            "option k = 3\n"
            "hyper lr = 0.5\n"
            "hyper eps = 0.001\n"
            "buffer param: param f32 inout\n"
            "buffer grad: grad f32 in\n"
            "buffer slow: state f32 in init hyper lr\n"
            "scalar count = 0\n"
            "phase 0:\n"
            "  %e0: f32 = load grad\n"
            "  reduce %r0 = sum(%e0)\n"
            "phase 1:\n"
            "  %0: f64 = div(%r0, numel)\n"
            "  %e0: f32 = load grad\n"
            "  %e1: f32 = sub(%e0, f32(%0))\n"
            "  %e2: f32 = mul(%e1, %e1)\n"
            "  reduce %r1 = sum(%e2)\n"
            "phase 2:\n"
            "  %1: f64 = sqrt(div(%r1, numel))\n"
            "  %e0: f32 = load param\n"
            "  %e1: f32 = load grad\n"
            "  %e2: f32 = sub(%e1, f32(%0))\n"
            "  %e3: f32 = add(f32(%1), f32(eps))\n"
            "  %e4: f32 = div(%e2, %e3)\n"
            "  %e5: f32 = mul(f32(lr), %e4)\n"
            "  %e6: f32 = sub(%e0, %e5)\n"
            "  store param = %e6\n"
            "after:\n"
            "  scalar count = add(count, 1)\n");
}

TEST(Printer, AdamSharesNodesAndIsStable) {
  std::string first = print_kernel(optimize(adam_kernel()));
  std::string second = print_kernel(optimize(adam_kernel()));
  EXPECT_EQ(first, second);
  EXPECT_NE(first.find("kernel adam_amsgrad0_maximize0\n"), std::string::npos);
  EXPECT_NE(first.find("option amsgrad = false\n"), std::string::npos);
  EXPECT_NE(first.find("hyper eps = 1e-08\n"), std::string::npos);
  EXPECT_NE(first.find("buffer exp_avg: state f32 inout init 0\n"), std::string::npos);
  EXPECT_NE(first.find("  %0: f64 = sub(1, pow(beta1, t))\n"), std::string::npos);
  EXPECT_NE(first.find("  store exp_avg = %e"), std::string::npos);
  EXPECT_EQ(count(first, "= load grad\n"), 1u);  // used three times, printed once
  EXPECT_EQ(count(first, "  store "), 3u);
}

TEST(Printer, UnsplitKernel) {
  std::string text = print_kernel(lamb_kernel());
  EXPECT_NE(text.find("phase 0 (unsplit):\n  %0: f64 = sqrt(%r0)\n"), std::string::npos);
  EXPECT_NE(text.find("  reduce %r0 = sum(%e"), std::string::npos);
  EXPECT_NE(text.find("  reduce %r1 = sum(%e"), std::string::npos);
  EXPECT_NE(text.find("  store param = %e"), std::string::npos);
  EXPECT_NE(text.find("  %2: f64 = select(and(gt(%0, 0), gt(%1, 0)), div(%0, %1), 1)\n"),
            std::string::npos);
  EXPECT_EQ(text, print_kernel(lamb_kernel()));
}

TEST(Printer, MasksAndHostSelects) {
  Kernel k = sgd_kernel();
  k.is_split = true;
  Expr mask = make_binary(BinaryOp::kLt, load("grad"), f32(num(0)));
  k.phases[0].stores[0].value =
      make_select(var("flag", Type::kBool), make_select(mask, load("param"), load("grad")),
                  load("param"));
  std::string text = print_kernel(k);
  EXPECT_NE(text.find("  %e1: mask = lt(%e0, f32(0))\n"), std::string::npos) << text;
  EXPECT_NE(text.find("= select(flag, %e"), std::string::npos) << text;
}

}  // namespace
}  // namespace fuseopt::ir

// Tests of the IR verifier: the hand-built kernels pass (before and after optimisation), and
// each broken invariant is rejected with a message that says which and where.
#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "ir/passes/pipeline.h"
#include "ir/passes/split_phases.h"
#include "ir/verifier.h"
#include "support/error.h"
#include "tests/ir/test_kernels.h"

namespace fuseopt::ir {
namespace {

using namespace test;  // NOLINT: the expression shorthands

void expect_rejected(const Kernel& kernel, const std::string& fragment) {
  try {
    verify(kernel);
    ADD_FAILURE() << "verify() accepted a kernel that should fail with: " << fragment;
  } catch (const InternalError& error) {
    EXPECT_NE(std::string(error.what()).find(fragment), std::string::npos)
        << "message: " << error.what() << "\nexpected to contain: " << fragment;
  }
}

TEST(Verifier, AcceptsGoodKernels) {
  for (const Kernel& k : {sgd_kernel(), adam_kernel(), lamb_kernel(), nested_kernel()}) {
    EXPECT_NO_THROW(verify(k)) << k.rule;
    EXPECT_NO_THROW(verify(split_phases(k))) << k.rule;
    EXPECT_NO_THROW(verify(optimize(k))) << k.rule;
  }
}

TEST(Verifier, NeedsAPhase) {
  Kernel k = sgd_kernel();
  k.phases.clear();
  expect_rejected(k, "has no phase");
}

TEST(Verifier, UnsplitMeansOnePhase) {
  Kernel k = sgd_kernel();
  k.phases.emplace_back();
  expect_rejected(k, "exactly one phase");
}

TEST(Verifier, ParamThenGrad) {
  Kernel k = sgd_kernel();
  std::swap(k.buffers[0], k.buffers[1]);
  expect_rejected(k, "first buffer must be the param");
  k = sgd_kernel();
  k.buffers.pop_back();
  expect_rejected(k, "need param and grad");
  k = adam_kernel();
  k.buffers[1].role = BufferRole::kState;
  expect_rejected(k, "second buffer must be the grad");
  k = adam_kernel();
  k.buffers[3].role = BufferRole::kGrad;
  expect_rejected(k, "buffer exp_avg_sq: only the first two");
}

TEST(Verifier, UniqueNames) {
  Kernel k = adam_kernel();
  k.buffers[3].name = "exp_avg";
  expect_rejected(k, "buffer exp_avg: is declared twice");
  k = adam_kernel();
  k.hypers.push_back({"lr", 1});
  expect_rejected(k, "hyper lr: name 'lr' is already defined");
  k = nested_kernel();
  k.scalars.push_back({"count", 1});
  expect_rejected(k, "scalar count: name 'count' is already defined");
  k = nested_kernel();
  k.scalars.push_back({"t", 1});
  expect_rejected(k, "name 't' is already defined");
  k = adam_kernel();
  k.phases[0].prologue[1].name = "%0";
  expect_rejected(k, "phase 0, temporary %0: name '%0' is already defined");
  k = lamb_kernel();
  k.phases[0].reductions[1].name = "%r0";
  expect_rejected(k, "reduction %r0: name '%r0' is already defined");
}

TEST(Verifier, StateInitFromUnknownHyper) {
  Kernel k = adam_kernel();
  k.buffers[2].init = {StateInit::Kind::kHyper, 0, "nope"};
  expect_rejected(k, "unknown hyper 'nope'");
}

TEST(Verifier, VarsMustBeDefined) {
  Kernel k = sgd_kernel();
  k.phases[0].stores[0].value = sub(load("param"), mul(f32(var("lrr")), load("grad")));
  expect_rejected(k, "phase 0, store param: uses undefined name 'lrr'");
}

TEST(Verifier, VarTypesMatch) {
  Kernel k = sgd_kernel();
  k.phases[0].stores[0].value =
      make_select(var("lr", Type::kBool), load("param"), load("grad"));
  expect_rejected(k, "uses 'lr' as bool, but it is f64");
  k = lamb_kernel();
  k.phases[0].prologue[2].value = var("%r0", Type::kBool);  // a reduction result is f64
  expect_rejected(k, "uses '%r0' as bool");
}

TEST(Verifier, TemporariesDefinedEarlier) {
  Kernel k = adam_kernel();
  k.phases[0].prologue[0].value = var("%1");
  expect_rejected(k, "phase 0, temporary %0: uses '%1'");
  // Split: element code of phase 0 cannot use a temporary of phase 1.
  k = split_phases(lamb_kernel());
  k.phases[0].reductions[0].body = mul(load("param"), f32(var("%2")));
  expect_rejected(k, "phase 0, reduction %r0: uses '%2' (defined in phase 1)");
}

TEST(Verifier, SplitReductionsOnlyFromEarlierPhases) {
  Kernel k = split_phases(lamb_kernel());
  ASSERT_EQ(k.phases.size(), 2u);
  k.phases[0].reductions[1].body = mul(load("param"), f32(var("%r0")));
  expect_rejected(k, "reductions of earlier phases");
  k = split_phases(lamb_kernel());
  k.phases[0].prologue.push_back({"%9", var("%r0")});
  expect_rejected(k, "phase 0, temporary %9: uses '%r0'");
}

TEST(Verifier, UnsplitReductionsMustNotDependOnThemselves) {
  Kernel k = nested_kernel();
  // %r0's body now uses %0, which is computed from %r0.
  k.phases[0].reductions[0].body = sub(load("grad"), f32(var("%0")));
  expect_rejected(k, "depends on itself");
}

TEST(Verifier, Loads) {
  Kernel k = sgd_kernel();
  k.phases[0].stores[0].value = load("momentum");
  expect_rejected(k, "loads unknown buffer 'momentum'");
  // Host code cannot load; make_*() cannot even build such a node, so forge one.
  auto forged = std::make_shared<ExprNode>(NodeKind::kBinary, Type::kF64);
  forged->operands = {load("param"), num(1)};
  k = adam_kernel();
  k.phases[0].prologue.push_back({"%5", forged});
  expect_rejected(k, "phase 0, temporary %5: host code loads buffer 'param'");
}

TEST(Verifier, PrologueIsScalar) {
  Kernel k = adam_kernel();
  k.phases[0].prologue.push_back({"%5", f32(var("lr"))});
  expect_rejected(k, "a prologue value must be f64 or bool, got f32");
}

TEST(Verifier, ReductionBodiesAreF32) {
  Kernel k = lamb_kernel();
  k.phases[0].reductions[0].body = var("lr");
  expect_rejected(k, "reduction %r0: a reduction body must be f32, got f64");
}

TEST(Verifier, BufferStores) {
  Kernel k = sgd_kernel();
  k.phases[0].stores.push_back({"grad", load("param")});
  expect_rejected(k, "store grad: stores to the grad");
  k = sgd_kernel();
  k.phases[0].stores.push_back({"param", load("grad")});
  expect_rejected(k, "is the second store to 'param'");
  k = sgd_kernel();
  k.phases[0].stores.push_back({"velocity", load("grad")});
  expect_rejected(k, "stores to unknown buffer 'velocity'");
  k = sgd_kernel();
  k.phases[0].stores[0].value = gt(load("param"), load("grad"));
  expect_rejected(k, "a buffer store must be f32, got mask");
}

TEST(Verifier, SplitKernelsStoreInTheLastPhase) {
  Kernel k = split_phases(lamb_kernel());
  k.phases[0].stores.push_back(k.phases[1].stores.back());
  k.phases[1].stores.pop_back();
  expect_rejected(k, "phase 0, store exp_avg_sq: a split kernel stores only in its last phase");
}

TEST(Verifier, ScalarStores) {
  Kernel k = nested_kernel();
  k.scalar_stores.push_back({"lr", num(1)});
  expect_rejected(k, "after, scalar lr: stores to 'lr', which is not a scalar state");
  k = nested_kernel();
  k.scalar_stores.push_back({"count", num(1)});
  expect_rejected(k, "is the second store to 'count'");
  k = nested_kernel();
  k.scalar_stores[0].value = make_bool(true);
  expect_rejected(k, "a scalar store must be f64, got bool");
}

TEST(Verifier, NodesAreWellTyped) {
  auto forged = std::make_shared<ExprNode>(NodeKind::kBinary, Type::kF32);
  forged->binary_op = BinaryOp::kLt;  // comparisons of f32 give masks, not f32
  forged->operands = {load("param"), load("grad")};
  Kernel k = sgd_kernel();
  k.phases[0].stores[0].value = forged;
  expect_rejected(k, "has type f32, its operands give mask");
  auto short_node = std::make_shared<ExprNode>(NodeKind::kUnary, Type::kF32);
  k.phases[0].stores[0].value = short_node;
  expect_rejected(k, "unary has 0 operands");
}

TEST(Verifier, MessageNamesTheKernel) {
  Kernel k = adam_kernel();
  k.phases.clear();
  expect_rejected(k, "internal error: IR verifier: kernel adam_amsgrad0_maximize0");
}

}  // namespace
}  // namespace fuseopt::ir

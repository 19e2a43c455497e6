// Tests of each pass on hand-built kernels, and of the pipeline that runs them in order.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <set>
#include <sstream>
#include <string>
#include <unordered_set>

#include "ir/passes/eliminate_common_subexpressions.h"
#include "ir/passes/eliminate_dead_code.h"
#include "ir/passes/fold_constants.h"
#include "ir/passes/hoist_scalars.h"
#include "ir/passes/pipeline.h"
#include "ir/passes/split_phases.h"
#include "ir/printer.h"
#include "ir/verifier.h"
#include "support/error.h"
#include "tests/ir/test_kernels.h"

namespace fuseopt::ir {
namespace {

using namespace test;  // NOLINT: the expression shorthands

// Folds one expression by storing it in an sgd kernel's scalar store or param store.
Expr fold(const Expr& e) {
  Kernel k = sgd_kernel();
  if (is_scalar(e)) {
    k.scalars = {{"s", 0}};
    k.scalar_stores = {{"s", e}};
    return fold_constants(k).scalar_stores[0].value;
  }
  k.phases[0].stores[0].value = e;
  return fold_constants(k).phases[0].stores[0].value;
}

Expr scalar_fold(const Expr& e) {  // for bool results: wrap as select(e, 1, 0) and unwrap
  Expr folded = fold(make_select(e, num(1), num(0)));
  return folded;
}

TEST(FoldConstants, F64Arithmetic) {
  Expr e = fold(sub(num(1), pow(num(0.9), num(2))));
  ASSERT_EQ(e->kind, NodeKind::kConst);
  EXPECT_EQ(e->value, 1 - std::pow(0.9, 2.0));
  EXPECT_EQ(print_expr(fold(div(num(1), num(3)))), "0.3333333333333333");
}

TEST(FoldConstants, F32ArithmeticInFloat) {
  Expr e = fold(mul(f32(num(0.1)), f32(num(3))));
  ASSERT_EQ(e->kind, NodeKind::kCast);
  ASSERT_EQ(e->operands[0]->kind, NodeKind::kConst);
  EXPECT_EQ(e->operands[0]->value, static_cast<double>(0.1f * 3.0f));
  // Each step rounds to float: 1e8 + 4 ties to 1e8, twice; in double the sum would be exact.
  Expr sum = fold(add(add(f32(num(1e8)), f32(num(4))), f32(num(4))));
  EXPECT_EQ(print_expr(sum), "f32(1e+08)");
  Expr s = fold(make_unary(UnaryOp::kSqrt, f32(num(2))));
  EXPECT_EQ(s->operands[0]->value, static_cast<double>(std::sqrt(2.0f)));
}

TEST(FoldConstants, BooleansAndSelect) {
  EXPECT_EQ(print_expr(scalar_fold(make_binary(BinaryOp::kLt, num(1), num(2)))), "1");
  EXPECT_EQ(print_expr(scalar_fold(make_unary(UnaryOp::kNot, make_bool(true)))), "0");
  Expr mask = make_binary(BinaryOp::kGt, f32(num(1)), f32(num(2)));
  Expr picked = fold(make_select(mask, load("param"), load("grad")));
  EXPECT_EQ(print_expr(picked), "load(grad)");
  Expr on_host = fold(make_select(make_bool(true), load("param"), load("grad")));
  EXPECT_EQ(print_expr(on_host), "load(param)");
  EXPECT_EQ(print_expr(fold(make_unary(UnaryOp::kIsFinite, num(INFINITY)))), "false");
}

TEST(FoldConstants, ExactIdentities) {
  Expr x = add(load("param"), load("grad"));
  EXPECT_EQ(fold(mul(x, f32(num(1)))), x);
  EXPECT_EQ(fold(mul(f32(num(1)), x)), x);
  EXPECT_EQ(fold(div(x, f32(num(1)))), x);
  EXPECT_EQ(fold(sub(x, f32(num(0)))), x);
  Expr y = var("lr");
  EXPECT_EQ(fold(mul(y, num(1))), y);
  EXPECT_EQ(fold(sub(y, num(0))), y);
  Expr c = make_binary(BinaryOp::kLt, y, num(1));
  Expr twice_negated =
      fold(make_select(make_unary(UnaryOp::kNot, make_unary(UnaryOp::kNot, c)), y, num(2)));
  EXPECT_EQ(twice_negated->operands[0], c);
}

TEST(FoldConstants, KeepsInexactIdentities) {
  Expr x = add(load("param"), load("grad"));
  EXPECT_EQ(print_expr(fold(add(x, f32(num(0))))), "add(add(load(param), load(grad)), f32(0))");
  EXPECT_EQ(print_expr(fold(sub(x, f32(num(-0.0))))),
            "sub(add(load(param), load(grad)), f32(-0))");
  EXPECT_EQ(print_expr(fold(mul(x, f32(num(2))))), "mul(add(load(param), load(grad)), f32(2))");
}

TEST(FoldConstants, ReturnsSameNodesWhenNothingFolds) {
  Kernel k = adam_kernel();
  Kernel folded = fold_constants(k);
  EXPECT_EQ(folded.phases[0].stores[0].value, k.phases[0].stores[0].value);
  EXPECT_EQ(folded.phases[0].prologue[0].value, k.phases[0].prologue[0].value);
}

// Counts distinct nodes reachable from every root of the kernel.
size_t count_nodes(const Kernel& k) {
  std::unordered_set<const ExprNode*> seen;
  std::function<void(const Expr&)> walk = [&](const Expr& e) {
    if (!seen.insert(e.get()).second) return;
    for (const Expr& operand : e->operands) walk(operand);
  };
  for (const Phase& phase : k.phases) {
    for (const ScalarDef& def : phase.prologue) walk(def.value);
    for (const Reduction& reduction : phase.reductions) walk(reduction.body);
    for (const Store& store : phase.stores) walk(store.value);
  }
  for (const Store& store : k.scalar_stores) walk(store.value);
  return seen.size();
}

TEST(EliminateCommonSubexpressions, SharesEqualStructures) {
  Kernel k = sgd_kernel();
  k.buffers.push_back(state("m"));
  k.phases[0].stores = {{"param", mul(add(load("param"), load("grad")), f32(var("lr")))},
                        {"m", add(load("param"), load("grad"))}};
  Kernel cse = eliminate_common_subexpressions(k);
  EXPECT_EQ(cse.phases[0].stores[0].value->operands[0], cse.phases[0].stores[1].value);
  EXPECT_LT(count_nodes(cse), count_nodes(k));
  EXPECT_NO_THROW(verify(cse));
  // Both loads of grad in the Adam kernel's v become one node, and so do the two `1`s.
  Kernel adam = eliminate_common_subexpressions(adam_kernel());
  EXPECT_EQ(adam.phases[0].prologue[0].value->operands[0],
            adam.phases[0].prologue[1].value->operands[0]);
}

TEST(EliminateCommonSubexpressions, KeepsSignedZerosApart) {
  Kernel k = sgd_kernel();
  k.buffers.push_back(state("m"));
  k.phases[0].stores = {{"param", f32(num(0.0))}, {"m", f32(num(-0.0))}};
  Kernel cse = eliminate_common_subexpressions(k);
  EXPECT_NE(cse.phases[0].stores[0].value, cse.phases[0].stores[1].value);
}

TEST(EliminateDeadCode, DropsUnusedValuesToAFixedPoint) {
  Kernel k = lamb_kernel();
  // %r2 is used only by %3, which nothing uses: both go. %4 is unused as well.
  k.phases[0].reductions.push_back({"%r2", ReduceOp::kMax, load("grad")});
  k.phases[0].prologue.push_back({"%3", sqrt(var("%r2"))});
  k.phases[0].prologue.push_back({"%4", var("lr")});
  Kernel dce = eliminate_dead_code(k);
  EXPECT_NO_THROW(verify(dce));
  EXPECT_EQ(dce.phases[0].prologue.size(), 3u);
  EXPECT_EQ(dce.phases[0].reductions.size(), 2u);
  // Without the param store the trust ratio, and the norms, are dead too.
  k.phases[0].stores.erase(k.phases[0].stores.begin());
  dce = eliminate_dead_code(k);
  EXPECT_TRUE(dce.phases[0].prologue.empty());
  EXPECT_TRUE(dce.phases[0].reductions.empty());
}

TEST(EliminateDeadCode, KeepsValuesOfScalarStores) {
  Kernel k = sgd_kernel();
  k.scalars = {{"gnorm", 0}};
  k.phases[0].reductions = {{"%r0", ReduceOp::kSum, mul(load("grad"), load("grad"))}};
  k.phases[0].prologue = {{"%0", sqrt(var("%r0"))}};
  k.scalar_stores = {{"gnorm", var("%0")}};
  Kernel dce = eliminate_dead_code(k);
  EXPECT_EQ(dce.phases[0].prologue.size(), 1u);
  EXPECT_EQ(dce.phases[0].reductions.size(), 1u);
}

TEST(EliminateDeadCode, MergesSplitPhasesLeftEmpty) {
  Kernel k = split_phases(lamb_kernel());
  ASSERT_EQ(k.phases.size(), 2u);
  k.phases[0].prologue.push_back({"%9", var("lr")});
  k.phases[1].stores[0].value = sub(load("param"), f32(var("%9")));  // norms now unused
  Kernel dce = eliminate_dead_code(k);
  EXPECT_NO_THROW(verify(dce));
  ASSERT_EQ(dce.phases.size(), 1u);
  ASSERT_EQ(dce.phases[0].prologue.size(), 1u);
  EXPECT_EQ(dce.phases[0].prologue[0].name, "%9");
}

TEST(SplitPhases, NoReductionsIsOnePhase) {
  Kernel k = split_phases(adam_kernel());
  EXPECT_TRUE(k.is_split);
  ASSERT_EQ(k.phases.size(), 1u);
  EXPECT_EQ(k.phases[0].prologue.size(), 2u);
  EXPECT_EQ(k.phases[0].stores.size(), 3u);
  EXPECT_NO_THROW(verify(k));
}

TEST(SplitPhases, NormsThenUpdate) {
  Kernel k = split_phases(lamb_kernel());
  EXPECT_NO_THROW(verify(k));
  ASSERT_EQ(k.phases.size(), 2u);
  EXPECT_EQ(k.phases[0].reductions.size(), 2u);
  EXPECT_TRUE(k.phases[0].prologue.empty());
  EXPECT_TRUE(k.phases[0].stores.empty());
  EXPECT_EQ(k.phases[1].prologue.size(), 3u);  // %0, %1, %2 need the norms
  EXPECT_TRUE(k.phases[1].reductions.empty());
  EXPECT_EQ(k.phases[1].stores.size(), 3u);  // all stores in the last phase, even m and v
}

TEST(SplitPhases, ReductionOfAReduction) {
  Kernel k = split_phases(nested_kernel());
  EXPECT_NO_THROW(verify(k));
  ASSERT_EQ(k.phases.size(), 3u);
  ASSERT_EQ(k.phases[0].reductions.size(), 1u);
  EXPECT_EQ(k.phases[0].reductions[0].name, "%r0");
  ASSERT_EQ(k.phases[1].prologue.size(), 1u);
  EXPECT_EQ(k.phases[1].prologue[0].name, "%0");
  ASSERT_EQ(k.phases[1].reductions.size(), 1u);
  EXPECT_EQ(k.phases[1].reductions[0].name, "%r1");
  ASSERT_EQ(k.phases[2].prologue.size(), 1u);
  EXPECT_EQ(k.phases[2].prologue[0].name, "%1");
  EXPECT_EQ(k.phases[2].stores.size(), 1u);
  EXPECT_EQ(k.scalar_stores.size(), 1u);
  EXPECT_EQ(split_phases(k).phases.size(), 3u);  // already split: unchanged
}

TEST(SplitPhases, TemporaryNeededOnlyAfterTheLastPhaseIsInlined) {
  Kernel k = sgd_kernel();
  k.scalars = {{"gnorm", 0}};
  k.phases[0].reductions = {{"%r0", ReduceOp::kSum, mul(load("grad"), load("grad"))}};
  k.phases[0].prologue = {{"%0", sqrt(var("%r0"))}};
  k.scalar_stores = {{"gnorm", add(var("%0"), num(1))}};
  Kernel split = split_phases(k);
  EXPECT_NO_THROW(verify(split));
  ASSERT_EQ(split.phases.size(), 1u);
  EXPECT_TRUE(split.phases[0].prologue.empty());
  EXPECT_EQ(print_expr(split.scalar_stores[0].value), "add(sqrt(%r0), 1)");
}

// True when element code reads host values only as names and constants.
bool element_code_is_hoisted(const Kernel& k) {
  bool ok = true;
  std::function<void(const Expr&)> walk = [&](const Expr& e) {
    if (is_scalar(e)) {
      ok = ok && (e->kind == NodeKind::kVar || e->kind == NodeKind::kConst);
      return;
    }
    for (const Expr& operand : e->operands) walk(operand);
  };
  for (const Phase& phase : k.phases) {
    for (const Reduction& reduction : phase.reductions) walk(reduction.body);
    for (const Store& store : phase.stores) walk(store.value);
  }
  return ok;
}

TEST(HoistScalars, MovesHostMathToThePrologue) {
  Kernel split = split_phases(eliminate_common_subexpressions(adam_kernel()));
  EXPECT_FALSE(element_code_is_hoisted(split));
  Kernel k = hoist_scalars(split);
  EXPECT_NO_THROW(verify(k));
  EXPECT_TRUE(element_code_is_hoisted(k));
  // sub(1, beta1), sub(1, beta2), sqrt(%1) and div(lr, %0), numbered after %0 and %1.
  ASSERT_EQ(k.phases[0].prologue.size(), 6u);
  std::set<std::string> hoisted;
  const char* names[] = {"%0", "%1", "%2", "%3", "%4", "%5"};
  for (size_t i = 2; i < 6; ++i) {
    EXPECT_EQ(k.phases[0].prologue[i].name, names[i]);
    hoisted.insert(print_expr(k.phases[0].prologue[i].value));
  }
  EXPECT_EQ(hoisted, (std::set<std::string>{"sub(1, beta1)", "sub(1, beta2)", "sqrt(%1)",
                                            "div(lr, %0)"}));
}

TEST(HoistScalars, IdenticalSubexpressionsShareATemporary) {
  Kernel k = sgd_kernel();
  k.buffers.push_back(state("m"));
  // Two separately built copies of sub(1, lr), and one that is already a temporary.
  k.phases[0].prologue = {{"%0", mul(var("lr"), num(2))}};
  k.phases[0].stores = {{"param", mul(load("param"), f32(sub(num(1), var("lr"))))},
                        {"m", add(mul(load("grad"), f32(sub(num(1), var("lr")))),
                                  f32(mul(var("lr"), num(2))))}};
  k.is_split = true;
  Kernel hoisted = hoist_scalars(k);
  EXPECT_NO_THROW(verify(hoisted));
  ASSERT_EQ(hoisted.phases[0].prologue.size(), 2u);
  EXPECT_EQ(hoisted.phases[0].prologue[1].name, "%1");
  EXPECT_EQ(print_expr(hoisted.phases[0].stores[0].value), "mul(load(param), f32(%1))");
  EXPECT_EQ(print_expr(hoisted.phases[0].stores[1].value),
            "add(mul(load(grad), f32(%1)), f32(%0))");
}

TEST(HoistScalars, HostConditionsBecomeBoolTemporaries) {
  Kernel k = sgd_kernel();
  k.is_split = true;
  Expr cond = make_binary(BinaryOp::kGt, var("lr"), num(0));
  k.phases[0].stores[0].value = make_select(cond, load("param"), load("grad"));
  Kernel hoisted = hoist_scalars(k);
  EXPECT_NO_THROW(verify(hoisted));
  ASSERT_EQ(hoisted.phases[0].prologue.size(), 1u);
  EXPECT_EQ(hoisted.phases[0].prologue[0].value->type, Type::kBool);
  EXPECT_EQ(print_expr(hoisted.phases[0].stores[0].value),
            "select(%0, load(param), load(grad))");
}

TEST(Pipeline, PrintsAfterEachPass) {
  std::ostringstream log;
  Kernel k = optimize(lamb_kernel(), {&log});
  std::string text = log.str();
  size_t at = 0;
  for (const char* pass :
       {"fold_constants", "eliminate_common_subexpressions", "eliminate_dead_code",
        "split_phases", "hoist_scalars", "eliminate_common_subexpressions",
        "eliminate_dead_code"}) {
    at = text.find(std::string("; after ") + pass + "\nkernel lamb\n", at);
    ASSERT_NE(at, std::string::npos) << pass;
    ++at;
  }
  EXPECT_TRUE(k.is_split);
  EXPECT_TRUE(element_code_is_hoisted(k));
  EXPECT_EQ(k.phases.size(), 2u);
}

TEST(Pipeline, RejectsBrokenInput) {
  Kernel k = sgd_kernel();
  k.phases[0].stores.push_back({"grad", load("param")});
  EXPECT_THROW(optimize(k), InternalError);
}

TEST(Pipeline, IsDeterministic) {
  EXPECT_EQ(print_kernel(optimize(nested_kernel())), print_kernel(optimize(nested_kernel())));
}

}  // namespace
}  // namespace fuseopt::ir

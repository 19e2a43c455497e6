// The frontend end to end through its entry point: parse, check, lower, optimize.
#include "frontend/rule.h"

#include <gtest/gtest.h>

#include <cmath>

#include "ir/interpreter.h"
#include "ir/printer.h"
#include "support/error.h"

namespace fuseopt::frontend {
namespace {

constexpr const char* kMomentum = R"(
rule momentum "heavy ball"
hyper lr = 0.1, beta = 0.9
option nesterov = false
state buf = 0
step {
  buf = beta * buf + grad
  param = param - lr * (nesterov ? grad + beta * buf : buf)
}
)";

TEST(Rule, DeclarationsAreExposed) {
  const Rule rule = rule_from_text(kMomentum);
  EXPECT_EQ(rule.name(), "momentum");
  EXPECT_EQ(rule.summary(), "heavy ball");
  ASSERT_EQ(rule.hypers().size(), 2u);
  EXPECT_EQ(rule.hypers()[1].name, "beta");
  EXPECT_EQ(rule.hypers()[1].default_value, 0.9);
  ASSERT_EQ(rule.options().size(), 1u);
  EXPECT_TRUE(rule.options()[0].is_bool);
  ASSERT_EQ(rule.states().size(), 1u);
  EXPECT_EQ(rule.states()[0].init, "0");
}

TEST(Rule, OptionsResolveAndRejectBadValues) {
  const Rule rule = rule_from_text(kMomentum);
  EXPECT_EQ(rule.resolve_options({{"nesterov", "true"}})[0].value, 1);
  EXPECT_THROW(rule.resolve_options({{"nesterof", "true"}}), UserError);
  EXPECT_THROW(rule.resolve_options({{"nesterov", "yes"}}), UserError);
  EXPECT_EQ(rule.option_combinations().size(), 2u);
}

TEST(Rule, UnknownOptionSuggestsTheClosest) {
  const Rule rule = rule_from_text(kMomentum);
  try {
    rule.resolve_options({{"nesterof", "true"}});
    FAIL();
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("did you mean 'nesterov'"), std::string::npos);
  }
}

TEST(Rule, CompiledKernelRunsAsTheFormulaSays) {
  const Rule rule = rule_from_text(kMomentum);
  for (int nesterov = 0; nesterov <= 1; ++nesterov) {
    const ir::Kernel kernel = rule.compile(rule.resolve_options({{"nesterov", nesterov ? "true" : "false"}}));
    ir::Interpreter interpreter(kernel);
    std::vector<float> param = {1, -2, 3}, grad = {0.5f, 0.25f, -1}, buf(3);
    ir::TensorArgs tensor{3, {param.data(), grad.data(), buf.data()}, {}};
    const std::vector<double> hypers = {0.1, 0.9};
    interpreter.initialize(tensor, hypers);
    for (int t = 1; t <= 2; ++t) interpreter.step(std::span(&tensor, 1), hypers, t);
    // Two steps by hand, in float as the IR computes elements.
    std::vector<float> p = {1, -2, 3}, b(3, 0);
    for (int t = 1; t <= 2; ++t) {
      for (int i = 0; i < 3; ++i) {
        b[i] = 0.9f * b[i] + grad[i];
        p[i] = p[i] - 0.1f * (nesterov ? grad[i] + 0.9f * b[i] : b[i]);
      }
    }
    for (int i = 0; i < 3; ++i) {
      EXPECT_NEAR(param[i], p[i], 1e-6f);
      EXPECT_NEAR(buf[i], b[i], 1e-6f);
    }
  }
}

TEST(Rule, ScalarIfBecomesSelectAndOptionIfDisappears) {
  const Rule rule = rule_from_text(R"(
rule branches "both kinds of if"
hyper lr = 0.1, momentum = 0
option fast = false
state buf = 0
step {
  if fast {
    param = param - 2 * lr * grad
  } else if momentum != 0 {
    buf = momentum * buf + grad
    param = param - lr * buf
  } else {
    param = param - lr * grad
  }
}
)");
  const std::string fast = ir::print_kernel(rule.compile(rule.resolve_options({{"fast", "true"}})));
  EXPECT_EQ(fast.find("select"), std::string::npos);
  EXPECT_EQ(fast.find("store buf"), std::string::npos);
  const std::string slow = ir::print_kernel(rule.compile(rule.resolve_options()));
  EXPECT_NE(slow.find("select"), std::string::npos);
  EXPECT_NE(slow.find("store buf"), std::string::npos);
}

TEST(Rule, ReductionsSplitIntoPhases) {
  const Rule rule = rule_from_text(R"(
rule normalized "divides by the centred norm"
hyper lr = 0.1
step {
  let mu = mean(grad)
  let n = norm(grad - mu)
  param = param - lr * (grad - mu) / (n + 1e-12)
}
)");
  const ir::Kernel kernel = rule.compile(rule.resolve_options());
  ASSERT_EQ(kernel.phases.size(), 3u);
  ir::Interpreter interpreter(kernel);
  std::vector<float> param = {0, 0, 0, 0}, grad = {1, 2, 3, 4};
  ir::TensorArgs tensor{4, {param.data(), grad.data()}, {}};
  const std::vector<double> hypers = {0.1};
  interpreter.step(std::span(&tensor, 1), hypers, 1);
  const float n = std::sqrt(2.25f + 0.25f + 0.25f + 2.25f);
  EXPECT_NEAR(param[0], -0.1f * -1.5f / n, 1e-6f);
  EXPECT_NEAR(param[3], -0.1f * 1.5f / n, 1e-6f);
}

TEST(Rule, ErrorsCarryEveryDiagnostic) {
  try {
    rule_from_text("rule x \"y\"\nstep {\n  param = gard\n  grad = 1\n}\n", "x.opt");
    FAIL();
  } catch (const UserError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("x.opt:3:11: error: unknown name 'gard'; did you mean 'grad'?"), std::string::npos);
    EXPECT_NE(message.find("x.opt:4:3: error: cannot assign"), std::string::npos);
  }
}

TEST(Rule, BuiltinAndFileLookup) {
  EXPECT_THROW(load_rule("adamm"), UserError);
  EXPECT_THROW(load_rule("/no/such/rule.opt"), UserError);
  try {
    load_rule("adamm");
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("did you mean 'adam"), std::string::npos);
  }
}

// Found by the fuzzer: a '}' at the top level once stopped error recovery from advancing.
TEST(Rule, StrayBraceAtTopLevelIsAnErrorNotAHang) {
  EXPECT_THROW(rule_from_text("rule a \"b\"\nsteb \"open {\n  x = 1\n}\n}\n"), UserError);
}

TEST(Rule, DeepNestingIsAnErrorNotACrash) {
  std::string deep = "rule d \"deep\"\nstep {\n  param = ";
  for (int i = 0; i < 5000; ++i) deep += "(";
  deep += "grad";
  for (int i = 0; i < 5000; ++i) deep += ")";
  deep += "\n}\n";
  EXPECT_THROW(rule_from_text(deep), UserError);
}

}  // namespace
}  // namespace fuseopt::frontend

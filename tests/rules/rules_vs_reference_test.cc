// Every built-in rule, every option combination, against the independent plain-loop
// reference (tests/reference/, written from optimizers.md, never from the rule files):
// several steps with a different gradient each, param and every state compared.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "frontend/rule.h"
#include "ir/interpreter.h"
#include "tests/reference/reference_optimizers.h"

namespace fuseopt {
namespace {

constexpr int kSteps = 8;  // past RAdam's and AdaBelief's switch to the adaptive branch at t=6
constexpr int64_t kSize = 37;

// Non-default values for the hypers that gate a branch when they are zero.
const std::map<std::string, double>& alternative_hypers() {
  static const std::map<std::string, double> values = {
      {"weight_decay", 0.05}, {"momentum", 0.9},  {"dampening", 0.1},     {"lr_decay", 0.01},
      {"initial_accumulator_value", 0.1},        {"beta3_warmup", 5},    {"alpha_warmup", 4},
  };
  return values;
}

std::vector<float> random_vector(std::mt19937& rng, float scale, bool with_zeros) {
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> v(kSize);
  for (int64_t i = 0; i < kSize; ++i) v[i] = (with_zeros && i % 9 == 4) ? 0.0f : normal(rng);
  return v;
}

// Relative error with a floor, so values that cancel to near zero do not dominate.
double max_error(const std::vector<float>& a, const std::vector<float>& b) {
  double scale = 1e-30;
  for (float x : b) scale = std::max(scale, std::fabs(double(x)));
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double denom = std::max(std::fabs(double(b[i])), 1e-3 * scale);
    worst = std::max(worst, std::fabs(double(a[i]) - double(b[i])) / denom);
  }
  return worst;
}

struct Case {
  std::string rule;
  reference::Options options;
  reference::Hypers hypers;
};

std::vector<Case> cases_for(const std::string& name) {
  const auto space = reference::option_space(name);
  std::vector<reference::Options> combos = {{}};
  for (const auto& [option, values] : space) {
    std::vector<reference::Options> next;
    for (const auto& combo : combos) {
      for (int64_t value : values) {
        auto extended = combo;
        extended[option] = value;
        next.push_back(extended);
      }
    }
    combos = next;
  }
  std::vector<Case> cases;
  for (const auto& options : combos) {
    auto hypers = reference::default_hypers(name);
    cases.push_back({name, options, hypers});
    bool changed = false;
    for (auto& [hyper, value] : hypers) {
      if (auto alt = alternative_hypers().find(hyper); alt != alternative_hypers().end()) {
        value = alt->second;
        changed = true;
      }
    }
    if (changed) cases.push_back({name, options, hypers});
  }
  return cases;
}

void run_case(const Case& c) {
  const frontend::Rule rule = frontend::load_rule(c.rule);
  std::map<std::string, std::string> option_text;
  for (const auto& [name, value] : c.options) option_text[name] = std::to_string(value);
  const ir::Kernel kernel = rule.compile(rule.resolve_options(option_text));
  ir::Interpreter interpreter(kernel);

  std::vector<double> hypers;
  for (const auto& h : kernel.hypers) {
    ASSERT_TRUE(c.hypers.count(h.name)) << "the reference has no hyper '" << h.name << "'";
    hypers.push_back(c.hypers.at(h.name));
  }
  std::mt19937 rng(1234);
  const std::vector<float> param0 = random_vector(rng, 1.0f, false);

  std::vector<std::vector<float>> buffers(kernel.buffers.size(), std::vector<float>(kSize));
  buffers[0] = param0;
  ir::TensorArgs tensor{kSize, {}, {}};
  for (auto& b : buffers) tensor.buffers.push_back(b.data());

  reference::TensorState expected;
  expected.param = param0;
  for (int t = 1; t <= kSteps; ++t) {
    // A gradient of changing scale and sign pattern each step; some exact zeros.
    const std::vector<float> grad = random_vector(rng, 0.5f * t, true);
    buffers[1] = grad;
    tensor.buffers[1] = buffers[1].data();
    if (t == 1) interpreter.initialize(tensor, hypers);
    interpreter.step(std::span(&tensor, 1), hypers, t);
    reference::step(c.rule, c.options, c.hypers, expected, grad, t);

    SCOPED_TRACE("step " + std::to_string(t));
    EXPECT_LT(max_error(buffers[0], expected.param), 2e-5) << "param";
    for (size_t b = 2; b < kernel.buffers.size(); ++b) {
      const std::string& state = kernel.buffers[b].name;
      ASSERT_TRUE(expected.states.count(state)) << "the reference has no state '" << state << "'";
      EXPECT_LT(max_error(buffers[b], expected.states.at(state)), 2e-5) << "state " << state;
    }
    for (size_t s = 0; s < kernel.scalars.size(); ++s) {
      const std::string& scalar = kernel.scalars[s].name;
      ASSERT_TRUE(expected.scalars.count(scalar)) << "the reference has no scalar '" << scalar << "'";
      EXPECT_NEAR(tensor.scalars[s], expected.scalars.at(scalar), 1e-12 * std::fabs(expected.scalars.at(scalar)));
    }
    if (::testing::Test::HasFailure()) return;
  }
  // The reference must not keep states the rule lacks.
  EXPECT_EQ(expected.states.size() + 2, kernel.buffers.size());
}

class RulesVsReference : public ::testing::TestWithParam<std::string> {};

TEST_P(RulesVsReference, EveryOptionCombination) {
  const std::string name = GetParam();
  const frontend::Rule rule = frontend::load_rule(name);
  // Hypers and defaults agree with the table the reference was written from.
  const auto defaults = reference::default_hypers(name);
  ASSERT_EQ(rule.hypers().size(), defaults.size());
  for (const auto& h : rule.hypers()) {
    ASSERT_TRUE(defaults.count(h.name)) << h.name;
    EXPECT_EQ(h.default_value, defaults.at(h.name)) << h.name;
  }
  for (const Case& c : cases_for(name)) {
    std::string label;
    for (const auto& [o, v] : c.options) label += o + "=" + std::to_string(v) + " ";
    for (const auto& [h, v] : c.hypers) label += h + "=" + std::to_string(v) + " ";
    SCOPED_TRACE(label);
    run_case(c);
  }
}

INSTANTIATE_TEST_SUITE_P(Builtin, RulesVsReference, ::testing::ValuesIn(reference::rule_names()),
                         [](const auto& param_info) { return param_info.param; });

}  // namespace
}  // namespace fuseopt

// Rule -> IR golden files: every built-in rule, every combination of its boolean options.
// A change to the frontend or a pass that alters any kernel shows up here as a diff.
#include <gtest/gtest.h>

#include "frontend/rule.h"
#include "ir/printer.h"
#include "rules/builtin_rules.h"
#include "tests/testing/golden.h"

namespace fuseopt {
namespace {

TEST(IrGolden, EveryBuiltinRuleAndOptionCombination) {
  ASSERT_GE(rules::builtin_rules().size(), 16u);
  for (const rules::BuiltinRule& builtin : rules::builtin_rules()) {
    SCOPED_TRACE(builtin.name);
    const frontend::Rule rule = frontend::load_rule(builtin.name);
    std::string text;
    for (const auto& options : rule.option_combinations()) {
      text += ir::print_kernel(rule.compile(options)) + "\n";
    }
    testing::expect_matches_golden(text, testing::source_dir() / "tests/rules/golden" / (builtin.name + ".ir"));
  }
}

TEST(BuiltinRules, CheckCleanlyWithoutWarnings) {
  for (const rules::BuiltinRule& builtin : rules::builtin_rules()) {
    SCOPED_TRACE(builtin.name);
    auto file = frontend::load_rule_source(builtin.name);
    support::Diagnostics diags(*file);
    const auto rule = frontend::Rule::check(file, diags);
    ASSERT_TRUE(rule.has_value()) << diags.render();
    EXPECT_EQ(diags.render(), "");
    EXPECT_EQ(rule->name(), builtin.name) << "the rule line must match the file name";
    EXPECT_EQ(builtin.text.rfind("#", 0), 0u) << "a built-in rule starts with its header comment";
  }
}

}  // namespace
}  // namespace fuseopt

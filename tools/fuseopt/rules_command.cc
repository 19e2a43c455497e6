// `fuseopt rules [--json]`: every built-in rule with what it declares, as a table for people
// or as one JSON array for programs.
#include <iostream>
#include <string>
#include <vector>

#include "frontend/rule.h"
#include "rules/builtin_rules.h"
#include "support/error.h"
#include "support/json.h"
#include "tools/fuseopt/flag_values.h"
#include "tools/fuseopt/rule_setup.h"
#include "tools/fuseopt/subcommands.h"

namespace fuseopt::tools {
namespace {

std::string option_default(const frontend::Rule::Option& option) {
  if (option.is_bool) return option.default_value ? "true" : "false";
  return std::to_string(option.default_value);
}

// "exp_avg", "sum=initial_accumulator_value", "max_exp_avg_sq (when amsgrad)",
// "exp_avg:bf16 stochastic".
std::string describe_state(const frontend::Rule::State& state) {
  std::string out = state.name;
  if (state.init != "0") out += "=" + state.init;
  if (state.storage != "f32") out += ":" + state.storage;
  if (!state.when.empty()) out += " (when " + state.when + ")";
  return out;
}

void print_row(const std::string& label, const std::vector<std::string>& items) {
  std::cout << "    " << label << std::string(10 - label.size(), ' ');
  if (items.empty()) std::cout << "(none)";
  for (size_t i = 0; i < items.size(); ++i) std::cout << (i ? "  " : "") << items[i];
  std::cout << "\n";
}

void print_table(const std::vector<frontend::Rule>& rules) {
  for (size_t i = 0; i < rules.size(); ++i) {
    const frontend::Rule& rule = rules[i];
    if (i) std::cout << "\n";
    std::cout << rule.name() << ": " << rule.summary() << "\n";
    std::vector<std::string> hypers, options, states, scalars;
    for (const auto& h : rule.hypers()) hypers.push_back(h.name + "=" + format_number(h.default_value));
    for (const auto& o : rule.options()) options.push_back(o.name + "=" + option_default(o));
    for (const auto& s : rule.states()) states.push_back(describe_state(s));
    for (const auto& s : rule.scalars()) scalars.push_back(s.name + "=" + format_number(s.init));
    print_row("hypers", hypers);
    print_row("options", options);
    print_row("states", states);
    if (!scalars.empty()) print_row("scalars", scalars);
    if (rule.param_storage() != "f32" || rule.grad_storage() != "f32") {
      print_row("storage", {"param:" + rule.param_storage(), "grad:" + rule.grad_storage()});
    }
  }
}

void print_json(const std::vector<frontend::Rule>& rules) {
  support::JsonWriter w(2);
  w.begin_array();
  for (const frontend::Rule& rule : rules) {
    w.begin_object().key("name").value(rule.name()).key("summary").value(rule.summary());
    w.key("hypers").begin_array();
    for (const auto& h : rule.hypers()) {
      w.begin_object().key("name").value(h.name).key("default").value(h.default_value).end_object();
    }
    w.end_array().key("options").begin_array();
    for (const auto& o : rule.options()) {
      w.begin_object().key("name").value(o.name).key("type").value(o.is_bool ? "bool" : "int");
      w.key("default");
      if (o.is_bool) {
        w.value(o.default_value != 0);
      } else {
        w.value(o.default_value);
      }
      w.end_object();
    }
    w.end_array().key("states").begin_array();
    for (const auto& s : rule.states()) {
      w.begin_object().key("name").value(s.name).key("init").value(s.init);
      w.key("storage").value(s.storage).key("when");
      if (s.when.empty()) {
        w.null();
      } else {
        w.value(s.when);
      }
      w.end_object();
    }
    w.end_array().key("scalars").begin_array();
    for (const auto& s : rule.scalars()) {
      w.begin_object().key("name").value(s.name).key("init").value(s.init).end_object();
    }
    w.end_array();
    w.key("param_storage").value(rule.param_storage());
    w.key("grad_storage").value(rule.grad_storage());
    w.end_object();
  }
  w.end_array();
  std::cout << w.str() << "\n";
}

}  // namespace

CommandSpec rules_spec() {
  return {
      .name = "rules",
      .synopsis = "[--json]",
      .description =
          "Lists the built-in rules: name, one-line summary, hypers with their defaults,\n"
          "options with their defaults, states (with their INIT and the option they need)\n"
          "and scalar states.\n",
      .flags = {{"--json", FlagKind::kSwitch, "", "print one JSON array of objects instead"}},
  };
}

int run_rules(const Args& args) {
  std::vector<frontend::Rule> rules;
  std::vector<std::string> broken;
  for (const rules::BuiltinRule& builtin : rules::builtin_rules()) {
    // A broken built-in is a bug; the others are still listed before it is reported.
    try {
      rules.push_back(load_builtin_rule(builtin.name));
    } catch (const InternalError& e) {
      std::cerr << e.what() << "\n";
      broken.push_back(builtin.name);
    }
  }
  if (args.has("--json")) {
    print_json(rules);
  } else {
    print_table(rules);
  }
  if (!broken.empty()) {
    std::cout.flush();
    throw InternalError("the built-in rule" + std::string(broken.size() == 1 ? " " : "s ") +
                        join_names(broken) + " did not check (see above)");
  }
  return 0;
}

}  // namespace fuseopt::tools

#include "frontend/rule.h"

#include <algorithm>
#include <charconv>

#include "frontend/lower.h"
#include "frontend/parser.h"
#include "frontend/sema.h"
#include "rules/builtin_rules.h"
#include "support/edit_distance.h"
#include "support/error.h"

namespace fuseopt::frontend {
namespace {

std::string format_number(double value) {
  char buffer[32];
  auto result = std::to_chars(buffer, buffer + sizeof buffer, value);
  return std::string(buffer, result.ptr);
}

Rule check_or_throw(std::shared_ptr<const support::SourceFile> file) {
  support::Diagnostics diags(*file);
  std::optional<Rule> rule = Rule::check(file, diags);
  if (!rule) throw UserError(diags.render() + std::to_string(diags.error_count()) +
                             (diags.error_count() == 1 ? " error" : " errors") + " in " +
                             file->name());
  return std::move(*rule);
}

}  // namespace

std::optional<Rule> Rule::check(std::shared_ptr<const support::SourceFile> file,
                                support::Diagnostics& diags, bool every_option_combination) {
  auto module = std::make_shared<ast::Module>(parse_rule(*file, diags));
  // Meaning is checked even after syntax errors: the parser recovered, and the user
  // wants every error of the file at once.
  check_semantics(*module, diags);
  if (diags.has_errors()) return std::nullopt;

  Rule rule;
  rule.file_ = file;
  rule.module_ = module;
  rule.name_ = module->rules.front().name;
  rule.summary_ = module->rules.front().summary;
  for (const auto& h : module->hypers) rule.hypers_.push_back({h.name, h.default_value});
  for (const auto& o : module->options) rule.options_.push_back({o.name, o.default_value, o.is_bool});
  for (const auto& s : module->states) {
    const std::string init = s.init_kind == ast::StateDecl::InitKind::kName
                                 ? s.init_name
                                 : format_number(s.init_number);
    rule.states_.push_back({s.name, init, s.when, s.dtype + (s.stochastic ? " stochastic" : "")});
  }
  for (const auto& s : module->storages) {
    (s.buffer == "param" ? rule.param_storage_ : rule.grad_storage_) =
        s.dtype + (s.stochastic ? " stochastic" : "");
  }
  for (const auto& s : module->scalars) rule.scalars_.push_back({s.name, s.init});

  const auto combinations = every_option_combination
                                ? rule.option_combinations()
                                : std::vector<std::vector<ir::OptionValue>>{rule.resolve_options()};
  for (const auto& options : combinations) lower_to_ir(*module, options, diags);
  if (diags.has_errors()) return std::nullopt;
  return rule;
}

std::vector<ir::OptionValue> Rule::resolve_options(
    const std::map<std::string, std::string>& overrides) const {
  std::vector<ir::OptionValue> values;
  for (const Option& o : options_) values.push_back({o.name, o.default_value, o.is_bool});
  for (const auto& [option_name, text] : overrides) {
    const std::string& name = option_name;  // a structured binding cannot be captured in C++20
    auto it = std::find_if(values.begin(), values.end(), [&](const auto& v) { return v.name == name; });
    if (it == values.end()) {
      std::vector<std::string> names;
      for (const Option& o : options_) names.push_back(o.name);
      std::string message = "rule '" + name_ + "' has no option '" + name + "'";
      if (auto suggestion = support::closest_match(name, names)) message += "; did you mean '" + *suggestion + "'?";
      if (names.empty()) message += " (it has no options)";
      throw UserError(message);
    }
    if (it->is_bool) {
      if (text == "true" || text == "1") it->value = 1;
      else if (text == "false" || text == "0") it->value = 0;
      else throw UserError("option '" + name + "' is true or false, not '" + text + "'");
    } else {
      int64_t value = 0;
      auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
      if (error != std::errc() || end != text.data() + text.size()) {
        throw UserError("option '" + name + "' is an integer, not '" + text + "'");
      }
      it->value = value;
    }
  }
  return values;
}

std::vector<std::vector<ir::OptionValue>> Rule::option_combinations(size_t limit) const {
  const std::vector<ir::OptionValue> defaults = resolve_options();
  std::vector<size_t> bools;
  for (size_t i = 0; i < defaults.size(); ++i) {
    if (defaults[i].is_bool) bools.push_back(i);
  }
  std::vector<std::vector<ir::OptionValue>> result;
  // Counting in binary over the flips from the defaults puts the defaults first.
  const uint64_t count = bools.size() >= 63 ? UINT64_MAX : (uint64_t{1} << bools.size());
  for (uint64_t mask = 0; mask < count && result.size() < limit; ++mask) {
    std::vector<ir::OptionValue> values = defaults;
    for (size_t bit = 0; bit < bools.size(); ++bit) {
      if (mask & (uint64_t{1} << bit)) values[bools[bit]].value ^= 1;
    }
    result.push_back(std::move(values));
  }
  return result;
}

ir::Kernel Rule::compile(const std::vector<ir::OptionValue>& options,
                         const ir::PipelineOptions& pipeline) const {
  support::Diagnostics diags(*file_);
  std::optional<ir::Kernel> kernel = lower_to_ir(*module_, options, diags);
  if (!kernel) throw UserError(diags.render());
  return ir::optimize(std::move(*kernel), pipeline);
}

std::shared_ptr<const support::SourceFile> load_rule_source(const std::string& name_or_path) {
  const bool is_path = name_or_path.find('/') != std::string::npos ||
                       (name_or_path.size() > 4 && name_or_path.ends_with(".opt"));
  if (!is_path) {
    if (const rules::BuiltinRule* builtin = rules::find_builtin_rule(name_or_path)) {
      return std::make_shared<support::SourceFile>("<builtin>/" + builtin->name + ".opt", builtin->text);
    }
    std::vector<std::string> names;
    for (const auto& rule : rules::builtin_rules()) names.push_back(rule.name);
    std::string message = "no built-in rule '" + name_or_path + "'";
    if (auto suggestion = support::closest_match(name_or_path, names)) {
      message += "; did you mean '" + *suggestion + "'?";
    }
    throw UserError(message + " (see 'fuseopt rules'; a rule file's path needs a '/' or '.opt')");
  }
  return std::make_shared<support::SourceFile>(support::read_source_file(name_or_path));
}

Rule load_rule(const std::string& name_or_path) {
  return check_or_throw(load_rule_source(name_or_path));
}

Rule rule_from_text(const std::string& text, const std::string& name) {
  return check_or_throw(std::make_shared<support::SourceFile>(name, text));
}

}  // namespace fuseopt::frontend

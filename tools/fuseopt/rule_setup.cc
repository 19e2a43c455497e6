#include "tools/fuseopt/rule_setup.h"

#include <algorithm>
#include <optional>

#include "support/edit_distance.h"
#include "support/error.h"
#include "tools/fuseopt/flag_values.h"

namespace fuseopt::tools {

frontend::Rule load_builtin_rule(const std::string& name) {
  try {
    return frontend::load_rule(name);
  } catch (const UserError& e) {
    throw InternalError("the built-in rule '" + name + "' does not check:\n" + e.what());
  }
}

ir::Kernel compile_rule(const frontend::Rule& rule, const std::vector<ir::OptionValue>& options,
                        const ir::PipelineOptions& pipeline) {
  try {
    return rule.compile(options, pipeline);
  } catch (const UserError& e) {
    std::string message = e.what();
    if (!message.empty() && message.back() != '\n') message += '\n';
    throw UserError(message + "rule '" + rule.name() + "' is invalid with " +
                    describe_options(options));
  }
}

std::string describe_options(const std::vector<ir::OptionValue>& options) {
  if (options.empty()) return "no options";
  std::string out;
  for (const ir::OptionValue& option : options) {
    if (!out.empty()) out += ' ';
    out += option.name + "=";
    out += option.is_bool ? (option.value ? "true" : "false") : std::to_string(option.value);
  }
  return out;
}

std::map<std::string, StorageChoice> parse_storage(const std::vector<std::string>& values) {
  std::vector<std::string> items;
  for (const std::string& value : values) {
    size_t start = 0;
    for (;;) {
      const size_t comma = value.find(',', start);
      items.push_back(value.substr(start, comma - start));
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
  }
  std::map<std::string, StorageChoice> result;
  for (const auto& [buffer, spelled] : parse_assignments(items, "--storage")) {
    std::string type = spelled;
    StorageChoice choice;
    const std::string suffix = "-sr";
    if (type.size() > suffix.size() && type.ends_with(suffix)) {
      choice.stochastic = true;
      type.resize(type.size() - suffix.size());
    }
    const std::optional<StorageType> parsed = parse_storage_type(type);
    if (!parsed || (choice.stochastic && *parsed == StorageType::kF32)) {
      throw UserError("--storage " + buffer + "=" + spelled +
                      ": the type must be f32, bf16, f16, bf16-sr or f16-sr (-sr: stochastic "
                      "rounding)");
    }
    choice.type = *parsed;
    result[buffer] = choice;
  }
  return result;
}

std::map<std::string, std::string> apply_storage(
    ir::Kernel& kernel, const std::map<std::string, StorageChoice>& storage) {
  std::map<std::string, std::string> spelled;
  for (const auto& [buffer, choice] : storage) {
    ir::set_buffer_storage(kernel, buffer, choice.type, choice.stochastic);
    spelled[buffer] =
        std::string(storage_type_name(choice.type)) + (choice.stochastic ? " stochastic" : "");
  }
  return spelled;
}

std::vector<double> resolve_hypers(const frontend::Rule& rule, const ir::Kernel& kernel,
                                   const std::map<std::string, std::string>& overrides) {
  std::vector<std::string> names;
  for (const frontend::Rule::Hyper& hyper : rule.hypers()) names.push_back(hyper.name);
  // rounding_seed is the compiler's hyper, not the rule's: there where a stochastic store
  // gave the kernel one.
  if (kernel.hyper_index(ir::kRoundingSeedHyper) >= 0) {
    names.push_back(ir::kRoundingSeedHyper);
  } else if (overrides.count(ir::kRoundingSeedHyper) != 0) {
    throw UserError(std::string("--set ") + ir::kRoundingSeedHyper +
                    ": only a buffer rounded stochastically (--storage BUFFER=bf16-sr or "
                    "f16-sr) has a rounding seed");
  }
  for (const auto& [name, text] : overrides) {
    if (std::find(names.begin(), names.end(), name) != names.end()) continue;
    std::string message = "rule '" + rule.name() + "' has no hyper '" + name + "'";
    if (auto suggestion = support::closest_match(name, names)) {
      message += "; did you mean '" + *suggestion + "'?";
    } else if (names.empty()) {
      message += " (it has no hypers)";
    } else {
      message += " (its hypers are " + join_names(names) + ")";
    }
    throw UserError(message);
  }

  std::vector<double> values;
  for (const ir::HyperDecl& hyper : kernel.hypers) {
    auto it = overrides.find(hyper.name);
    values.push_back(it == overrides.end()
                         ? hyper.default_value
                         : parse_number(it->second, "hyper '" + hyper.name + "'"));
  }
  // A hyper that these option values do not use is not in the kernel; its value is still
  // checked, so a typo in it never passes silently.
  for (const auto& [name, text] : overrides) {
    if (kernel.hyper_index(name) < 0) parse_number(text, "hyper '" + name + "'");
  }
  return values;
}

std::string join_names(const std::vector<std::string>& names) {
  std::string out;
  for (size_t i = 0; i < names.size(); ++i) {
    if (i > 0) out += i + 1 == names.size() ? " and " : ", ";
    out += names[i];
  }
  return out;
}

}  // namespace fuseopt::tools

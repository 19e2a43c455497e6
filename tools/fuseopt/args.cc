#include "tools/fuseopt/args.h"

#include <algorithm>
#include <cctype>

#include "support/edit_distance.h"

namespace fuseopt::tools {
namespace {

bool is_help(const std::string& arg) { return arg == "--help" || arg == "-h"; }

// "-", "-3" and "-.5" are values, not flags.
bool looks_like_flag(const std::string& arg) {
  if (arg.size() < 2 || arg[0] != '-') return false;
  return !(std::isdigit(static_cast<unsigned char>(arg[1])) || arg[1] == '.');
}

const FlagSpec* find_flag(const CommandSpec& spec, const std::string& spelling) {
  for (const FlagSpec& flag : spec.flags) {
    if (flag.spelling == spelling) return &flag;
  }
  return nullptr;
}

std::string flag_with_value(const FlagSpec& flag) {
  return flag.value_name.empty() ? flag.spelling : flag.spelling + " " + flag.value_name;
}

[[noreturn]] void fail(const CommandSpec& spec, const std::string& message) {
  throw UsageError(message + "; " + see_help(spec.name));
}

[[noreturn]] void fail_unknown_flag(const CommandSpec& spec, const std::string& spelling) {
  std::vector<std::string> known{"--help"};
  for (const FlagSpec& flag : spec.flags) known.push_back(flag.spelling);
  std::string message = "unknown flag '" + spelling + "' for '" + spec.name + "'";
  if (auto suggestion = support::closest_match(spelling, known)) {
    message += " (did you mean '" + *suggestion + "'?)";
  }
  fail(spec, message);
}

void check_positionals(const CommandSpec& spec, const std::vector<std::string>& positionals) {
  const int count = static_cast<int>(positionals.size());
  const std::string& what = spec.positional_name;
  if (count < spec.min_positionals) {
    if (spec.max_positionals == 1) fail(spec, "'" + spec.name + "' needs a " + what);
    fail(spec, "'" + spec.name + "' needs at least " + std::to_string(spec.min_positionals) +
                   " " + what);
  }
  if (spec.max_positionals >= 0 && count > spec.max_positionals) {
    const std::string& extra = positionals[static_cast<size_t>(spec.max_positionals)];
    if (spec.max_positionals == 0) {
      fail(spec, "unexpected argument '" + extra + "' for '" + spec.name + "'");
    }
    fail(spec, "'" + spec.name + "' takes " +
                   (spec.max_positionals == 1 ? "one " + what
                                              : std::to_string(spec.max_positionals) + " " + what) +
                   ", but '" + extra + "' follows");
  }
}

}  // namespace

bool Args::has(const std::string& spelling) const { return flags_.count(spelling) != 0; }

std::optional<std::string> Args::value(const std::string& spelling) const {
  auto it = flags_.find(spelling);
  if (it == flags_.end() || it->second.empty()) return std::nullopt;
  return it->second.back();
}

std::string Args::value_or(const std::string& spelling, const std::string& fallback) const {
  return value(spelling).value_or(fallback);
}

std::vector<std::string> Args::values(const std::string& spelling) const {
  auto it = flags_.find(spelling);
  return it == flags_.end() ? std::vector<std::string>{} : it->second;
}

Args parse_args(const CommandSpec& spec, std::span<const std::string> argv) {
  Args args;
  args.command_ = spec.name;
  // --help wins over everything else on the line (before a `--`), as people expect.
  for (const std::string& arg : argv) {
    if (arg == "--") break;
    if (is_help(arg)) {
      args.wants_help_ = true;
      return args;
    }
  }

  bool only_positionals = false;
  for (size_t i = 0; i < argv.size(); ++i) {
    const std::string& arg = argv[i];
    if (only_positionals || !looks_like_flag(arg)) {
      args.positionals_.push_back(arg);
      continue;
    }
    if (arg == "--") {
      only_positionals = true;
      continue;
    }
    std::string spelling = arg;
    std::optional<std::string> inline_value;
    if (arg.starts_with("--")) {
      if (const size_t eq = arg.find('='); eq != std::string::npos) {
        spelling = arg.substr(0, eq);
        inline_value = arg.substr(eq + 1);
      }
    }
    const FlagSpec* flag = find_flag(spec, spelling);
    if (!flag) fail_unknown_flag(spec, spelling);

    if (flag->kind == FlagKind::kSwitch) {
      if (inline_value) fail(spec, "flag '" + spelling + "' takes no value");
      args.flags_[spelling];
      continue;
    }
    std::string value;
    if (inline_value) {
      value = *inline_value;
    } else if (i + 1 < argv.size()) {
      value = argv[++i];
    } else {
      fail(spec, "flag '" + spelling + "' needs a value (" + flag_with_value(*flag) + ")");
    }
    std::vector<std::string>& values = args.flags_[spelling];
    if (flag->kind == FlagKind::kValue && !values.empty()) {
      fail(spec, "flag '" + spelling + "' is given twice");
    }
    values.push_back(std::move(value));
  }

  for (const FlagSpec& flag : spec.flags) {
    if (flag.required && !args.has(flag.spelling)) {
      fail(spec, "'" + spec.name + "' needs " + flag_with_value(flag));
    }
  }
  check_positionals(spec, args.positionals_);
  return args;
}

std::string help_text(const CommandSpec& spec) {
  std::string out = "usage: fuseopt " + spec.name;
  if (!spec.synopsis.empty()) out += " " + spec.synopsis;
  out += "\n";
  if (!spec.description.empty()) out += "\n" + spec.description;

  std::vector<std::pair<std::string, std::string>> rows;
  for (const FlagSpec& flag : spec.flags) rows.emplace_back(flag_with_value(flag), flag.help);
  rows.emplace_back("--help", "show this help");
  size_t width = 0;
  for (const auto& row : rows) width = std::max(width, row.first.size());
  out += "\nflags:\n";
  for (const auto& [left, help] : rows) {
    out += "  " + left + std::string(width - left.size() + 3, ' ') + help + "\n";
  }
  return out;
}

std::string see_help(const std::string& command) {
  return "see 'fuseopt " + command + " --help'";
}

}  // namespace fuseopt::tools

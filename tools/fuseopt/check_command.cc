// `fuseopt check RULE...`: parses and checks each rule under every combination of its
// boolean options; diagnostics go to stderr, one verdict line per rule to stdout.
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "frontend/rule.h"
#include "rules/builtin_rules.h"
#include "support/diagnostics.h"
#include "support/error.h"
#include "tools/fuseopt/subcommands.h"

namespace fuseopt::tools {
namespace {

std::string count_of(int count, const char* noun) {
  return std::to_string(count) + " " + noun + (count == 1 ? "" : "s");
}

// Checks one rule; returns false when it has errors (or cannot be loaded).
bool check_one(const std::string& name_or_path) {
  std::shared_ptr<const support::SourceFile> file;
  try {
    file = frontend::load_rule_source(name_or_path);
  } catch (const UserError& e) {
    std::cerr << "fuseopt: error: " << e.what() << "\n";
    std::cout << name_or_path << ": not checked (cannot be loaded)\n";
    return false;
  }
  support::Diagnostics diags(*file);
  frontend::Rule::check(file, diags, /*every_option_combination=*/true);
  std::cerr << diags.render();

  int warnings = 0;
  for (const support::Diagnostic& d : diags.all()) {
    if (d.severity == support::Severity::kWarning) ++warnings;
  }
  std::string verdict = diags.has_errors() ? count_of(diags.error_count(), "error") : "ok";
  if (warnings > 0) verdict += ", " + count_of(warnings, "warning");
  std::cout << name_or_path << ": " << verdict << "\n";
  // Keep stdout and stderr in order when both go to one terminal.
  std::cout.flush();
  return !diags.has_errors();
}

}  // namespace

CommandSpec check_spec() {
  return {
      .name = "check",
      .synopsis = "(RULE... | --all)",
      .description =
          "Parses and checks each RULE (a built-in name or a .opt path) under every\n"
          "combination of its boolean options. Errors and warnings go to stderr as\n"
          "file:line:col: error: message, with the line and a caret; one line per rule\n"
          "goes to stdout (\"adam: ok\", \"bad.opt: 2 errors, 1 warning\").\n"
          "Exits 1 if any rule has errors or cannot be loaded.\n",
      .positional_name = "RULE",
      .min_positionals = 0,
      .max_positionals = -1,
      .flags = {{"--all", FlagKind::kSwitch, "", "check every built-in rule too"}},
  };
}

int run_check(const Args& args) {
  std::vector<std::string> names = args.positionals();
  if (args.has("--all")) {
    for (const rules::BuiltinRule& rule : rules::builtin_rules()) names.push_back(rule.name);
  }
  if (names.empty()) throw UsageError("'check' needs a RULE or --all; " + see_help("check"));
  bool all_ok = true;
  for (const std::string& name : names) all_ok = check_one(name) && all_ok;
  return all_ok ? 0 : 1;
}

}  // namespace fuseopt::tools

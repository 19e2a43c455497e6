// The frontend's entry point: a Rule is a parsed and checked rule file that compiles to an
// IR Kernel for any option values. Built-in rules are found by name, others by path.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "frontend/ast.h"
#include "ir/kernel.h"
#include "ir/passes/pipeline.h"
#include "support/diagnostics.h"

namespace fuseopt::frontend {

/// A rule that passed every check, with what it declares.
class Rule {
 public:
  struct Hyper {
    std::string name;
    double default_value;
  };
  struct Option {
    std::string name;
    int64_t default_value;
    bool is_bool;
  };
  struct State {
    std::string name;
    std::string init;  ///< as written: "0", "param", "grad" or a hyper's name
    std::string when;  ///< the option it needs, or empty
    std::string storage = "f32";  ///< "f32", "bf16" or "f16", then " stochastic" if declared
  };
  struct Scalar {
    std::string name;
    double init;
  };

  /// Parses and checks `file`, reporting into `diags` (errors and warnings). With
  /// `every_option_combination`, lowering runs for each combination of boolean options too,
  /// to find the errors only some combinations have. Empty when there are errors.
  static std::optional<Rule> check(std::shared_ptr<const support::SourceFile> file,
                                   support::Diagnostics& diags,
                                   bool every_option_combination = true);

  const std::string& name() const { return name_; }
  const std::string& summary() const { return summary_; }
  const std::vector<Hyper>& hypers() const { return hypers_; }
  const std::vector<Option>& options() const { return options_; }
  const std::vector<State>& states() const { return states_; }
  const std::vector<Scalar>& scalars() const { return scalars_; }
  /// How the rule declares param and grad stored (as State::storage; "f32" by default).
  const std::string& param_storage() const { return param_storage_; }
  const std::string& grad_storage() const { return grad_storage_; }
  const support::SourceFile& source() const { return *file_; }

  /// Every option at its default, with `overrides` applied (values "true", "false" or an
  /// integer). Throws UserError for an unknown option or a bad value.
  std::vector<ir::OptionValue> resolve_options(
      const std::map<std::string, std::string>& overrides = {}) const;

  /// Every combination of the boolean options (integer options at their defaults), up to
  /// `limit` of them, starting with the defaults.
  std::vector<std::vector<ir::OptionValue>> option_combinations(size_t limit = 4096) const;

  /// Lowers with `options` and runs the pass pipeline. Throws UserError with the rendered
  /// diagnostics when these option values make the rule invalid.
  ir::Kernel compile(const std::vector<ir::OptionValue>& options,
                     const ir::PipelineOptions& pipeline = {}) const;

 private:
  std::shared_ptr<const support::SourceFile> file_;
  std::shared_ptr<const ast::Module> module_;
  std::string name_;
  std::string summary_;
  std::vector<Hyper> hypers_;
  std::vector<Option> options_;
  std::vector<State> states_;
  std::vector<Scalar> scalars_;
  std::string param_storage_ = "f32";
  std::string grad_storage_ = "f32";
};

/// The text of a built-in rule (by name) or of a rule file (by path: anything with a '/'
/// or ending in ".opt"). Throws UserError when there is no such rule or file.
std::shared_ptr<const support::SourceFile> load_rule_source(const std::string& name_or_path);

/// Loads and checks; throws UserError carrying every rendered diagnostic on errors.
Rule load_rule(const std::string& name_or_path);
/// The same for rule text given directly; `name` is used in messages.
Rule rule_from_text(const std::string& text, const std::string& name = "<text>");

}  // namespace fuseopt::frontend

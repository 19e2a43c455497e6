// From a RULE argument and the --option and --set flags to what the interpreter and the
// printers need: a compiled Kernel and the value of every hyper. Shared by the subcommands.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "frontend/rule.h"
#include "ir/kernel.h"
#include "ir/passes/pipeline.h"
#include "support/low_precision.h"

namespace fuseopt::tools {

/// A built-in rule, checked. A built-in rule that does not check is a bug (InternalError).
frontend::Rule load_builtin_rule(const std::string& name);

/// Rule::compile; when these option values make the rule invalid, the UserError ends with a
/// line naming the rule and the values.
ir::Kernel compile_rule(const frontend::Rule& rule, const std::vector<ir::OptionValue>& options,
                        const ir::PipelineOptions& pipeline = {});

/// One buffer's storage as --storage spells it (f32, bf16, f16, bf16-sr, f16-sr).
struct StorageChoice {
  StorageType type = StorageType::kF32;
  bool stochastic = false;  ///< "-sr": stochastic rounding
};

/// The values of --storage, each BUFFER=TYPE[,BUFFER=TYPE...] with TYPE f32, bf16, f16,
/// bf16-sr or f16-sr, by buffer; a malformed value is a UserError. Whether the buffers exist,
/// and whether they may round stochastically, is ir::set_buffer_storage's to say.
std::map<std::string, StorageChoice> parse_storage(const std::vector<std::string>& values);

/// Applies parse_storage()'s choices to `kernel` (a stochastic store adds the rounding_seed
/// hyper) and returns them as CompileOptions::storage spells them ("bf16 stochastic").
std::map<std::string, std::string> apply_storage(
    ir::Kernel& kernel, const std::map<std::string, StorageChoice>& storage);

/// "amsgrad=false maximize=true", or "no options".
std::string describe_options(const std::vector<ir::OptionValue>& options);

/// The value of every hyper of `kernel`, in Kernel::hypers order: its default, or the
/// value given for it in `overrides` (from --set). A name that is not a hyper of the rule
/// (nor rounding_seed where a stochastic store gave the kernel that hyper), or a value that
/// is not a number, is a UserError.
std::vector<double> resolve_hypers(const frontend::Rule& rule, const ir::Kernel& kernel,
                                   const std::map<std::string, std::string>& overrides);

/// "a, b and c" for messages.
std::string join_names(const std::vector<std::string>& names);

}  // namespace fuseopt::tools

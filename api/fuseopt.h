// The C++ API in one header: compile a rule (built-in name, file or source text) for a
// backend and build Optimizers from it. Compiled kernels are kept in the process, so the
// same rule, options and schedule compile once.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "codegen/halide/cpu_schedule.h"
#include "runtime/optimizer.h"

namespace fuseopt {

enum class Backend {
  kInterpreter,  ///< the reference interpreter, chunked like the others
  kCpu,          ///< fused kernels through Halide
  kAuto,         ///< the fastest available: cpu
};

/// Parses "interp", "cpu", "auto"; throws UserError otherwise.
Backend parse_backend(const std::string& name);
const char* backend_name(Backend backend);

struct CompileOptions {
  Backend backend = Backend::kAuto;
  /// Option values by name ("true", "false" or an integer); others keep their defaults.
  std::map<std::string, std::string> options;
  /// The CPU schedule; the default is the built-in heuristic. Its chunk size also applies
  /// to the interpreter backend, so both cut a group the same way.
  codegen::CpuSchedule cpu_schedule = codegen::default_cpu_schedule();
  /// The CPU target: "host", "x86-64-v2", "x86-64-v3", "x86-64-v4" or a Halide target
  /// string (see codegen::resolve_cpu_target).
  std::string cpu_target = "host";
  /// Use this machine's tuned schedule (autotune cache, `fuseopt tune`) when cpu_schedule is
  /// left at the heuristic default. Binaries are cached on disk either way.
  bool tuned = true;
  /// Elements one step covers (all tensors of the group), to pick the size bucket's
  /// decision; 0: unknown (the largest tuned bucket).
  int64_t size_hint = 0;
  int64_t tensor_count = 1;
};

/// Compiles a built-in rule (by name) or a rule file (by path). Throws UserError with the
/// rule's diagnostics when it has errors.
std::shared_ptr<const runtime::CompiledKernel> compile_rule(const std::string& name_or_path,
                                                            const CompileOptions& options = {});
/// The same for rule source text; `name` is used in messages.
std::shared_ptr<const runtime::CompiledKernel> compile_rule_text(const std::string& text,
                                                                 const CompileOptions& options = {},
                                                                 const std::string& name = "<text>");

/// Forgets every kernel compiled in this process (Optimizers keep the kernels they use).
void clear_compiled_kernels();

/// compile_rule + Optimizer in one call. `threads` = 0 takes the schedule's thread count,
/// and when that is 0 too, every core.
Optimizer make_optimizer(const std::string& name_or_path, const CompileOptions& options = {},
                         const std::map<std::string, double>& hypers = {}, int threads = 0);

}  // namespace fuseopt

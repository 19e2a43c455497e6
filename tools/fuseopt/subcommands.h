// The subcommands of `fuseopt`: each one is a CommandSpec (its flags and --help) and a
// function that runs it. main.cc lists them in one table; each lives in <name>_command.cc.
#pragma once

#include "tools/fuseopt/args.h"

namespace fuseopt::tools {

/// Runs a parsed subcommand and returns the exit code. User, environment and internal
/// errors are thrown (support/error.h) and mapped to exit codes by main.cc.
using RunFunction = int (*)(const Args& args);

struct Subcommand {
  const char* name;
  const char* summary;  ///< one line for `fuseopt --help`
  CommandSpec (*spec)();
  RunFunction run;
  bool is_built;  ///< false: listed as "(not built yet)"; running it is an EnvironmentError
};

CommandSpec rules_spec();
int run_rules(const Args& args);

CommandSpec check_spec();
int run_check(const Args& args);

CommandSpec emit_spec();
int run_emit(const Args& args);

CommandSpec run_spec();
int run_run(const Args& args);

CommandSpec demo_spec();
int run_demo(const Args& args);

CommandSpec bench_spec();
int run_bench(const Args& args);

CommandSpec tune_spec();
int run_tune(const Args& args);

CommandSpec cache_spec();
int run_cache(const Args& args);

CommandSpec pack_spec();
int run_pack(const Args& args);

}  // namespace fuseopt::tools

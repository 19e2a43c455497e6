// The subcommands of CLI.md whose backends are not built yet: their flags are parsed (so a
// typo is still a usage error, and --help works), then they exit with code 4.
#include <string>

#include "support/error.h"
#include "tools/fuseopt/subcommands.h"

namespace fuseopt::tools {
namespace {

constexpr const char* kNotBuilt =
    "\nNot built yet: this build of fuseopt has only the reference interpreter, so this\n"
    "subcommand exits with code 4.\n";

}  // namespace

CommandSpec bench_spec() {
  return {
      .name = "bench",
      .synopsis = "RULE [--size N] [--tensors K] [--threads T] [--backend cpu|cuda] [--json]",
      .description =
          std::string("Times steps over K tensors of N elements each (defaults: one tensor of\n"
                      "2^25) and prints nanoseconds per element, bytes per second and the\n"
                      "fraction of the machine's streaming memory bandwidth.\n") +
          kNotBuilt,
      .positional_name = "RULE",
      .min_positionals = 1,
      .max_positionals = 1,
      .flags =
          {
              {"--size", FlagKind::kValue, "N", "elements per tensor"},
              {"--tensors", FlagKind::kValue, "K", "number of tensors"},
              {"--threads", FlagKind::kValue, "T", "CPU threads"},
              {"--backend", FlagKind::kValue, "B", "cpu or cuda"},
              {"--json", FlagKind::kSwitch, "", "print one JSON object"},
          },
  };
}

CommandSpec tune_spec() {
  return {
      .name = "tune",
      .synopsis = "RULE... [--sizes N,...] [--budget SECONDS] [--backend cpu|cuda]",
      .description = std::string("Autotunes kernels and records the winners in the cache.\n") +
                     kNotBuilt,
      .positional_name = "RULE",
      .min_positionals = 1,
      .max_positionals = -1,
      .flags =
          {
              {"--sizes", FlagKind::kValue, "N,...", "tensor sizes to tune for"},
              {"--budget", FlagKind::kValue, "SECONDS", "time to spend"},
              {"--backend", FlagKind::kValue, "B", "cpu or cuda"},
          },
  };
}

CommandSpec cache_spec() {
  return {
      .name = "cache",
      .synopsis = "(path | ls | show KEY | verify | clear)",
      .description = std::string("Inspects and manages the cache database.\n") + kNotBuilt,
      .positional_name = "ACTION",
      .min_positionals = 1,
      .max_positionals = 2,
  };
}

CommandSpec pack_spec() {
  return {
      .name = "pack",
      .synopsis = "(build RULE... -o FILE [--targets LIST] | inspect FILE | verify FILE)",
      .description = std::string("Builds, lists and checks kernel packs.\n") + kNotBuilt,
      .positional_name = "ACTION",
      .min_positionals = 1,
      .max_positionals = -1,
      .flags =
          {
              {"-o", FlagKind::kValue, "FILE", "the pack to write (build)"},
              {"--targets", FlagKind::kValue, "LIST", "the targets to build for (build)"},
          },
  };
}

int run_not_built(const Args& args) {
  throw EnvironmentError("'fuseopt " + args.command() +
                         "' is not built yet; this build has the reference interpreter only "
                         "(rules, check, emit --ir, run and demo work)");
}

}  // namespace fuseopt::tools

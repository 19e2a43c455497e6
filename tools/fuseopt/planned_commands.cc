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

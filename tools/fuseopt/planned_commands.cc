// The subcommands of CLI.md whose backends are not built yet: their flags are parsed (so a
// typo is still a usage error, and --help works), then they exit with code 4.
#include <string>

#include "support/error.h"
#include "tools/fuseopt/subcommands.h"

namespace fuseopt::tools {

int run_not_built(const Args& args) {
  throw EnvironmentError("'fuseopt " + args.command() +
                         "' is not built yet; this build has the reference interpreter only "
                         "(rules, check, emit --ir, run and demo work)");
}

}  // namespace fuseopt::tools

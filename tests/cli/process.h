// Runs a program to completion, as a test would from a shell: its standard output and
// error captured in full, and how it ended.
#pragma once

#include <string>
#include <vector>

namespace fuseopt::testing {

struct ProcessResult {
  int exit_code = -1;    ///< the exit status, or -1 when a signal ended it
  int signal = 0;        ///< the signal that ended it, or 0
  std::string out;       ///< everything written to standard output
  std::string err;       ///< everything written to standard error
};

/// Runs `program` with `args` in the folder `cwd` (empty: this process's) and waits for it.
/// Standard input is /dev/null. Fails the calling test (ADD_FAILURE) if it cannot start.
ProcessResult run_process(const std::string& program, const std::vector<std::string>& args,
                          const std::string& cwd = "");

}  // namespace fuseopt::testing

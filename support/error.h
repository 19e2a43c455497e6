// The three error channels of fuseopt (see docs/architecture.md):
// user errors, environment errors, and internal errors (bugs). Programs map
// them to the exit codes of docs/cli.md: 1, 4 and 3.
#pragma once

#include <stdexcept>
#include <string>

namespace fuseopt {

/// A problem with what the user gave us: a bad rule, file, argument or shape.
class UserError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Something the machine lacks: no GPU or driver, no compiler, an unwritable cache.
class EnvironmentError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A broken invariant inside fuseopt: always a bug, reported with where it happened.
class InternalError : public std::logic_error {
 public:
  using std::logic_error::logic_error;
};

/// Throws InternalError naming the failed condition and its place in the source.
/// (File and line come from the macro: clang 14 has no std::source_location.)
[[noreturn]] void fail_internal_check(const char* condition, const std::string& message,
                                      const char* file, int line);

}  // namespace fuseopt

/// Always-on internal check: a false condition is a bug in fuseopt, never the user's fault.
#define FUSEOPT_CHECK(cond, message)                                      \
  do {                                                                    \
    if (!(cond)) ::fuseopt::fail_internal_check(#cond, (message), __FILE__, __LINE__); \
  } while (false)

/// Marks a place the code can never reach; reaching it is a bug in fuseopt.
#define FUSEOPT_UNREACHABLE(message) \
  ::fuseopt::fail_internal_check("unreachable", (message), __FILE__, __LINE__)

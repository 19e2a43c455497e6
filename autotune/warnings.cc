// Warnings go to standard error once each, or to a handler installed by a test.
#include "autotune/warnings.h"

#include <cstdio>
#include <mutex>
#include <set>

namespace fuseopt::autotune {
namespace {

struct WarningState {
  std::mutex mutex;
  std::set<std::string> seen;
  std::function<void(const std::string&)> handler;
};

WarningState& state() {
  static WarningState s;
  return s;
}

}  // namespace

void warn(const std::string& message) {
  WarningState& s = state();
  std::function<void(const std::string&)> handler;
  {
    std::lock_guard<std::mutex> lock(s.mutex);
    handler = s.handler;
    if (!handler && !s.seen.insert(message).second) return;
  }
  if (handler) {
    handler(message);
    return;
  }
  std::fprintf(stderr, "fuseopt: warning: %s\n", message.c_str());
  std::fflush(stderr);
}

std::function<void(const std::string&)> set_warning_handler(
    std::function<void(const std::string&)> handler) {
  WarningState& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  std::swap(s.handler, handler);
  return handler;
}

}  // namespace fuseopt::autotune

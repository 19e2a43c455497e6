// One-line warnings for what the cache and the tuner survive (a damaged cache file, a full
// disk): "fuseopt: warning: ..." on standard error, each distinct message once per process.
// Tests install a handler to see them.
#pragma once

#include <functional>
#include <string>

namespace fuseopt::autotune {

/// Reports `message` (one line, no prefix) unless the same message was reported before.
void warn(const std::string& message);

/// Replaces where warnings go (every one, repeats included); an empty function restores
/// standard error with de-duplication. Returns the previous handler.
std::function<void(const std::string&)> set_warning_handler(
    std::function<void(const std::string&)> handler);

}  // namespace fuseopt::autotune

// Building a kernel pack (docs/packs.md): every option combination of each rule compiled
// ahead of time for each CPU target, with the rule sources and the cache's tuning decisions
// for those kernels. Uses the frontend, codegen/halide and the autotuner's cache.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

namespace fuseopt::pack {

struct PackBuildSettings {
  std::vector<std::string> rules;  ///< built-in names or paths
  std::string output;              ///< the pack file (replaced when complete)
  /// "host", "x86-64-v2", "x86-64-v3", "x86-64-v4". (CUDA targets are not built yet.)
  std::vector<std::string> targets = {"host"};
  /// When not empty: only these option values (NAME -> VALUE), other options at their
  /// defaults; otherwise every combination of the boolean options.
  std::map<std::string, std::string> options;
  /// The cache to copy tuning decisions from; empty: none.
  std::string cache_path;
  /// A secret key file (pack_signing.h) to sign the pack with; empty: unsigned.
  std::string sign_key;
};

struct PackBuildReport {
  int binaries = 0;
  int decisions = 0;
  double seconds = 0;
};

/// Throws UserError for an unknown rule, target or option; EnvironmentError when no linker
/// can be run. `progress` receives one line per compiled binary.
PackBuildReport build_pack(const PackBuildSettings& settings,
                           const std::function<void(const std::string&)>& progress = {});

/// "x86-64-v2,x86-64-v3" -> the list, checked ("all": every CPU level and the host).
std::vector<std::string> parse_targets(const std::string& list);

}  // namespace fuseopt::pack

// Building a kernel pack (docs/packs.md): every option combination of each rule compiled
// ahead of time for each target (CPU shared objects by Halide, CUDA cubins and PTX by NVRTC),
// with the rule sources and the cache's tuning decisions for those kernels. Uses the
// frontend, codegen/halide, codegen/cuda and the autotuner's cache.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

namespace fuseopt::pack {

struct PackBuildSettings {
  std::vector<std::string> rules;  ///< built-in names or paths
  std::string output;              ///< the pack file (replaced when complete)
  /// "host", "x86-64-v2", "x86-64-v3", "x86-64-v4" (Halide), "sm_80", "sm_90" (cubins) and
  /// "ptx" (compute_80 PTX): see parse_targets().
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
/// can be run, or for a CUDA target without NVRTC. `progress` receives one line per
/// compiled binary.
PackBuildReport build_pack(const PackBuildSettings& settings,
                           const std::function<void(const std::string&)>& progress = {});

/// "x86-64-v2,sm_90" -> the list, checked and without repeats. Groups: "cpu" (host and the
/// three x86-64 levels), "cuda" (sm_80, sm_90, ptx), "all" (both).
std::vector<std::string> parse_targets(const std::string& list);

}  // namespace fuseopt::pack

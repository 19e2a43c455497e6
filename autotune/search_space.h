// Search spaces as plain data: per backend, a list of knobs with the values to try, the
// default (the built-in heuristic), and the stages the tuner walks through. Nothing here
// measures anything; tuner.h does.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "autotune/config.h"
#include "autotune/fingerprint.h"
#include "support/sha256.h"

namespace fuseopt::autotune {

struct Knob {
  std::string name;
  std::vector<int64_t> values;
};

struct SearchSpace {
  std::string backend;  ///< "cpu" or "cuda"
  std::vector<Knob> knobs;
  Config default_config;
  /// Knob groups tuned one after another, each with the others held at the previous
  /// stage's winner (coordinate descent over groups). One group holding every knob is an
  /// exhaustive race.
  std::vector<std::vector<std::string>> stages;

  /// Every combination of the knobs' values (the product), in knob order.
  std::vector<Config> all_configs() const;
};

/// The CPU space for a machine: vector width {4, 8, 16} x unroll {1, 2, 4} (the code), then
/// chunk {4096, 16384, 65536, 262144} x threads {1, half the cores, every core (0)} (the
/// runtime's cutting). The default is codegen::default_cpu_schedule().
SearchSpace cpu_search_space(const CpuDescription& cpu);

/// The CUDA space (for the CUDA backend; not tuned yet): threads per block x elements per
/// thread, and the default 256 x 4.
SearchSpace cuda_search_space(const GpuDescription& gpu);

/// The configs of stage `stage` around `incumbent`: those of the space that differ from it
/// only in the stage's knobs, `incumbent` first.
std::vector<Config> stage_candidates(const SearchSpace& space, size_t stage,
                                     const Config& incumbent);

/// What a CPU config does for a problem of `elements` elements in `tensors` tensors, as a
/// config: chunks at least as large as a tensor all cut nothing, threads beyond the number
/// of chunks idle. Configs with the same key run identically.
Config cpu_equivalence_key(const Config& config, int64_t elements, int64_t tensors,
                           int logical_cores);

/// `configs` without the ones whose key (by `key_of`) an earlier one already has.
template <typename KeyOf>
std::vector<Config> without_equivalents(const std::vector<Config>& configs, KeyOf key_of) {
  std::vector<Config> kept;
  std::vector<Config> keys;
  for (const Config& config : configs) {
    Config key = key_of(config);
    bool seen = false;
    for (const Config& k : keys) seen = seen || k == key;
    if (seen) continue;
    keys.push_back(std::move(key));
    kept.push_back(config);
  }
  return kept;
}

/// A structural hash of the space (knobs, values, default, stages): part of every decision,
/// so a changed space is noticed.
support::Sha256Digest search_space_hash(const SearchSpace& space);

}  // namespace fuseopt::autotune

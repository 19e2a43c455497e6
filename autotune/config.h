// One point of a search space: knob name -> integer value. Configurations are plain data
// (tinygrad's habit): stored as canonical JSON, hashed for keys, turned into a backend's
// schedule only at the edge.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "codegen/halide/cpu_schedule.h"
#include "support/sha256.h"

namespace fuseopt::autotune {

class Config {
 public:
  Config() = default;
  Config(std::initializer_list<std::pair<const std::string, int64_t>> knobs) : knobs_(knobs) {}

  void set(const std::string& name, int64_t value) { knobs_[name] = value; }
  /// The knob's value; a missing knob is a bug (InternalError).
  int64_t get(const std::string& name) const;
  std::optional<int64_t> find(const std::string& name) const;
  const std::map<std::string, int64_t>& knobs() const { return knobs_; }
  bool empty() const { return knobs_.empty(); }

  /// Canonical JSON: keys sorted, integers only, no spaces: {"chunk":16384,"unroll":2}.
  std::string to_json() const;
  /// Reads what to_json() writes (a flat object of integers); nullopt for anything else.
  static std::optional<Config> from_json(std::string_view text);
  /// SHA-256 of to_json(): the config's key in the cache.
  support::Sha256Digest hash() const;
  /// "chunk=16384 threads=0 unroll=2 vector=16", for people.
  std::string describe() const;

  bool operator==(const Config&) const = default;
  bool operator<(const Config& other) const { return knobs_ < other.knobs_; }

 private:
  std::map<std::string, int64_t> knobs_;
};

// ---- The CPU backend's knobs ----------------------------------------------------------------

inline constexpr const char* kVectorKnob = "vector";
inline constexpr const char* kUnrollKnob = "unroll";
inline constexpr const char* kChunkKnob = "chunk";
inline constexpr const char* kThreadsKnob = "threads";

/// The chunk size every CPU binary is compiled with: the chunk is a run-time argument of the
/// runtime's cutting, not part of the code, so one binary serves every chunk size.
inline constexpr int64_t kCanonicalChunk = 16384;

Config cpu_config(const codegen::CpuSchedule& schedule);
/// A config of the CPU space as a schedule; throws UserError for a config without its knobs.
codegen::CpuSchedule cpu_schedule(const Config& config);
/// The knobs that change the code (vector, unroll): what a CPU binary is keyed on.
Config cpu_code_config(const Config& config);
/// "v16_u2_c16384_t0", used in kernel names and reports.
std::string cpu_spelling(const Config& config);

}  // namespace fuseopt::autotune

// The tuner: measures the configs of a search space on a TuningDevice by the written
// protocol of docs/autotuning.md (correctness gate, warm-up, interleaved samples, racing,
// median, a paired shootout against the default, a time budget) and picks a winner. It
// knows nothing of kernels, caches or real time: the device and the clock are interfaces,
// faked in tests/autotune/tuner_test.cc.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "autotune/clock.h"
#include "autotune/config.h"
#include "autotune/search_space.h"
#include "autotune/statistics.h"

namespace fuseopt::autotune {

/// Where configs run. Every call may throw: prepare() failing makes the config a
/// compile_error, check() or run() failing a runtime_error.
class TuningDevice {
 public:
  virtual ~TuningDevice() = default;
  /// Compiles or loads `config` so it can run. Called once per config, before anything else.
  virtual void prepare(const Config& config) = 0;
  /// Runs `config` once on scratch copies of the inputs and compares the result with the
  /// reference (the interpreter). Returns an empty string when it matches, else what differs.
  virtual std::string check(const Config& config) = 0;
  /// Puts the scratch buffers back to their pristine values, outside the timed region (so
  /// thousands of steps never drift the data towards denormals or infinities).
  virtual void restore(const Config& config) = 0;
  /// The timed region: `iterations` back-to-back steps of `config`.
  virtual void run(const Config& config, int64_t iterations) = 0;
  /// Conditions at measuring time (load, governor...), as a JSON object.
  virtual std::string environment_json() { return "{}"; }
};

/// The measurement protocol's numbers. Its version is stored with every measurement; a
/// change in meaning here bumps it.
struct Protocol {
  static constexpr int kVersion = 1;
  int warmup_runs = 3;                ///< at least this many untimed runs per config...
  double warmup_seconds = 0.010;      ///< ...lasting at least this long together
  double min_sample_seconds = 0.001;  ///< iterations per sample are chosen to last this long
  /// Untimed runs after each restore: the copy leaves the data where the copying core put
  /// it, unlike a training loop's steady state, and that costs multi-threaded configs most.
  int settle_runs = 1;
  int64_t max_iterations = 1 << 16;
  int first_round_samples = 5;        ///< samples every config gets before any pruning
  int min_samples = 10;               ///< a finalist's samples before it may stop
  int max_samples = 40;               ///< and the most it gets
  double target_spread = 0.02;        ///< stop when (p75 - p25) / median is below this
  double hopeless_factor = 1.5;       ///< drop at once if its fastest sample is this much slower
  double prune_slack = 0.05;          ///< keep if p20 <= (1 + slack) * the best's p80
  double keep_fraction = 1.0 / 3;     ///< and keep the best third in any case
  int prune_every_rounds = 5;         ///< successive halving between rounds
  int shootout_pairs = 12;            ///< paired samples winner vs default
  double min_gain = 0.01;             ///< a winner must beat the default by more than this
  uint64_t seed = 0x5eed;             ///< for the interleaving order
};

enum class CandidateStatus {
  kOk,
  kCompileError,
  kRuntimeError,
  kMismatch,
  kNotMeasured,  ///< the budget ran out first
};
/// "ok", "compile_error", "runtime_error", "mismatch", "timeout" (the cache's spelling).
const char* status_name(CandidateStatus status);

struct CandidateResult {
  Config config;
  CandidateStatus status = CandidateStatus::kNotMeasured;
  std::string message;          ///< for errors and mismatches
  std::vector<double> samples;  ///< seconds per iteration, in measuring order
  int64_t iterations = 1;       ///< per sample
  bool pruned = false;
  int stage = 0;
  SampleStats stats() const { return summarize(samples); }
};

struct TuneResult {
  /// Every config tried, once each (when a config ran in two stages, the run with more
  /// samples).
  std::vector<CandidateResult> candidates;
  Config default_config;
  Config winner;
  std::optional<SampleStats> default_stats;
  std::optional<SampleStats> winner_stats;
  /// 1 - winner / default, from the paired shootout (0 when the default won).
  double gain = 0;
  /// Paired samples taken in the shootout (0 when there was none), and the medians of the
  /// default's and the winner's samples in it: the fairest comparison of the two, measured
  /// in the same window.
  int shootout_pairs = 0;
  std::optional<double> shootout_default_median;
  std::optional<double> shootout_winner_median;
  bool budget_exhausted = false;
  double seconds = 0;
  int64_t samples = 0;  ///< timed samples, all configs together
  const CandidateResult* find(const Config& config) const;
};

struct TuneProgress {
  double fraction = 0;  ///< 0..1, an estimate
  size_t stage = 0;
  size_t stages = 0;
  std::string activity;  ///< "compiling v8_u2", "measuring 9 configs"...
};

class Tuner {
 public:
  Tuner(TuningDevice& device, Clock& clock, Protocol protocol = {});

  void set_progress(std::function<void(const TuneProgress&)> progress) {
    progress_ = std::move(progress);
  }
  /// Configs that run identically map to the same key; each key is measured once.
  void set_equivalence(std::function<Config(const Config&)> key_of) { key_of_ = std::move(key_of); }
  /// A label for configs in progress messages (default: Config::describe()).
  void set_spelling(std::function<std::string(const Config&)> spell) { spell_ = std::move(spell); }

  /// Tunes within `budget_seconds` of the clock (compiling included). The default is always
  /// measured first; a config that fails its check is never chosen; when nothing beats
  /// the default beyond noise, the default wins.
  TuneResult tune(const SearchSpace& space, double budget_seconds);

 private:
  struct Entry;
  void race(std::vector<Entry>& entries, double deadline, size_t stage, size_t stages);
  bool sample(Entry& entry);
  void warm_up(Entry& entry);
  void prune(std::vector<Entry*>& alive, const Entry* incumbent) const;
  void report(double fraction, size_t stage, size_t stages, const std::string& activity);
  std::string spell(const Config& config) const;

  TuningDevice& device_;
  Clock& clock_;
  Protocol protocol_;
  std::function<void(const TuneProgress&)> progress_;
  std::function<Config(const Config&)> key_of_;
  std::function<std::string(const Config&)> spell_;
  uint64_t rng_state_;
  double start_ = 0;
  double deadline_ = 0;
  int64_t samples_ = 0;
};

}  // namespace fuseopt::autotune

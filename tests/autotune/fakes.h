// Fakes for the tuner's interfaces: a clock that only moves when told, and a device whose
// configs "take" a programmed time (plus deterministic noise) and record what was asked of
// them, so tests can check the protocol's order of events without running anything.
#pragma once

#include <cmath>
#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "autotune/clock.h"
#include "autotune/tuner.h"

namespace fuseopt::autotune::test {

class FakeClock final : public Clock {
 public:
  double now() override { return now_; }
  void advance(double seconds) { now_ += seconds; }

 private:
  double now_ = 1000;
};

class FakeDevice final : public TuningDevice {
 public:
  struct Event {
    enum class Kind { kPrepare, kCheck, kRestore, kRun } kind;
    Config config;
    int64_t iterations = 0;
  };

  explicit FakeDevice(FakeClock& clock) : clock_(clock) {}

  /// Seconds per iteration of a config; unknown configs take `default_seconds`.
  std::function<double(const Config&)> seconds_of = [](const Config&) { return 1e-3; };
  /// Relative noise amplitude: each run is scaled by 1 + noise * u, u in [-1, 1).
  double noise = 0;
  /// Occasional huge outliers: every `outlier_every`th run of a config in `outliers` takes
  /// `outlier_factor` times longer.
  int outlier_every = 0;
  double outlier_factor = 10;
  std::set<Config> outliers;
  std::set<Config> fail_compile;
  std::set<Config> fail_check;
  std::set<Config> fail_run;
  double compile_seconds = 0;
  double restore_seconds = 0;
  std::vector<Event> events;

  void prepare(const Config& config) override {
    events.push_back({Event::Kind::kPrepare, config, 0});
    clock_.advance(compile_seconds);
    if (fail_compile.count(config) != 0) throw std::runtime_error("fake compile error");
  }
  std::string check(const Config& config) override {
    events.push_back({Event::Kind::kCheck, config, 0});
    return fail_check.count(config) != 0 ? "param of check tensor 0, element 3: wrong" : "";
  }
  void restore(const Config& config) override {
    events.push_back({Event::Kind::kRestore, config, 0});
    clock_.advance(restore_seconds);
  }
  void run(const Config& config, int64_t iterations) override {
    events.push_back({Event::Kind::kRun, config, iterations});
    if (fail_run.count(config) != 0) throw std::runtime_error("fake runtime error");
    for (int64_t i = 0; i < iterations; ++i) {
      double t = seconds_of(config) * (1 + noise * next_uniform());
      if (outliers.count(config) != 0 && outlier_every > 0 &&
          ++outlier_runs_[config] % outlier_every == 0) {
        t *= outlier_factor;
      }
      clock_.advance(t);
    }
  }

  int64_t runs_of(const Config& config) const {
    int64_t n = 0;
    for (const Event& e : events) {
      if (e.kind == Event::Kind::kRun && e.config == config) n += e.iterations;
    }
    return n;
  }
  bool was(Event::Kind kind, const Config& config) const {
    for (const Event& e : events) {
      if (e.kind == kind && e.config == config) return true;
    }
    return false;
  }

 private:
  double next_uniform() {
    state_ ^= state_ << 13;
    state_ ^= state_ >> 7;
    state_ ^= state_ << 17;
    return static_cast<double>(state_ >> 11) / 4503599627370496.0 - 1.0;  // [-1, 1)
  }

  FakeClock& clock_;
  uint64_t state_ = 88172645463325252ull;
  std::map<Config, int64_t> outlier_runs_;
};

/// A small two-stage space: a (2 values) x b (3 values), then c (2 values).
inline SearchSpace small_space() {
  SearchSpace space;
  space.backend = "fake";
  space.knobs = {{"a", {1, 2}}, {"b", {1, 2, 3}}, {"c", {1, 2}}};
  space.default_config = Config{{"a", 1}, {"b", 1}, {"c", 1}};
  space.stages = {{"a", "b"}, {"c"}};
  return space;
}

}  // namespace fuseopt::autotune::test

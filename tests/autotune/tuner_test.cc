// The tuner's protocol with a fake clock and a fake device: correctness before timing,
// warm-up, restore before every sample, interleaving, the median, pruning, stopping rules,
// the budget, the paired shootout and the preference for the default on a tie.
#include "autotune/tuner.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>

#include "tests/autotune/fakes.h"

namespace fuseopt::autotune {
namespace {

using test::FakeClock;
using test::FakeDevice;
using test::small_space;
using Kind = FakeDevice::Event::Kind;

Config cfg(int64_t a, int64_t b, int64_t c) { return Config{{"a", a}, {"b", b}, {"c", c}}; }

// Seconds per iteration: 1 ms for the default, scaled per knob value.
std::function<double(const Config&)> times(std::map<Config, double> special, double base = 1e-3) {
  return [special, base](const Config& c) {
    auto found = special.find(c);
    return found != special.end() ? found->second : base;
  };
}

TEST(TunerTest, PicksTheFastestConfigThroughBothStages) {
  FakeClock clock;
  FakeDevice device(clock);
  device.noise = 0.01;
  device.seconds_of = times({{cfg(2, 3, 1), 0.5e-3}, {cfg(2, 3, 2), 0.4e-3}});
  Tuner tuner(device, clock);
  const TuneResult result = tuner.tune(small_space(), 60);
  EXPECT_EQ(result.winner, cfg(2, 3, 2));
  ASSERT_TRUE(result.winner_stats.has_value());
  ASSERT_TRUE(result.default_stats.has_value());
  EXPECT_NEAR(result.winner_stats->median, 0.4e-3, 0.02e-3);
  EXPECT_NEAR(result.default_stats->median, 1e-3, 0.03e-3);
  EXPECT_NEAR(result.gain, 0.6, 0.03);
  EXPECT_GE(result.shootout_pairs, 3);
  EXPECT_FALSE(result.budget_exhausted);
}

TEST(TunerTest, KeepsTheDefaultWhenNothingIsFasterBeyondTheNoise) {
  FakeClock clock;
  FakeDevice device(clock);
  device.noise = 0.03;
  // Half a percent faster is below min_gain and within the noise: not worth a change.
  device.seconds_of = times({{cfg(2, 2, 1), 0.995e-3}});
  Tuner tuner(device, clock);
  const TuneResult result = tuner.tune(small_space(), 60);
  EXPECT_EQ(result.winner, small_space().default_config);
  EXPECT_EQ(result.gain, 0);
}

TEST(TunerTest, AConfigThatFailsItsCheckIsNeverTimedNorChosen) {
  FakeClock clock;
  FakeDevice device(clock);
  device.seconds_of = times({{cfg(2, 2, 1), 0.1e-3}, {cfg(1, 3, 1), 0.5e-3}});
  device.fail_check = {cfg(2, 2, 1)};  // the fastest, and wrong
  Tuner tuner(device, clock);
  const TuneResult result = tuner.tune(small_space(), 60);
  EXPECT_EQ(result.winner.get("a"), 1);
  EXPECT_EQ(result.winner.get("b"), 3);
  EXPECT_FALSE(device.was(Kind::kRun, cfg(2, 2, 1)));
  const CandidateResult* bad = result.find(cfg(2, 2, 1));
  ASSERT_NE(bad, nullptr);
  EXPECT_EQ(bad->status, CandidateStatus::kMismatch);
  EXPECT_NE(bad->message.find("element 3"), std::string::npos);
  EXPECT_TRUE(bad->samples.empty());
}

TEST(TunerTest, CompileAndRuntimeErrorsAreResultsNotFailures) {
  FakeClock clock;
  FakeDevice device(clock);
  device.seconds_of = times({{cfg(2, 1, 1), 0.1e-3}, {cfg(2, 2, 1), 0.1e-3}});
  device.fail_compile = {cfg(2, 1, 1)};
  device.fail_run = {cfg(2, 2, 1)};
  Tuner tuner(device, clock);
  const TuneResult result = tuner.tune(small_space(), 60);
  EXPECT_EQ(result.find(cfg(2, 1, 1))->status, CandidateStatus::kCompileError);
  EXPECT_EQ(result.find(cfg(2, 2, 1))->status, CandidateStatus::kRuntimeError);
  EXPECT_NE(result.winner, cfg(2, 1, 1));
  EXPECT_NE(result.winner, cfg(2, 2, 1));
  EXPECT_FALSE(device.was(Kind::kCheck, cfg(2, 1, 1)));  // nothing after a failed compile
}

TEST(TunerTest, ChecksEveryConfigBeforeTimingIt) {
  FakeClock clock;
  FakeDevice device(clock);
  Tuner tuner(device, clock);
  tuner.tune(small_space(), 60);
  std::set<Config> checked;
  for (const FakeDevice::Event& e : device.events) {
    if (e.kind == Kind::kCheck) checked.insert(e.config);
    if (e.kind == Kind::kRun) {
      EXPECT_EQ(checked.count(e.config), 1u) << e.config.describe();
    }
  }
  // And prepares before checking.
  std::set<Config> prepared;
  for (const FakeDevice::Event& e : device.events) {
    if (e.kind == Kind::kPrepare) prepared.insert(e.config);
    if (e.kind == Kind::kCheck) {
      EXPECT_EQ(prepared.count(e.config), 1u);
    }
  }
}

TEST(TunerTest, WarmsUpThenRestoresBeforeEveryTimedSample) {
  FakeClock clock;
  FakeDevice device(clock);
  device.seconds_of = times({}, 1e-4);  // 10 iterations make a 1 ms sample
  Tuner tuner(device, clock);
  const TuneResult result = tuner.tune(small_space(), 60);
  for (const CandidateResult& c : result.candidates) {
    if (!c.samples.empty()) {
      EXPECT_EQ(c.iterations, 10) << c.config.describe();
    }
  }
  std::map<Config, int> warmup_runs;
  std::map<Config, bool> timed;
  for (size_t i = 0; i < device.events.size(); ++i) {
    const FakeDevice::Event& e = device.events[i];
    if (e.kind != Kind::kRun) continue;
    if (e.iterations == 1) {
      // Warm-up runs come before any timed sample of that config in the same stage.
      ++warmup_runs[e.config];
      continue;
    }
    timed[e.config] = true;
    EXPECT_GE(warmup_runs[e.config], 3) << e.config.describe();
    // restore, one untimed settling run, then the timed one.
    ASSERT_GT(i, 1u);
    EXPECT_EQ(device.events[i - 1].kind, Kind::kRun);
    EXPECT_EQ(device.events[i - 1].iterations, Protocol{}.settle_runs);
    EXPECT_EQ(device.events[i - 1].config, e.config);
    EXPECT_EQ(device.events[i - 2].kind, Kind::kRestore);
    EXPECT_EQ(device.events[i - 2].config, e.config);
  }
  EXPECT_FALSE(timed.empty());
}

TEST(TunerTest, WarmUpLastsAtLeastTenMillisecondsAndThreeRuns) {
  FakeClock clock;
  FakeDevice device(clock);
  device.seconds_of = times({}, 1e-4);
  Protocol protocol;
  Tuner tuner(device, clock, protocol);
  SearchSpace space = small_space();
  space.knobs = {{"a", {1}}, {"b", {1}}, {"c", {1}}};
  tuner.tune(space, 60);
  int warmups = 0;
  for (const FakeDevice::Event& e : device.events) {
    if (e.kind == Kind::kRun && e.iterations == 1) ++warmups;
  }
  // 10 ms of 0.1 ms runs, in each of the two stages.
  EXPECT_GE(warmups, 2 * 100);
}

TEST(TunerTest, InterleavesConfigsInsteadOfMeasuringThemInBlocks) {
  FakeClock clock;
  FakeDevice device(clock);
  device.noise = 0.05;  // never stable: many rounds
  device.seconds_of = times({}, 1e-4);  // 10 iterations per sample, unlike warm-up runs
  Tuner tuner(device, clock);
  tuner.tune(small_space(), 60);
  Config previous;
  int run_length = 0, longest = 0, switches = 0;
  for (const FakeDevice::Event& e : device.events) {
    if (e.kind != Kind::kRun || e.iterations == 1) continue;  // timed samples only
    if (e.config == previous) {
      ++run_length;
    } else {
      ++switches;
      run_length = 1;
      previous = e.config;
    }
    longest = std::max(longest, run_length);
  }
  // A new random order each round: a config can end one round and start the next, no more
  // (the shootout alternates, too).
  EXPECT_LE(longest, 2);
  EXPECT_GT(switches, 50);
}

TEST(TunerTest, RanksByTheMedianSoRareOutliersDoNotDecide) {
  FakeClock clock;
  FakeDevice device(clock);
  SearchSpace space = small_space();
  space.knobs = {{"a", {1, 2}}, {"b", {1}}, {"c", {1}}};
  space.stages = {{"a"}};
  // a=2 is 20% faster, but every 4th of its runs is preempted (10x): its mean is worse.
  device.seconds_of = times({{cfg(2, 1, 1), 0.8e-3}});
  device.outliers = {cfg(2, 1, 1)};
  device.outlier_every = 4;
  Protocol protocol;
  protocol.min_sample_seconds = 0.5e-3;  // one run per sample...
  protocol.settle_runs = 0;              // ...and no other runs in between
  Tuner tuner(device, clock, protocol);
  const TuneResult result = tuner.tune(space, 60);
  EXPECT_EQ(result.winner, cfg(2, 1, 1));
  const SampleStats fast = result.find(cfg(2, 1, 1))->stats();
  EXPECT_GT(fast.mean, 1e-3);  // the mean would have chosen the default
  EXPECT_NEAR(fast.median, 0.8e-3, 1e-5);
}

TEST(TunerTest, PrunesHopelessConfigsEarly) {
  FakeClock clock;
  FakeDevice device(clock);
  device.noise = 0.05;
  // Stage one: the default is fast, (2, 3) three times slower, (1, 3) ten percent slower.
  device.seconds_of = times({{cfg(2, 3, 1), 3e-3}, {cfg(1, 3, 1), 1.1e-3}, {cfg(2, 1, 1), 1.5e-3},
                             {cfg(2, 2, 1), 1.5e-3}, {cfg(1, 2, 1), 1.6e-3}});
  Tuner tuner(device, clock);
  const TuneResult result = tuner.tune(small_space(), 60);
  const CandidateResult* hopeless = result.find(cfg(2, 3, 1));
  const CandidateResult* best = result.find(cfg(1, 1, 1));
  ASSERT_NE(hopeless, nullptr);
  ASSERT_NE(best, nullptr);
  EXPECT_TRUE(hopeless->pruned);
  EXPECT_LE(hopeless->samples.size(), 2u);  // dropped after its second sample
  EXPECT_GT(best->samples.size(), hopeless->samples.size());
  EXPECT_EQ(result.winner, small_space().default_config);
}

TEST(TunerTest, StopsAsSoonAsTheFinalistsAreStable) {
  FakeClock clock;
  FakeDevice device(clock);  // no noise: stable after the minimum
  Tuner tuner(device, clock);
  const TuneResult result = tuner.tune(small_space(), 60);
  for (const CandidateResult& c : result.candidates) {
    EXPECT_LE(static_cast<int>(c.samples.size()), Protocol{}.min_samples) << c.config.describe();
  }
  EXPECT_LT(result.seconds, 2.0);
}

TEST(TunerTest, NoisyConfigsStopAtTheSampleCap) {
  FakeClock clock;
  FakeDevice device(clock);
  device.noise = 0.3;
  Tuner tuner(device, clock);
  const TuneResult result = tuner.tune(small_space(), 600);
  for (const CandidateResult& c : result.candidates) {
    EXPECT_LE(static_cast<int>(c.samples.size()), Protocol{}.max_samples);
  }
}

TEST(TunerTest, StaysWithinItsBudgetAndStillMeasuresTheDefault) {
  FakeClock clock;
  FakeDevice device(clock);
  device.compile_seconds = 0.5;  // 6 configs in stage one alone would take 3 s to compile
  device.noise = 0.2;
  Tuner tuner(device, clock);
  const double start = clock.now();
  const TuneResult result = tuner.tune(small_space(), 2.0);
  EXPECT_TRUE(result.budget_exhausted);
  EXPECT_LT(clock.now() - start, 2.0 + 0.6);  // one compile or a few samples of overrun
  ASSERT_TRUE(result.default_stats.has_value());
  EXPECT_GE(result.default_stats->count, 3);
  bool some_not_measured = false;
  for (const CandidateResult& c : result.candidates) {
    some_not_measured = some_not_measured || c.status == CandidateStatus::kNotMeasured;
  }
  EXPECT_TRUE(some_not_measured);
}

TEST(TunerTest, AZeroBudgetMeasuresOnlyTheDefault) {
  FakeClock clock;
  FakeDevice device(clock);
  Tuner tuner(device, clock);
  const TuneResult result = tuner.tune(small_space(), 0);
  EXPECT_EQ(result.winner, small_space().default_config);
  ASSERT_TRUE(result.winner_stats.has_value());
  for (const FakeDevice::Event& e : device.events) {
    if (e.kind == Kind::kPrepare) {
      EXPECT_EQ(e.config, small_space().default_config);
    }
  }
}

TEST(TunerTest, ChoosesIterationsSoEachSampleLastsAMillisecond) {
  FakeClock clock;
  FakeDevice device(clock);
  device.seconds_of = times({}, 1e-5);
  Tuner tuner(device, clock);
  const TuneResult result = tuner.tune(small_space(), 60);
  EXPECT_EQ(result.find(small_space().default_config)->iterations, 100);
}

TEST(TunerTest, MeasuresEquivalentConfigsOnce) {
  FakeClock clock;
  FakeDevice device(clock);
  Tuner tuner(device, clock);
  // b = 2 and b = 3 behave the same (say, both larger than the problem).
  tuner.set_equivalence([](const Config& c) {
    Config key = c;
    key.set("b", std::min<int64_t>(c.get("b"), 2));
    return key;
  });
  tuner.tune(small_space(), 60);
  EXPECT_TRUE(device.was(Kind::kPrepare, cfg(1, 2, 1)));
  EXPECT_FALSE(device.was(Kind::kPrepare, cfg(1, 3, 1)));
}

TEST(TunerTest, LaterStagesStartFromTheEarlierWinner) {
  FakeClock clock;
  FakeDevice device(clock);
  device.seconds_of = times({{cfg(2, 2, 1), 0.5e-3}, {cfg(2, 2, 2), 0.5e-3}});
  Tuner tuner(device, clock);
  const TuneResult result = tuner.tune(small_space(), 60);
  for (const CandidateResult& c : result.candidates) {
    if (c.stage == 1) {
      EXPECT_EQ(c.config.get("a"), 2);
      EXPECT_EQ(c.config.get("b"), 2);
    }
  }
  EXPECT_EQ(result.winner, cfg(2, 2, 1));  // c = 2 is no faster: the incumbent stays
}

TEST(TunerTest, ADefaultThatFailsItsCheckIsReplacedByOneThatPasses) {
  FakeClock clock;
  FakeDevice device(clock);
  device.fail_check = {small_space().default_config};
  device.seconds_of = times({{cfg(1, 2, 1), 2e-3}});
  Tuner tuner(device, clock);
  const TuneResult result = tuner.tune(small_space(), 60);
  EXPECT_NE(result.winner, small_space().default_config);
  EXPECT_TRUE(result.winner_stats.has_value());
  EXPECT_FALSE(result.default_stats.has_value());
}

TEST(TunerTest, NoWinnerWhenEveryConfigFails) {
  FakeClock clock;
  FakeDevice device(clock);
  for (const Config& c : small_space().all_configs()) device.fail_check.insert(c);
  Tuner tuner(device, clock);
  const TuneResult result = tuner.tune(small_space(), 60);
  EXPECT_FALSE(result.winner_stats.has_value());
  EXPECT_FALSE(device.was(Kind::kRun, small_space().default_config));
}

TEST(TunerTest, ReportsProgressUpToDone) {
  FakeClock clock;
  FakeDevice device(clock);
  Tuner tuner(device, clock);
  std::vector<TuneProgress> seen;
  tuner.set_progress([&](const TuneProgress& p) { seen.push_back(p); });
  tuner.tune(small_space(), 60);
  ASSERT_FALSE(seen.empty());
  EXPECT_EQ(seen.back().fraction, 1.0);
  EXPECT_EQ(seen.back().activity, "done");
  for (const TuneProgress& p : seen) {
    EXPECT_GE(p.fraction, 0);
    EXPECT_LE(p.fraction, 1);
  }
}

TEST(StatisticsTest, QuantilesAndSpread) {
  const SampleStats s = summarize({5, 1, 4, 2, 3});
  EXPECT_EQ(s.count, 5);
  EXPECT_DOUBLE_EQ(s.median, 3);
  EXPECT_DOUBLE_EQ(s.min, 1);
  EXPECT_DOUBLE_EQ(s.mean, 3);
  EXPECT_DOUBLE_EQ(s.p25, 2);
  EXPECT_DOUBLE_EQ(s.p75, 4);
  EXPECT_DOUBLE_EQ(s.p20, 1.8);
  EXPECT_DOUBLE_EQ(s.rel_spread(), 2.0 / 3.0);
  EXPECT_DOUBLE_EQ(median_of({4, 1, 3, 2}), 2.5);
  EXPECT_NEAR(robust_stddev({1, 2, 3, 4, 100}), 1.4826, 1e-12);
  EXPECT_EQ(summarize({}).count, 0);
}

}  // namespace
}  // namespace fuseopt::autotune

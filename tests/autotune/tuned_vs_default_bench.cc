// A benchmark, not a CTest test (timings on a shared machine would make it flaky): for a few
// rules and sizes, tune, then measure the winner against the default again, independently
// of the tuner: 30 pairs of samples, alternating which goes first, and print the medians.
// The figures are the ones docs/performance.md reports. Run it by hand:
//   build/release/tests/autotune/autotune_tuned_vs_default_bench
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>

#include "autotune/cpu_tuning_device.h"
#include "autotune/fingerprint.h"
#include "autotune/kernel_store.h"
#include "autotune/statistics.h"
#include "frontend/rule.h"
#include "tests/autotune/test_util.h"

namespace fuseopt::autotune {
namespace {

double load_average() {
  double load = 0;
  if (std::FILE* f = std::fopen("/proc/loadavg", "r")) {
    if (std::fscanf(f, "%lf", &load) != 1) load = 0;
    std::fclose(f);
  }
  return load;
}

double seconds_per_step(CpuTuningDevice& device, const Config& config, int64_t iterations) {
  device.restore(config);
  device.run(config, 1);
  const auto start = std::chrono::steady_clock::now();
  device.run(config, iterations);
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() /
         static_cast<double>(iterations);
}

TEST(TunedVsDefaultTest, TheTunedConfigIsNeverSlowerBeyondNoise) {
  test::TempDir dir;
  KernelStore store(dir.file("cache.sqlite"));
  for (const char* rule : {"adam", "adamomentum", "lion"}) {
    frontend::Rule r = frontend::load_rule(rule);
    const ir::Kernel kernel = r.compile(r.resolve_options({}));
    for (int64_t size : {int64_t{1} << 16, int64_t{1} << 20, int64_t{1} << 23}) {
      TuneSettings settings;
      settings.sizes = {size};
      settings.budget_seconds = 10;
      const KeyReport report = store.tune_cpu(kernel, settings)[0];
      ASSERT_EQ(report.outcome, KeyReport::Outcome::kTuned);

      CpuTuningDevice device(kernel, CpuProblem{size, 1}, [&](const Config& config) {
        return store.compile_cpu(kernel, cpu_schedule(config));
      });
      const Config& tuned = report.winner;
      const Config& fallback = report.default_config;
      const int64_t iterations = std::max<int64_t>(1, (int64_t{1} << 21) / size);
      std::vector<double> t_default, t_tuned;
      for (int pair = 0; pair < 30; ++pair) {
        const bool default_first = pair % 2 == 0;
        const Config& first = default_first ? fallback : tuned;
        const Config& second = default_first ? tuned : fallback;
        const double a = seconds_per_step(device, first, iterations);
        const double b = seconds_per_step(device, second, iterations);
        t_default.push_back(default_first ? a : b);
        t_tuned.push_back(default_first ? b : a);
      }
      const double d = median_of(t_default), t = median_of(t_tuned);
      std::printf("%-12s n=%-9lld default %-18s %9.1f us   tuned %-18s %9.1f us   %.2fx   tuned in %.1f s\n",
                  rule, static_cast<long long>(size), cpu_spelling(fallback).c_str(), d * 1e6,
                  cpu_spelling(tuned).c_str(), t * 1e6, d / t, report.seconds);
      // "Never slower beyond noise" is the tuner's rule (it keeps the default unless the
      // winner beats it beyond the noise); this flags what a person should look at.
      const double load = load_average();
      if (t > d * 1.10) {
        std::printf("  NOTE: tuned is %.0f%% slower here (load %.1f): noise, or a bad decision\n",
                    (t / d - 1) * 100, load);
      }
    }
  }
}

}  // namespace
}  // namespace fuseopt::autotune

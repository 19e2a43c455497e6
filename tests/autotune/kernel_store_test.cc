// The lookup chain with the real CPU backend: compile once, then a "second process" (a new
// store on the same file) loads the binary from the cache without compiling; a damaged blob
// is recompiled; tuning records every measurement and a decision that later lookups use;
// a miscompiled config never wins. Compiling needs Halide and a C compiler ('cc').
#include "autotune/kernel_store.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>

#include "autotune/cpu_tuning_device.h"
#include "autotune/size_bucket.h"
#include "frontend/rule.h"
#include "runtime/cpu_binary.h"
#include "runtime/optimizer.h"
#include "tests/autotune/fakes.h"
#include "tests/autotune/test_util.h"

namespace fuseopt::autotune {
namespace {

using test::TempDir;
using test::WarningCapture;

ir::Kernel compile_kernel(const std::string& rule) {
  frontend::Rule r = frontend::load_rule(rule);
  return r.compile(r.resolve_options({}));
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// One step of `kernel` and of the interpreter on the same data must agree.
void expect_matches_interpreter(const ir::Kernel& ir, std::shared_ptr<const runtime::CompiledKernel> kernel) {
  Optimizer compiled(kernel, {}, 1);
  Optimizer reference(runtime::make_interpreter_kernel(ir, kernel->chunk_elements), {}, 1);
  for (Optimizer* o : {&compiled, &reference}) {
    o->add_tensor(1000);
    for (int i = 0; i < 1000; ++i) {
      o->param(0)[static_cast<size_t>(i)] = std::sin(static_cast<float>(i));
      o->grad(0)[static_cast<size_t>(i)] = 0.01f * std::cos(static_cast<float>(i));
    }
    o->step();
  }
  for (int i = 0; i < 1000; ++i) {
    ASSERT_NEAR(compiled.param(0)[static_cast<size_t>(i)], reference.param(0)[static_cast<size_t>(i)], 1e-6);
  }
}

TEST(KernelStoreTest, ASecondProcessLoadsFromTheCacheWithoutCompiling) {
  TempDir dir;
  const std::string path = dir.file("cache.sqlite");
  const ir::Kernel kernel = compile_kernel("adam");
  {
    KernelStore first(path);
    const CpuKernelChoice cold = first.find_or_compile_cpu(kernel, 1 << 16);
    EXPECT_EQ(cold.origin, KernelOrigin::kCompiled);
    EXPECT_EQ(cold.decision, "heuristic");
    EXPECT_EQ(cold.schedule, codegen::default_cpu_schedule());
    EXPECT_EQ(first.find_or_compile_cpu(kernel, 1 << 16).origin, KernelOrigin::kMemory);
    EXPECT_EQ(first.cache().count_rows("binary"), 1);
  }
  KernelStore second(path);  // what a new process sees
  const auto start = std::chrono::steady_clock::now();
  const CpuKernelChoice warm = second.find_or_compile_cpu(kernel, 1 << 16);
  const double warm_seconds = seconds_since(start);
  // From the cache, not compiled: that is what makes it fast (the time is only printed).
  EXPECT_EQ(warm.origin, KernelOrigin::kCache);
  std::printf("warm lookup of adam from the cache: %.1f ms\n", warm_seconds * 1e3);
  expect_matches_interpreter(kernel, warm.kernel);
}

TEST(KernelStoreTest, ADamagedBlobIsDroppedAndRecompiled) {
  TempDir dir;
  const std::string path = dir.file("cache.sqlite");
  const ir::Kernel kernel = compile_kernel("sgd");
  {
    KernelStore first(path);
    first.find_or_compile_cpu(kernel, 1000);
  }
  {
    // Sixteen bytes in the middle of the shared object flip: its hash no longer matches.
    sqlite::Connection raw(path, false);
    std::string bytes;
    {
      sqlite::Statement read(raw, "SELECT data FROM blob");
      ASSERT_TRUE(read.step());
      bytes = read.column_blob(0);
    }
    for (size_t i = 1000; i < 1016; ++i) bytes[i] = static_cast<char>(~bytes[i]);
    sqlite::Statement write(raw, "UPDATE blob SET data = ?1");
    write.bind_blob(1, bytes).run();
  }
  WarningCapture warnings;
  KernelStore second(path);
  const CpuKernelChoice choice = second.find_or_compile_cpu(kernel, 1000);
  EXPECT_EQ(choice.origin, KernelOrigin::kCompiled);
  EXPECT_TRUE(warnings.contains("failed its SHA-256 check")) << warnings.all();
  expect_matches_interpreter(kernel, choice.kernel);
  KernelStore third(path);
  EXPECT_EQ(third.find_or_compile_cpu(kernel, 1000).origin, KernelOrigin::kCache);
}

TEST(KernelStoreTest, ABinaryThatDoesNotLoadIsDroppedAndRecompiled) {
  TempDir dir;
  const std::string path = dir.file("cache.sqlite");
  const ir::Kernel kernel = compile_kernel("sgd");
  {
    KernelStore first(path);
    first.find_or_compile_cpu(kernel, 1000);
  }
  {
    // Bytes that pass their hash (it is recomputed here) but are no shared object.
    sqlite::Connection raw(path, false);
    const std::string junk(4096, '\x7f');
    const std::string sha = test::digest(junk);
    sqlite::Statement blob(raw, "UPDATE blob SET data = ?1, sha256 = ?2, size = 4096");
    blob.bind_blob(1, junk).bind_blob(2, sha).run();
    sqlite::Statement binary(raw, "UPDATE binary SET blob_sha256 = ?1");
    binary.bind_blob(1, sha).run();
  }
  WarningCapture warnings;
  KernelStore second(path);
  const CpuKernelChoice choice = second.find_or_compile_cpu(kernel, 1000);
  EXPECT_EQ(choice.origin, KernelOrigin::kCompiled);
  EXPECT_TRUE(warnings.contains("did not load")) << warnings.all();
  expect_matches_interpreter(kernel, choice.kernel);
  KernelStore third(path);
  EXPECT_EQ(third.find_or_compile_cpu(kernel, 1000).origin, KernelOrigin::kCache);
}

TEST(KernelStoreTest, WithoutACacheEverythingStillWorks) {
  const ir::Kernel kernel = compile_kernel("sgd");
  KernelStore store("");
  const CpuKernelChoice choice = store.find_or_compile_cpu(kernel, 1000);
  EXPECT_EQ(choice.origin, KernelOrigin::kCompiled);
  expect_matches_interpreter(kernel, choice.kernel);
}

TEST(KernelStoreTest, TuningRecordsMeasurementsAndADecisionThatLookupsUse) {
  TempDir dir;
  const std::string path = dir.file("cache.sqlite");
  const ir::Kernel kernel = compile_kernel("sgd");
  TuneSettings settings;
  settings.sizes = {5000};
  settings.budget_seconds = 20;
  Config winner;
  {
    KernelStore store(path);
    int events = 0;
    const std::vector<KeyReport> reports =
        store.tune_cpu(kernel, settings, [&](const TuneEvent&) { ++events; });
    ASSERT_EQ(reports.size(), 1u);
    const KeyReport& r = reports[0];
    EXPECT_EQ(r.outcome, KeyReport::Outcome::kTuned);
    EXPECT_TRUE(r.saved);
    EXPECT_EQ(r.problem_key, problem_key(bucket_for(5000), 1));
    ASSERT_TRUE(r.default_ns.has_value());
    ASSERT_TRUE(r.winner_ns.has_value());
    EXPECT_GT(r.configs_measured, 3);
    EXPECT_EQ(r.configs_rejected, 0);
    EXPECT_GT(events, 0);
    EXPECT_EQ(store.cache().count_rows("decision"), 1);
    EXPECT_GE(store.cache().count_rows("measurement"), r.configs_measured);
    winner = r.winner;
    // Tuned again without force: nothing is measured.
    const KeyReport again = store.tune_cpu(kernel, settings)[0];
    EXPECT_EQ(again.outcome, KeyReport::Outcome::kAlreadyTuned);
    EXPECT_EQ(again.winner, winner);
  }
  KernelStore later(path);
  const CpuKernelChoice choice = later.find_or_compile_cpu(kernel, 5000);
  EXPECT_EQ(choice.decision, "tuned");
  EXPECT_EQ(cpu_config(choice.schedule), winner);
  EXPECT_EQ(choice.kernel->chunk_elements, winner.get(kChunkKnob));
  // A size in another bucket takes the nearest tuned one.
  const CpuKernelChoice nearby = later.find_or_compile_cpu(kernel, 40000);
  EXPECT_EQ(nearby.decision, "tuned for " + problem_key(bucket_for(5000), 1));
  EXPECT_EQ(later.find_or_compile_cpu(kernel, 0).decision, "tuned");  // unknown size
}

// A "miscompiled" kernel: it skips the work, so it is the fastest config by far.
class SkipsTheWork final : public runtime::PhaseKernel {
 public:
  void run(const runtime::ChunkArgs&) const override {}
};

TEST(KernelStoreTest, AMiscompiledConfigNeverWinsHoweverFastItIs) {
  const ir::Kernel kernel = compile_kernel("adam");
  const Config broken{{"vector", 8}, {"unroll", 4}, {"chunk", 16384}, {"threads", 0}};
  CpuTuningDevice device(kernel, CpuProblem{20000, 1}, [&](const Config& config) {
    auto reference = runtime::make_interpreter_kernel(kernel, config.get(kChunkKnob));
    if (config.get(kUnrollKnob) != 4) return reference;
    auto wrong = std::make_shared<runtime::CompiledKernel>(*reference);
    for (auto& phase : wrong->phases) phase = std::make_shared<SkipsTheWork>();
    return std::shared_ptr<const runtime::CompiledKernel>(wrong);
  });
  EXPECT_EQ(device.check(broken).find("the interpreter gives") != std::string::npos, true);
  EXPECT_EQ(device.check(Config{{"vector", 8}, {"unroll", 2}, {"chunk", 4096}, {"threads", 1}}), "");
  SteadyClock clock;
  Protocol quick;
  quick.min_samples = 5;
  quick.max_samples = 8;
  Tuner tuner(device, clock, quick);
  CpuDescription cpu;
  cpu.logical_cores = 2;
  const TuneResult result = tuner.tune(cpu_search_space(cpu), 10);
  EXPECT_NE(result.winner.get(kUnrollKnob), 4);
  for (const CandidateResult& c : result.candidates) {
    if (c.config.get(kUnrollKnob) == 4) {
      EXPECT_EQ(c.status, CandidateStatus::kMismatch) << c.config.describe();
      EXPECT_TRUE(c.samples.empty());
    }
  }
}

TEST(KernelStoreTest, TheDeviceRestoresItsScratchTensorsBeforeEverySample) {
  const ir::Kernel kernel = compile_kernel("adam");
  const Config config{{"vector", 8}, {"unroll", 2}, {"chunk", 4096}, {"threads", 1}};
  CpuTuningDevice device(kernel, CpuProblem{10000, 3}, [&](const Config& c) {
    return runtime::make_interpreter_kernel(kernel, c.get(kChunkKnob));
  });
  EXPECT_EQ(device.bytes_per_element(), 4.0 * 4 + 4.0 * 3);  // reads p, g, m, v; writes p, m, v
  // Many steps move the scratch parameters; a restore puts back exactly what was there.
  device.restore(config);
  const std::vector<float> pristine = device.scratch_param(config, 2);
  device.run(config, 50);
  EXPECT_NE(device.scratch_param(config, 2), pristine);
  device.restore(config);
  EXPECT_EQ(device.scratch_param(config, 2), pristine);
  EXPECT_EQ(device.check(config), "");
  EXPECT_NE(device.environment_json().find("\"elements\":10000"), std::string::npos);
}

}  // namespace
}  // namespace fuseopt::autotune

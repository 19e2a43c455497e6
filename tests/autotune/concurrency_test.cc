// Four processes tune and write the same cache database at once (issue 5, item 6). Each is
// this test program started again with --worker: it creates or opens the database (the
// creation itself races), runs the tuner with a fake device on keys of its own and on one
// key shared by all (which the lease gives to exactly one of them), and writes every result.
// Afterwards: every worker succeeded, PRAGMA integrity_check is ok, no measurement is lost,
// and the shared key was tuned once.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "autotune/cache_db.h"
#include "autotune/tuner.h"
#include "support/sha256.h"
#include "tests/autotune/fakes.h"
#include "tests/autotune/test_util.h"

namespace fuseopt::autotune {
namespace {

constexpr int kWorkers = 4;
constexpr int kKeysPerWorker = 30;
constexpr const char* kSharedKey = "n:e30.0|t:0";

using test::digest;

double wall_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::vector<MeasurementRow> tune_rows(int worker, const std::string& problem, TuneResult& result) {
  test::FakeClock clock;
  test::FakeDevice device(clock);
  device.noise = 0.02;
  device.seconds_of = [worker](const Config& c) {
    return 1e-3 / static_cast<double>(c.get("a") + c.get("b") + c.get("c") + worker % 2);
  };
  Tuner tuner(device, clock);
  result = tuner.tune(test::small_space(), 30);
  std::vector<MeasurementRow> rows;
  for (const CandidateResult& c : result.candidates) {
    MeasurementRow m;
    m.ir_hash = digest("ir");
    m.problem_key = problem;
    m.device_exact_fp = digest("device");
    m.config_hash = support::digest_bytes(c.config.hash());
    m.config_json = c.config.to_json();
    m.toolchain_fp = digest("toolchain");
    m.protocol_version = Protocol::kVersion;
    m.status = status_name(c.status);
    m.n_samples = static_cast<int64_t>(c.samples.size());
    if (!c.samples.empty()) m.median_ns = c.stats().median * 1e9;
    m.env_json = "{\"worker\":" + std::to_string(worker) + "}";
    m.measured_at = 1;
    rows.push_back(std::move(m));
  }
  return rows;
}

DecisionRow decision_for(const std::string& problem, const TuneResult& result) {
  return DecisionRow{digest("ir"), problem, digest("device"), digest("toolchain"),
                     support::digest_bytes(result.winner.hash()), result.winner.to_json(),
                     result.gain, "tuned", digest("space"), 1, false, ""};
}

// The worker: prints "rows N" (measurements it wrote) and exits 0 when all went well.
int run_worker(const std::string& path, int worker, double start_at) {
  while (wall_now() < start_at) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  int failures = 0;
  set_warning_handler([&](const std::string& m) {
    std::fprintf(stderr, "worker %d warning: %s\n", worker, m.c_str());
    ++failures;
  });
  CacheDb db(path);
  if (db.mode() != CacheMode::kReadWrite) return 2;
  const DeviceRow device{digest("device"), digest("class"), "cpu", "fake", "{}"};
  const ToolchainRow toolchain{digest("toolchain"), "{}"};
  const KernelRow kernel{digest("ir"), "fake", "test", digest("space"), ""};
  int64_t written = 0;
  for (int k = 0; k < kKeysPerWorker; ++k) {
    const std::string problem = "n:e" + std::to_string(k) + ".0|t:" + std::to_string(worker);
    TuneResult result;
    const std::vector<MeasurementRow> rows = tune_rows(worker, problem, result);
    if (!db.store_tuning(device, toolchain, kernel, rows, decision_for(problem, result))) return 3;
    written += static_cast<int64_t>(rows.size());
    // A binary now and then, so blobs are written concurrently too.
    if (k % 10 == 0) {
      BinaryRow binary = test::sample_binary(std::string(20000 + worker * 100 + k, 'b'),
                                             "w" + std::to_string(worker) + "k" + std::to_string(k));
      if (!db.store_binary(toolchain, test::sample_kernel("w" + std::to_string(worker) + "k" +
                                                           std::to_string(k)),
                           binary)) {
        return 4;
      }
    }
  }
  // The shared key: whoever gets the lease tunes it; the others wait for its decision.
  const std::string owner = "worker" + std::to_string(worker);
  bool tuned_shared = false;
  for (int attempt = 0; attempt < 3000; ++attempt) {
    bool decided = false;
    for (const DecisionRow& d : db.find_decisions(digest("ir"), digest("class"))) {
      decided = decided || d.problem_key == kSharedKey;
    }
    if (decided) break;
    const LeaseResult lease = db.acquire_lease("shared", owner, 60);
    if (lease == LeaseResult::kAcquired) {
      // Decided between our look and our lease (the holder just finished)? Then done.
      bool decided_meanwhile = false;
      for (const DecisionRow& d : db.find_decisions(digest("ir"), digest("class"))) {
        decided_meanwhile = decided_meanwhile || d.problem_key == kSharedKey;
      }
      if (decided_meanwhile) {
        db.release_lease("shared", owner);
        break;
      }
      TuneResult result;
      const std::vector<MeasurementRow> rows = tune_rows(worker, kSharedKey, result);
      std::this_thread::sleep_for(std::chrono::milliseconds(50));  // "measuring" under the lease
      if (!db.store_tuning(device, toolchain, kernel, rows, decision_for(kSharedKey, result))) {
        return 5;
      }
      written += static_cast<int64_t>(rows.size());
      tuned_shared = true;
      db.release_lease("shared", owner);
      break;
    }
    if (lease != LeaseResult::kHeldByOther) return 6;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  std::printf("rows %lld shared %d\n", static_cast<long long>(written), tuned_shared ? 1 : 0);
  return failures == 0 ? 0 : 7;
}

struct Worker {
  pid_t pid;
  int out;  // read end of its stdout
};

TEST(ConcurrencyTest, FourProcessesTuneAndWriteOneDatabaseAtOnce) {
  test::TempDir dir;
  const std::string path = dir.file("cache.sqlite");  // created by the workers, racing
  const std::string start_at = std::to_string(wall_now() + 0.5);
  std::vector<Worker> workers;
  for (int w = 0; w < kWorkers; ++w) {
    int pipe_fds[2];
    ASSERT_EQ(pipe(pipe_fds), 0);
    std::fflush(nullptr);
    const pid_t pid = fork();
    if (pid == 0) {
      dup2(pipe_fds[1], 1);
      close(pipe_fds[0]);
      const std::string id = std::to_string(w);
      execl("/proc/self/exe", "concurrency_test", "--worker", path.c_str(), id.c_str(),
            start_at.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    close(pipe_fds[1]);
    workers.push_back({pid, pipe_fds[0]});
  }
  int64_t expected_rows = 0;
  int shared_tuners = 0;
  for (int w = 0; w < kWorkers; ++w) {
    std::string output;
    char buffer[256];
    ssize_t n;
    while ((n = read(workers[w].out, buffer, sizeof buffer)) > 0) output.append(buffer, static_cast<size_t>(n));
    close(workers[w].out);
    int status = 0;
    waitpid(workers[w].pid, &status, 0);
    ASSERT_TRUE(WIFEXITED(status)) << "worker " << w;
    EXPECT_EQ(WEXITSTATUS(status), 0) << "worker " << w << ": " << output;
    long long rows = 0;
    int shared = 0;
    ASSERT_EQ(std::sscanf(output.c_str(), "rows %lld shared %d", &rows, &shared), 2) << output;
    expected_rows += rows;
    shared_tuners += shared;
  }
  EXPECT_EQ(shared_tuners, 1);

  sqlite::Connection raw(path, true);
  EXPECT_EQ(raw.query_text("PRAGMA integrity_check"), "ok");
  EXPECT_EQ(raw.query_int("SELECT count(*) FROM measurement"), expected_rows);
  EXPECT_EQ(raw.query_int("SELECT count(*) FROM decision"), kWorkers * kKeysPerWorker + 1);
  EXPECT_EQ(raw.query_int("SELECT count(*) FROM binary"), kWorkers * 3);
  EXPECT_EQ(raw.query_int("SELECT count(*) FROM tuning_lease"), 0);
  EXPECT_EQ(raw.query_int("PRAGMA application_id"), kCacheApplicationId);
}

}  // namespace
}  // namespace fuseopt::autotune

int main(int argc, char** argv) {
  if (argc == 5 && std::strcmp(argv[1], "--worker") == 0) {
    return fuseopt::autotune::run_worker(argv[2], std::atoi(argv[3]), std::atof(argv[4]));
  }
  testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}

// The cache database and every way it can go wrong (issue 5, item 6): garbage, truncated and
// foreign files, newer and older schemas, damaged blobs, corruption found while running,
// unwritable folders, a full disk, network filesystems, a busy lock, fork(). Each case must
// warn once, keep running, and never lose what is already good.
#include "autotune/cache_db.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <chrono>
#include <thread>

#include "tests/autotune/test_util.h"

namespace fuseopt::autotune {
namespace {

using test::digest;
using test::file_contents;
using test::files_containing;
using test::run_in_child;
using test::sample_binary;
using test::sample_kernel;
using test::sample_toolchain;
using test::TempDir;
using test::WarningCapture;
using test::write_contents;

bool store(CacheDb& db, const std::string& bytes, const std::string& name = "k") {
  return db.store_binary(sample_toolchain(), sample_kernel(name), sample_binary(bytes, name));
}

std::optional<BinaryRow> find(CacheDb& db, const std::string& name = "k") {
  const BinaryRow key = sample_binary("", name);
  return db.find_binary(key.ir_hash, key.config_hash, key.isa_target, key.toolchain_fp);
}

std::string big_bytes(size_t n, char seed) {
  std::string bytes(n, '\0');
  for (size_t i = 0; i < n; ++i) bytes[i] = static_cast<char>((i * 131 + static_cast<size_t>(seed)) & 0xff);
  return bytes;
}

TEST(CacheDbTest, CreatesAWalDatabaseWithOurIdentity) {
  TempDir dir;
  const std::string path = dir.file("sub/folder/cache.sqlite");
  {
    CacheDb db(path);
    EXPECT_EQ(db.mode(), CacheMode::kReadWrite);
    EXPECT_EQ(db.path(), path);
  }
  sqlite::Connection raw(path, true);
  EXPECT_EQ(raw.query_int("PRAGMA application_id"), kCacheApplicationId);
  EXPECT_EQ(raw.query_int("PRAGMA user_version"), kCacheSchemaVersion);
  EXPECT_EQ(raw.query_text("PRAGMA journal_mode"), "wal");
  EXPECT_EQ(raw.query_int("PRAGMA page_size"), 8192);
  for (const char* table : {"meta", "toolchain", "device", "kernel", "blob", "binary",
                            "measurement", "decision", "tuning_lease"}) {
    sqlite::Statement s(raw, "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = ?1");
    s.bind_text(1, table);
    ASSERT_TRUE(s.step());
    EXPECT_EQ(s.column_int(0), 1) << table;
  }
  struct stat info;
  ASSERT_EQ(stat(dir.file("sub/folder").c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0700u);
}

TEST(CacheDbTest, StoresAndFindsBinariesByTheirWholeKey) {
  TempDir dir;
  CacheDb db(dir.file("cache.sqlite"));
  const std::string bytes = big_bytes(150000, 1);
  ASSERT_TRUE(store(db, bytes));
  const auto found = find(db);
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->bytes, bytes);
  EXPECT_EQ(found->sha256, digest(bytes));
  EXPECT_EQ(found->entry_names, "f_phase0_argv");
  const BinaryRow key = sample_binary("");
  EXPECT_FALSE(db.find_binary(key.ir_hash, key.config_hash, "x86-64-linux-sse41", key.toolchain_fp));
  EXPECT_FALSE(db.find_binary(key.ir_hash, key.config_hash, key.isa_target, digest("other")));
  // The same bytes twice are one blob.
  ASSERT_TRUE(store(db, bytes, "other"));
  EXPECT_EQ(db.count_rows("blob"), 1);
  EXPECT_EQ(db.count_rows("binary"), 2);
  EXPECT_EQ(db.count_rows("no such table"), -1);
}

TEST(CacheDbTest, ABlobWhoseHashDoesNotMatchIsDroppedAndReportedAsAMiss) {
  TempDir dir;
  CacheDb db(dir.file("cache.sqlite"));
  ASSERT_TRUE(store(db, big_bytes(5000, 2)));
  {
    sqlite::Connection raw(dir.file("cache.sqlite"), false);
    raw.set_busy_timeout(5000);
    sqlite::Statement flip(raw, "UPDATE blob SET data = ?1");
    flip.bind_blob(1, big_bytes(5000, 3)).run();
  }
  WarningCapture warnings;
  EXPECT_FALSE(find(db).has_value());
  EXPECT_TRUE(warnings.contains("failed its SHA-256 check")) << warnings.all();
  EXPECT_EQ(db.count_rows("binary"), 0);
  EXPECT_EQ(db.count_rows("blob"), 0);
  ASSERT_TRUE(store(db, big_bytes(5000, 2)));  // and the recompiled one is stored again
  EXPECT_TRUE(find(db).has_value());
}

TEST(CacheDbTest, AGarbageFileIsSetAsideAndReplaced) {
  TempDir dir;
  const std::string path = dir.file("cache.sqlite");
  const std::string garbage = big_bytes(70000, 9);
  write_contents(path, garbage);
  WarningCapture warnings;
  CacheDb db(path);
  EXPECT_EQ(db.mode(), CacheMode::kReadWrite);
  EXPECT_TRUE(warnings.contains("is not an SQLite database")) << warnings.all();
  ASSERT_EQ(warnings.messages.size(), 1u);
  const auto aside = files_containing(dir.path(), ".corrupt-");
  ASSERT_EQ(aside.size(), 1u);
  EXPECT_EQ(file_contents(aside[0]), garbage);  // never data loss: the file is kept
  EXPECT_TRUE(store(db, "bytes"));
  EXPECT_TRUE(find(db).has_value());
}

TEST(CacheDbTest, ATruncatedFileIsSetAsideAndReplaced) {
  for (const size_t keep : {size_t{50}, size_t{0}}) {
    SCOPED_TRACE("keep " + std::to_string(keep));
    TempDir dir;
    const std::string path = dir.file("cache.sqlite");
    {
      CacheDb db(path);
      ASSERT_TRUE(store(db, big_bytes(300000, 4)));
    }  // the last connection checkpoints: everything is in the main file now
    ASSERT_TRUE(files_containing(dir.path(), "-wal").empty());
    const std::string whole = file_contents(path);
    ASSERT_GT(whole.size(), 300000u);
    write_contents(path, whole.substr(0, keep == 0 ? whole.size() / 2 : keep));
    WarningCapture warnings;
    CacheDb db(path);
    EXPECT_EQ(db.mode(), CacheMode::kReadWrite);
    EXPECT_TRUE(warnings.contains("is truncated")) << warnings.all();
    EXPECT_EQ(files_containing(dir.path(), ".corrupt-").size(), 1u);
    EXPECT_FALSE(find(db).has_value());
    EXPECT_TRUE(store(db, "new"));
  }
}

TEST(CacheDbTest, CorruptionFoundWhileRunningSetsTheFileAsideAndCarriesOn) {
  TempDir dir;
  const std::string path = dir.file("cache.sqlite");
  {
    CacheDb db(path);
    ASSERT_TRUE(store(db, big_bytes(200000, 5)));
  }
  // Scribble over every page but the first: the header and schema still read fine.
  std::string bytes = file_contents(path);
  for (size_t i = 8192; i < bytes.size(); ++i) bytes[i] = static_cast<char>(i * 7);
  write_contents(path, bytes);
  WarningCapture warnings;
  CacheDb db(path);
  EXPECT_FALSE(find(db).has_value());
  EXPECT_TRUE(warnings.contains("is damaged")) << warnings.all();
  EXPECT_EQ(files_containing(dir.path(), ".corrupt-").size(), 1u);
  EXPECT_TRUE(store(db, "fresh"));
  EXPECT_EQ(db.verify().integrity, "ok");
}

TEST(CacheDbTest, ANewerSchemaIsUsedReadOnly) {
  TempDir dir;
  const std::string path = dir.file("cache.sqlite");
  {
    CacheDb db(path);
    ASSERT_TRUE(store(db, "from the past"));
  }
  {
    sqlite::Connection raw(path, false);
    raw.execute("PRAGMA user_version = 99");
  }
  WarningCapture warnings;
  CacheDb db(path);
  EXPECT_EQ(db.mode(), CacheMode::kReadOnly);
  EXPECT_TRUE(warnings.contains("newer than this fuseopt")) << warnings.all();
  ASSERT_TRUE(find(db).has_value());  // what it understands is still used
  EXPECT_FALSE(store(db, "from now", "other"));
  sqlite::Connection raw(path, true);
  EXPECT_EQ(raw.query_int("PRAGMA user_version"), 99);  // never downgraded
  EXPECT_TRUE(files_containing(dir.path(), ".corrupt-").empty());
}

TEST(CacheDbTest, AnOlderSchemaIsMigratedKeepingItsData) {
  TempDir dir;
  const std::string path = dir.file("cache.sqlite");
  {
    CacheOptions old_schema;
    old_schema.schema_version = 1;
    CacheDb db(path, old_schema);
    ASSERT_TRUE(store(db, "version one"));
    sqlite::Connection raw(path, true);
    EXPECT_EQ(raw.query_int("PRAGMA user_version"), 1);
  }
  CacheDb db(path);
  EXPECT_EQ(db.mode(), CacheMode::kReadWrite);
  const auto found = find(db);
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->bytes, "version one");
  EXPECT_EQ(db.count_rows("measurement"), 0);  // the tables of version 2 exist
  sqlite::Connection raw(path, true);
  EXPECT_EQ(raw.query_int("PRAGMA user_version"), 2);
}

TEST(CacheDbTest, ADatabaseThatIsNotOursIsSetAside) {
  TempDir dir;
  const std::string path = dir.file("cache.sqlite");
  {
    sqlite::Connection raw(path, false);
    raw.execute("CREATE TABLE photos (id INTEGER PRIMARY KEY, data BLOB)");
  }
  {
    WarningCapture warnings;
    CacheDb db(path);
    EXPECT_EQ(db.mode(), CacheMode::kReadWrite);
    EXPECT_TRUE(warnings.contains("is not a fuseopt cache")) << warnings.all();
  }
  const auto aside = files_containing(dir.path(), ".not-fuseopt-");
  ASSERT_EQ(aside.size(), 1u);
  sqlite::Connection kept(aside[0], true);
  EXPECT_EQ(kept.query_int("SELECT count(*) FROM photos"), 0);  // intact
  // Another application's id, likewise.
  {
    sqlite::Connection raw(dir.file("other.sqlite"), false);
    raw.execute("PRAGMA application_id = 1234");
  }
  WarningCapture warnings;
  CacheDb other(dir.file("other.sqlite"));
  EXPECT_TRUE(warnings.contains("application_id 1234")) << warnings.all();
}

TEST(CacheDbTest, AFolderThatCannotBeCreatedMeansNoCache) {
  TempDir dir;
  write_contents(dir.file("a-file"), "x");
  WarningCapture warnings;
  CacheDb db(dir.file("a-file/cache.sqlite"));
  EXPECT_EQ(db.mode(), CacheMode::kDisabled);
  EXPECT_TRUE(warnings.contains("cannot create the cache folder")) << warnings.all();
  EXPECT_FALSE(store(db, "x"));
  EXPECT_FALSE(find(db).has_value());
  EXPECT_EQ(db.verify().integrity, "no cache");
}

TEST(CacheDbTest, AReadOnlyFolderMeansNoCachingButLookupsStillWork) {
  TempDir dir;
  const std::string folder = dir.file("ro");
  const std::string path = folder + "/cache.sqlite";
  {
    CacheDb db(path);
    ASSERT_TRUE(store(db, "cached before"));
  }
  chmod(dir.path().c_str(), 0755);
  chmod(folder.c_str(), 0555);
  chmod(path.c_str(), 0444);
  // Root ignores permissions: drop to an unprivileged user in a child process.
  const int code = run_in_child([&] {
    if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0)) return 10;
    std::vector<std::string> seen;
    set_warning_handler([&](const std::string& m) { seen.push_back(m); });
    CacheDb db(path);
    if (db.mode() == CacheMode::kReadWrite) return 11;
    if (store(db, "new", "other")) return 12;
    bool warned = false;
    for (const std::string& m : seen) {
      warned = warned || m.find("not cached") != std::string::npos ||
               m.find("running without a cache") != std::string::npos;
    }
    if (!warned) return 13;
    if (seen.size() > 2) return 14;  // one line, not a flood
    return 0;
  });
  EXPECT_EQ(code, 0);
  chmod(folder.c_str(), 0755);
  chmod(path.c_str(), 0644);
  CacheDb db(path);
  EXPECT_TRUE(find(db).has_value());  // nothing was lost
}

TEST(CacheDbTest, AFullDiskMeansNoCachingAndNoDamage) {
  TempDir dir;
  const std::string path = dir.file("cache.sqlite");
  {
    CacheDb db(path);
    ASSERT_TRUE(store(db, "small"));
  }
  const int code = run_in_child([&] {
    // A file-size limit makes every write past it fail as a full disk does (EFBIG).
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit limit = {200000, 200000};
    if (setrlimit(RLIMIT_FSIZE, &limit) != 0) return 10;
    std::vector<std::string> seen;
    set_warning_handler([&](const std::string& m) { seen.push_back(m); });
    CacheDb db(path);
    if (db.mode() != CacheMode::kReadWrite) return 11;
    if (store(db, big_bytes(1000000, 6), "big")) return 12;  // does not fit
    if (seen.empty()) return 13;
    if (!find(db).has_value()) return 14;  // the old entry is still readable
    if (store(db, "tiny", "tiny")) return 15;  // writing stays off after the first failure
    return 0;
  });
  EXPECT_EQ(code, 0);
  CacheDb db(path);
  EXPECT_EQ(db.verify().integrity, "ok");
  EXPECT_TRUE(find(db).has_value());
  EXPECT_TRUE(store(db, big_bytes(1000000, 6), "big"));  // with room again, it works
}

TEST(CacheDbTest, ANetworkFilesystemMovesTheCacheToALocalFolder) {
  TempDir dir;
  CacheOptions options;
  options.is_network_folder = [](const std::string&) { return true; };
  options.local_fallback_folder = dir.file("local");
  WarningCapture warnings;
  CacheDb db(dir.file("nfs/cache.sqlite"), options);
  EXPECT_EQ(db.path(), dir.file("local/cache.sqlite"));
  EXPECT_EQ(db.mode(), CacheMode::kReadWrite);
  EXPECT_TRUE(warnings.contains("network filesystem")) << warnings.all();
}

TEST(CacheDbTest, ABusyLockDropsTheWriteWithAWarning) {
  TempDir dir;
  const std::string path = dir.file("cache.sqlite");
  CacheOptions options;
  options.busy_timeout_ms = 100;
  CacheDb db(path, options);
  sqlite::Connection other(path, false);
  other.execute("BEGIN IMMEDIATE");
  WarningCapture warnings;
  const auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(store(db, "blocked"));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  EXPECT_TRUE(warnings.contains("stayed locked")) << warnings.all();
  EXPECT_FALSE(find(db).has_value());  // reads are not blocked by a writer (WAL)
  other.execute("COMMIT");
  EXPECT_TRUE(store(db, "unblocked"));
}

TEST(CacheDbTest, LeasesKeepTwoOwnersApartAndExpire) {
  TempDir dir;
  CacheDb db(dir.file("cache.sqlite"));
  EXPECT_EQ(db.acquire_lease("key", "a", 60), LeaseResult::kAcquired);
  EXPECT_EQ(db.acquire_lease("key", "b", 60), LeaseResult::kHeldByOther);
  EXPECT_EQ(db.acquire_lease("key", "a", 60), LeaseResult::kAcquired);  // renewing
  EXPECT_EQ(db.acquire_lease("other key", "b", 60), LeaseResult::kAcquired);
  db.release_lease("key", "b");  // not b's to release
  EXPECT_EQ(db.acquire_lease("key", "b", 60), LeaseResult::kHeldByOther);
  db.release_lease("key", "a");
  EXPECT_EQ(db.acquire_lease("key", "b", 0.05), LeaseResult::kAcquired);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(db.acquire_lease("key", "a", 60), LeaseResult::kAcquired);  // b's expired
  CacheDb off("");
  EXPECT_EQ(off.acquire_lease("key", "a", 60), LeaseResult::kUnavailable);
}

MeasurementRow measurement(const std::string& problem, const std::string& config, double ns) {
  MeasurementRow m;
  m.ir_hash = digest("ir k");
  m.problem_key = problem;
  m.device_exact_fp = digest("device");
  m.config_hash = digest(config);
  m.config_json = config;
  m.toolchain_fp = digest("toolchain");
  m.protocol_version = 1;
  m.status = "ok";
  m.n_samples = 10;
  m.median_ns = ns;
  m.env_json = "{}";
  m.measured_at = 1;
  return m;
}

TEST(CacheDbTest, KeepsEveryMeasurementAndOneDecisionPerKey) {
  TempDir dir;
  CacheDb db(dir.file("cache.sqlite"));
  const DeviceRow device{digest("device"), digest("class"), "cpu", "Test CPU", "{}"};
  std::vector<MeasurementRow> rows = {measurement("n:e10.0|t:0", R"({"a":1})", 200),
                                      measurement("n:e10.0|t:0", R"({"a":2})", 100)};
  rows[1].status = "mismatch";
  rows[1].median_ns.reset();
  DecisionRow decision{digest("ir k"), "n:e10.0|t:0", digest("device"), digest("toolchain"),
                       digest(R"({"a":1})"), R"({"a":1})", 0.25, "tuned", digest("space"), 5,
                       false, ""};
  ASSERT_TRUE(db.store_tuning(device, sample_toolchain(), sample_kernel(), rows, decision));
  decision.problem_key = "n:e11.0|t:0";
  ASSERT_TRUE(db.store_tuning(device, sample_toolchain(), sample_kernel(),
                              {measurement("n:e11.0|t:0", R"({"a":1})", 300)}, decision));
  EXPECT_EQ(db.count_rows("measurement"), 3);
  EXPECT_EQ(db.count_rows("decision"), 2);
  const auto decisions = db.find_decisions(digest("ir k"), digest("class"));
  ASSERT_EQ(decisions.size(), 2u);
  EXPECT_EQ(decisions[0].device_class_fp, digest("class"));
  EXPECT_EQ(decisions[0].margin, 0.25);
  EXPECT_TRUE(db.find_decisions(digest("ir k"), digest("another class")).empty());
  const auto measured = db.find_measurements(digest("ir k"), "n:e10.0|t:0", digest("device"));
  ASSERT_EQ(measured.size(), 2u);
  EXPECT_EQ(measured[0].median_ns, 200);  // measured ones first
  EXPECT_EQ(measured[1].status, "mismatch");
  // Re-tuning a key replaces its decision, not adds one.
  decision.config_json = R"({"a":2})";
  ASSERT_TRUE(db.store_tuning(device, sample_toolchain(), sample_kernel(), {}, decision));
  EXPECT_EQ(db.count_rows("decision"), 2);
  const auto listing = db.list_decisions();
  ASSERT_EQ(listing.size(), 2u);
  EXPECT_EQ(listing[0].family, "k");
  EXPECT_EQ(listing[0].device_name, "Test CPU");
  EXPECT_EQ(listing[0].winner_median_ns, 200);
}

TEST(CacheDbTest, VerifyFindsDamagedBlobsAndClearEmptiesEverything) {
  TempDir dir;
  const std::string path = dir.file("cache.sqlite");
  CacheDb db(path);
  ASSERT_TRUE(store(db, "one", "one"));
  ASSERT_TRUE(store(db, "two", "two"));
  VerifyReport report = db.verify();
  EXPECT_TRUE(report.ok());
  EXPECT_EQ(report.blobs_checked, 2);
  {
    sqlite::Connection raw(path, false);
    sqlite::Statement s(raw, "UPDATE blob SET data = ?1 WHERE data = ?2");
    s.bind_blob(1, "TWO").bind_blob(2, "two").run();
  }
  WarningCapture quiet;
  report = db.verify();
  EXPECT_FALSE(report.ok());
  EXPECT_EQ(report.blobs_dropped, 1);
  EXPECT_EQ(db.count_rows("binary"), 1);
  EXPECT_TRUE(db.verify().ok());
  EXPECT_TRUE(db.clear());
  const CacheSummary summary = db.summary();
  EXPECT_EQ(summary.binaries + summary.kernels + summary.blob_bytes + summary.toolchains, 0);
  EXPECT_EQ(db.mode(), CacheMode::kReadWrite);
}

TEST(CacheDbTest, AConnectionIsNeverUsedAcrossFork) {
  TempDir dir;
  const std::string path = dir.file("cache.sqlite");
  CacheDb db(path);
  ASSERT_TRUE(store(db, "parent before"));
  const int code = run_in_child([&] {
    if (!find(db).has_value()) return 1;  // reopened in the child
    return store(db, "child", "child") ? 0 : 2;
  });
  EXPECT_EQ(code, 0);
  EXPECT_TRUE(store(db, "parent after", "after"));
  EXPECT_TRUE(find(db, "child").has_value());
  EXPECT_EQ(db.verify().integrity, "ok");
}

TEST(CacheDbTest, AnEmptyPathIsADisabledCacheThatAnswersEverythingWithAMiss) {
  CacheDb db("");
  EXPECT_EQ(db.mode(), CacheMode::kDisabled);
  EXPECT_FALSE(store(db, "x"));
  EXPECT_FALSE(find(db).has_value());
  EXPECT_TRUE(db.find_decisions("a", "b").empty());
  EXPECT_FALSE(db.clear());
  EXPECT_EQ(db.count_rows("blob"), -1);
}

}  // namespace
}  // namespace fuseopt::autotune

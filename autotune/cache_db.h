// The cache database (docs/autotuning.md, "The cache"): one SQLite file in WAL mode holding
// devices, toolchains, kernels, binaries as content-addressed blobs, every measurement, the
// chosen configuration per (kernel, size bucket, device, toolchain), and tuning leases.
//
// The cache is disposable, never precious: a file that is garbage, truncated or not ours is
// set aside and replaced; a newer schema is opened read-only; a read-only or full disk
// turns writing off. Each of these warns once and never throws, so callers treat every
// failure as a miss. Writes are short BEGIN IMMEDIATE transactions; nothing here measures.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "autotune/sqlite.h"

namespace fuseopt::autotune {

/// 'OPTK' in the file header (PRAGMA application_id): `file(1)` and we know it is ours.
inline constexpr int32_t kCacheApplicationId = 0x4F50544B;
/// The schema this build writes (PRAGMA user_version); migrations lead up to it.
inline constexpr int kCacheSchemaVersion = 2;

enum class CacheMode {
  kReadWrite,
  kReadOnly,  ///< lookups only: a newer schema, or writing failed
  kDisabled,  ///< no database at all
};

struct CacheOptions {
  /// How long a writer waits for another's lock before dropping its write.
  int busy_timeout_ms = 30000;
  /// Says whether a folder is on a network filesystem (WAL is unsafe there); the default
  /// asks statfs. Tests replace it.
  std::function<bool(const std::string& folder)> is_network_folder;
  /// Where the cache goes instead when its folder is on a network filesystem; the default
  /// is $TMPDIR (or /tmp)/fuseopt-<uid>/.
  std::string local_fallback_folder;
  /// The schema to create and expect; only tests of migrations change it.
  int schema_version = kCacheSchemaVersion;
};

// Rows. Digests (ir_hash, *_fp, config_hash, sha256) are the 32 raw bytes.

struct ToolchainRow {
  std::string fp;
  std::string detail_json;
};

struct DeviceRow {
  std::string exact_fp;
  std::string class_fp;
  std::string kind;  ///< "cpu" or "cuda"
  std::string name;
  std::string detail_json;
};

struct KernelRow {
  std::string ir_hash;
  std::string family;  ///< ir::Kernel::config_name(), e.g. "adam_amsgrad0_maximize0"
  std::string codegen_version;
  std::string search_space_hash;
  std::string ir_text;
};

struct BinaryRow {
  std::string ir_hash;
  std::string config_hash;  ///< of the code knobs only
  std::string config_json;
  std::string isa_target;   ///< Halide target string, "sm_90", "compute_80"...
  std::string toolchain_fp;
  std::string format;       ///< "so", "cubin", "ptx", "fatbin", "obj"
  std::string ptx_isa;      ///< for ptx, else empty
  std::string entry_names;  ///< the entry points, space-separated
  std::string launch_json;
  std::string bytes;        ///< empty in listings
  std::string sha256;       ///< filled in by the cache
  int64_t size = 0;         ///< the blob's size, in listings
};

struct MeasurementRow {
  std::string ir_hash;
  std::string problem_key;
  std::string device_exact_fp;
  std::string config_hash;
  std::string config_json;
  std::string toolchain_fp;
  int protocol_version = 0;
  std::string status;  ///< ok, invalid, compile_error, runtime_error, timeout, mismatch
  int64_t n_samples = 0;
  std::optional<double> median_ns, p20_ns, p80_ns, min_ns, mean_ns, rel_stddev, eff_bw_gbs,
      pct_peak_bw;
  std::string env_json;
  int64_t measured_at = 0;
};

struct DecisionRow {
  std::string ir_hash;
  std::string problem_key;
  std::string device_exact_fp;
  std::string toolchain_fp;
  std::string config_hash;
  std::string config_json;
  std::optional<double> margin;  ///< the winner's gain over the default (0.1 = 10% faster)
  std::string source;            ///< tuned, pack, heuristic, user
  std::string search_space_hash;
  int64_t decided_at = 0;
  bool stale = false;
  // Read back only: the class of the device it was made on.
  std::string device_class_fp;
};

/// A decision as `fuseopt cache ls` shows it.
struct DecisionListing {
  DecisionRow decision;
  std::string family;
  std::string device_name;
  std::optional<double> default_median_ns;
  std::optional<double> winner_median_ns;
};

struct CacheSummary {
  int64_t kernels = 0, binaries = 0, blob_bytes = 0, measurements = 0, decisions = 0,
          devices = 0, toolchains = 0, leases = 0;
};

struct VerifyReport {
  std::string integrity;       ///< "ok" or what PRAGMA integrity_check said
  int64_t blobs_checked = 0;
  int64_t blobs_dropped = 0;   ///< whose SHA-256 did not match (removed)
  int64_t foreign_key_problems = 0;
  bool ok() const { return integrity == "ok" && blobs_dropped == 0 && foreign_key_problems == 0; }
};

enum class LeaseResult {
  kAcquired,
  kHeldByOther,
  kUnavailable,  ///< no writable cache: tune without one
};

class CacheDb {
 public:
  /// Opens, creating, migrating or setting aside as needed; never throws for what is wrong
  /// with the file or the disk (it warns and degrades). An empty path is a disabled cache.
  explicit CacheDb(std::string path, CacheOptions options = {});
  ~CacheDb();
  CacheDb(const CacheDb&) = delete;
  CacheDb& operator=(const CacheDb&) = delete;

  CacheMode mode() const;
  bool can_write() const { return mode() == CacheMode::kReadWrite; }
  /// The file in use (the local fallback when the asked-for folder is on a network
  /// filesystem).
  std::string path() const;

  // ---- Binaries --------------------------------------------------------------------------

  /// Stores a binary with its blob, kernel and toolchain rows in one transaction.
  bool store_binary(const ToolchainRow& toolchain, const KernelRow& kernel, BinaryRow binary);
  /// The binary for this key, its SHA-256 verified; a blob that fails is deleted (with a
  /// warning) and reported as a miss.
  std::optional<BinaryRow> find_binary(const std::string& ir_hash, const std::string& config_hash,
                                       const std::string& isa_target,
                                       const std::string& toolchain_fp);
  /// Deletes a binary whose bytes turned out unusable (e.g. the loader refused them).
  void drop_binary(const std::string& ir_hash, const std::string& config_hash,
                   const std::string& isa_target, const std::string& toolchain_fp);

  // ---- Tuning ----------------------------------------------------------------------------

  /// Stores every measurement of one tuning run and its decision, in one transaction.
  bool store_tuning(const DeviceRow& device, const ToolchainRow& toolchain,
                    const KernelRow& kernel, const std::vector<MeasurementRow>& measurements,
                    const std::optional<DecisionRow>& decision);
  /// Every decision for `ir_hash` made on a device of class `device_class_fp`.
  std::vector<DecisionRow> find_decisions(const std::string& ir_hash,
                                          const std::string& device_class_fp);
  /// The measurements of one key, fastest first.
  std::vector<MeasurementRow> find_measurements(const std::string& ir_hash,
                                                const std::string& problem_key,
                                                const std::string& device_exact_fp);

  /// Takes the lease on `key` for `owner` until now + `ttl_seconds`, unless another owner
  /// holds an unexpired one.
  LeaseResult acquire_lease(const std::string& key, const std::string& owner, double ttl_seconds);
  void release_lease(const std::string& key, const std::string& owner);

  // ---- Maintenance (`fuseopt cache`) -------------------------------------------------------

  CacheSummary summary();
  std::vector<DecisionListing> list_decisions();
  /// Kernels whose hex ir_hash starts with `key` (case-insensitive) or whose family is `key`.
  std::vector<KernelRow> find_kernels(const std::string& key);
  std::vector<BinaryRow> list_binaries(const std::string& ir_hash);  ///< without bytes
  std::vector<DecisionListing> list_decisions_for(const std::string& ir_hash);
  std::vector<MeasurementRow> list_measurements(const std::string& ir_hash);
  /// PRAGMA integrity_check, foreign_key_check and every blob's SHA-256 (bad blobs are
  /// dropped). Needs a readable database; reports "no cache" otherwise.
  VerifyReport verify();
  /// Moves the WAL's content into the database when nobody is in the way (after tuning).
  void checkpoint();
  /// Deletes every row (the file stays, so other processes keep a valid database).
  bool clear();
  /// Rows in one table, for tests and reports ("measurement", "decision", ...); -1 if the
  /// table is unknown or the cache is off.
  int64_t count_rows(const std::string& table);

 private:
  template <typename Result, typename Body>
  Result guarded(const char* what, bool writes, Result fallback, Body body);
  bool ensure_open();
  void open_database();
  void open_connection();
  void initialize_or_migrate(sqlite::Connection& db);
  bool set_aside(const std::string& reason, const std::string& suffix);
  void maybe_quick_check(sqlite::Connection& db);

  mutable std::mutex mutex_;
  std::string path_;
  CacheOptions options_;
  std::unique_ptr<sqlite::Connection> db_;
  CacheMode mode_ = CacheMode::kDisabled;
  int opened_by_pid_ = 0;
  bool reopen_attempted_ = false;
};

}  // namespace fuseopt::autotune

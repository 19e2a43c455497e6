// The cache database: opening (with every way a file can be wrong), the schema and its
// migrations, and short transactions for reads and writes. All SQL is constant text with
// bound parameters; the pragmas are the handful docs/autotuning.md lists.
#include "autotune/cache_db.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/types.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <set>
#include <thread>

#include "autotune/warnings.h"
#include "support/sha256.h"

namespace fuseopt::autotune {
namespace {

// ---- The schema -------------------------------------------------------------------------------
// Numbered migrations; each ends by setting user_version to its number. They run in one
// BEGIN IMMEDIATE transaction, so a process sees either none or all of a migration.

struct Migration {
  int version;
  const char* sql;
};

constexpr Migration kMigrations[] = {
    {1, R"sql(
CREATE TABLE meta (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
) STRICT;
CREATE TABLE toolchain (
  toolchain_fp BLOB PRIMARY KEY,
  detail_json  TEXT NOT NULL
) STRICT;
CREATE TABLE kernel (
  ir_hash           BLOB PRIMARY KEY,
  family            TEXT NOT NULL,
  codegen_version   TEXT NOT NULL,
  search_space_hash BLOB NOT NULL,
  ir_text           TEXT
) STRICT;
CREATE TABLE blob (
  sha256 BLOB PRIMARY KEY,
  size   INTEGER NOT NULL,
  data   BLOB NOT NULL
) STRICT;
CREATE TABLE binary (
  ir_hash      BLOB NOT NULL REFERENCES kernel(ir_hash),
  config_hash  BLOB NOT NULL,
  config_json  TEXT NOT NULL,
  isa_target   TEXT NOT NULL,
  toolchain_fp BLOB NOT NULL REFERENCES toolchain(toolchain_fp),
  format       TEXT NOT NULL CHECK (format IN ('cubin','ptx','fatbin','obj','so')),
  ptx_isa      TEXT,
  blob_sha256  BLOB NOT NULL REFERENCES blob(sha256),
  entry_name   TEXT NOT NULL,
  launch_json  TEXT NOT NULL,
  created_at   INTEGER NOT NULL,
  last_used_at INTEGER NOT NULL,
  PRIMARY KEY (ir_hash, config_hash, isa_target, toolchain_fp)
) STRICT, WITHOUT ROWID;
CREATE INDEX binary_by_blob ON binary(blob_sha256);
PRAGMA user_version = 1;
)sql"},
    {2, R"sql(
CREATE TABLE device (
  device_exact_fp BLOB PRIMARY KEY,
  device_class_fp BLOB NOT NULL,
  kind            TEXT NOT NULL CHECK (kind IN ('cuda','cpu')),
  name            TEXT NOT NULL,
  detail_json     TEXT NOT NULL
) STRICT;
CREATE INDEX device_by_class ON device(device_class_fp);
CREATE TABLE measurement (
  ir_hash          BLOB NOT NULL,
  problem_key      TEXT NOT NULL,
  device_exact_fp  BLOB NOT NULL REFERENCES device(device_exact_fp),
  config_hash      BLOB NOT NULL,
  config_json      TEXT NOT NULL,
  toolchain_fp     BLOB NOT NULL,
  protocol_version INTEGER NOT NULL,
  status           TEXT NOT NULL CHECK (status IN
                     ('ok','invalid','compile_error','runtime_error','timeout','mismatch')),
  n_samples INTEGER, median_ns REAL, p20_ns REAL, p80_ns REAL, min_ns REAL, mean_ns REAL,
  rel_stddev REAL, eff_bw_gbs REAL, pct_peak_bw REAL,
  env_json         TEXT,
  measured_at      INTEGER NOT NULL,
  PRIMARY KEY (ir_hash, problem_key, device_exact_fp, config_hash, toolchain_fp, protocol_version)
) STRICT, WITHOUT ROWID;
CREATE TABLE decision (
  ir_hash             BLOB NOT NULL,
  problem_key         TEXT NOT NULL,
  device_exact_fp     BLOB NOT NULL,
  toolchain_fp        BLOB NOT NULL,
  config_hash         BLOB NOT NULL,
  config_json         TEXT NOT NULL,
  margin_vs_runner_up REAL,
  source              TEXT NOT NULL CHECK (source IN ('tuned','pack','heuristic','user')),
  search_space_hash   BLOB NOT NULL,
  decided_at          INTEGER NOT NULL,
  stale               INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (ir_hash, problem_key, device_exact_fp, toolchain_fp)
) STRICT, WITHOUT ROWID;
CREATE TABLE tuning_lease (
  lease_key  TEXT PRIMARY KEY,
  owner      TEXT NOT NULL,
  expires_at REAL NOT NULL
) STRICT;
PRAGMA user_version = 2;
)sql"},
};

// 0x4F50544B, 'OPTK'.
constexpr const char* kSetApplicationId = "PRAGMA application_id = 1330664523";
static_assert(kCacheApplicationId == 1330664523);

// Run quick_check at most this often (it reads the whole file once).
constexpr int64_t kQuickCheckSeconds = 7 * 24 * 3600;
// last_used_at is coarse: updated at most this often, so a lookup rarely writes.
constexpr int64_t kLastUsedResolution = 3600;

int64_t unix_now() { return static_cast<int64_t>(std::time(nullptr)); }

double unix_now_precise() {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// A database header that is not ours to parse tells us the file is set aside.
class NotOurs : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A migration that failed for a reason other than the disk or a lock.
class MigrationFailed : public std::runtime_error {
 public:
  MigrationFailed(int from, const std::string& message)
      : std::runtime_error(message), from_version(from) {}
  int from_version;
};

std::string parent_folder(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

std::string file_name(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// mkdir -p with mode 0700 for what it creates; "" on success, else the reason.
std::string make_folders(const std::string& folder) {
  if (folder.empty() || folder == "/" || folder == ".") return "";
  struct stat info;
  if (stat(folder.c_str(), &info) == 0) {
    return S_ISDIR(info.st_mode) ? "" : "it is not a folder";
  }
  if (std::string parent_error = make_folders(parent_folder(folder)); !parent_error.empty()) {
    return parent_error;
  }
  if (mkdir(folder.c_str(), 0700) != 0 && errno != EEXIST) return std::strerror(errno);
  return "";
}

// statfs magic numbers of filesystems where SQLite's WAL (shared memory, POSIX locks) is
// unsafe: NFS, SMB/CIFS, Lustre, GPFS, CephFS, FUSE, 9p, AFS.
bool is_network_filesystem_type(int64_t type) {
  static const std::set<int64_t> kNetwork = {
      0x6969,      0x517B,     0xFF534D42, 0xFE534D42, 0x0BD00BD0, 0x47504653,
      0x00C36400,  0x65735546, 0x01021997, 0x5346414F, 0x6B414653,
  };
  return kNetwork.count(type) != 0;
}

bool statfs_says_network(const std::string& folder) {
  struct statfs info;
  if (statfs(folder.c_str(), &info) != 0) return false;
  return is_network_filesystem_type(static_cast<int64_t>(info.f_type));
}

std::string default_local_folder() {
  const char* tmp = std::getenv("TMPDIR");
  std::string base = tmp != nullptr && tmp[0] == '/' ? tmp : "/tmp";
  return base + "/fuseopt-" + std::to_string(getuid());
}

enum class FileState { kMissing, kEmpty, kOk, kNotDatabase, kTruncated };

uint32_t big_endian(const unsigned char* p, int bytes) {
  uint32_t value = 0;
  for (int i = 0; i < bytes; ++i) value = (value << 8) | p[i];
  return value;
}

// Reads the 100-byte header: a file that is not SQLite, or shorter than its header says
// (when no WAL could hold the rest), is recognised before SQLite sees it.
FileState inspect_file(const std::string& path) {
  struct stat info;
  if (stat(path.c_str(), &info) != 0) return FileState::kMissing;
  if (info.st_size == 0) return FileState::kEmpty;
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return FileState::kOk;  // unreadable: let SQLite report it
  unsigned char header[100];
  const ssize_t got = pread(fd, header, sizeof header, 0);
  close(fd);
  static const char kMagic[] = "SQLite format 3";  // 16 bytes with its NUL
  if (got < 16 || std::memcmp(header, kMagic, 16) != 0) return FileState::kNotDatabase;
  if (got < 100) return FileState::kTruncated;
  uint32_t page_size = big_endian(header + 16, 2);
  if (page_size == 1) page_size = 65536;
  const uint32_t pages = big_endian(header + 28, 4);
  const bool size_valid = big_endian(header + 24, 4) == big_endian(header + 92, 4);
  struct stat wal;
  const bool has_wal = stat((path + "-wal").c_str(), &wal) == 0 && wal.st_size > 0;
  if (size_valid && !has_wal && pages > 0 &&
      static_cast<int64_t>(info.st_size) < static_cast<int64_t>(pages) * page_size) {
    return FileState::kTruncated;
  }
  return FileState::kOk;
}

// Switches to WAL. Changing the journal mode can fail with SQLITE_BUSY without consulting
// the busy handler (it needs the database to itself for a moment), so retry here.
std::string switch_to_wal(sqlite::Connection& db, int timeout_ms) {
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (true) {
    try {
      return db.query_text("PRAGMA journal_mode = WAL");
    } catch (const sqlite::Error& error) {
      if (!error.is_busy() || std::chrono::steady_clock::now() > give_up) throw;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

std::string timestamp() {
  char text[32];
  const std::time_t now = std::time(nullptr);
  struct tm parts;
  localtime_r(&now, &parts);
  std::strftime(text, sizeof text, "%Y%m%d-%H%M%S", &parts);
  return text;
}

std::optional<double> optional_column(const sqlite::Statement& s, int column) {
  return s.column_optional_double(column);
}

void bind_optional(sqlite::Statement& s, int index, const std::optional<double>& value) {
  if (value) {
    s.bind(index, *value);
  } else {
    s.bind_null(index);
  }
}

MeasurementRow read_measurement(const sqlite::Statement& s) {
  // Column order of kMeasurementColumns.
  MeasurementRow m;
  m.ir_hash = s.column_blob(0);
  m.problem_key = s.column_text(1);
  m.device_exact_fp = s.column_blob(2);
  m.config_hash = s.column_blob(3);
  m.config_json = s.column_text(4);
  m.toolchain_fp = s.column_blob(5);
  m.protocol_version = static_cast<int>(s.column_int(6));
  m.status = s.column_text(7);
  m.n_samples = s.column_int(8);
  m.median_ns = optional_column(s, 9);
  m.p20_ns = optional_column(s, 10);
  m.p80_ns = optional_column(s, 11);
  m.min_ns = optional_column(s, 12);
  m.mean_ns = optional_column(s, 13);
  m.rel_stddev = optional_column(s, 14);
  m.eff_bw_gbs = optional_column(s, 15);
  m.pct_peak_bw = optional_column(s, 16);
  m.env_json = s.column_text(17);
  m.measured_at = s.column_int(18);
  return m;
}

#define FUSEOPT_MEASUREMENT_COLUMNS                                                           \
  "ir_hash, problem_key, device_exact_fp, config_hash, config_json, toolchain_fp, "          \
  "protocol_version, status, n_samples, median_ns, p20_ns, p80_ns, min_ns, mean_ns, "        \
  "rel_stddev, eff_bw_gbs, pct_peak_bw, env_json, measured_at"

#define FUSEOPT_DECISION_COLUMNS                                                             \
  "d.ir_hash, d.problem_key, d.device_exact_fp, d.toolchain_fp, d.config_hash, "            \
  "d.config_json, d.margin_vs_runner_up, d.source, d.search_space_hash, d.decided_at, "     \
  "d.stale, v.device_class_fp"

DecisionRow read_decision(const sqlite::Statement& s) {
  DecisionRow d;
  d.ir_hash = s.column_blob(0);
  d.problem_key = s.column_text(1);
  d.device_exact_fp = s.column_blob(2);
  d.toolchain_fp = s.column_blob(3);
  d.config_hash = s.column_blob(4);
  d.config_json = s.column_text(5);
  d.margin = optional_column(s, 6);
  d.source = s.column_text(7);
  d.search_space_hash = s.column_blob(8);
  d.decided_at = s.column_int(9);
  d.stale = s.column_int(10) != 0;
  d.device_class_fp = s.column_blob(11);
  return d;
}

void delete_blob(sqlite::Connection& db, const std::string& sha256) {
  sqlite::Statement binaries(db, "DELETE FROM binary WHERE blob_sha256 = ?1");
  binaries.bind_blob(1, sha256).run();
  sqlite::Statement blob(db, "DELETE FROM blob WHERE sha256 = ?1");
  blob.bind_blob(1, sha256).run();
}

}  // namespace

// ---- Opening ---------------------------------------------------------------------------------

CacheDb::CacheDb(std::string path, CacheOptions options)
    : path_(std::move(path)), options_(std::move(options)) {
  std::lock_guard<std::mutex> lock(mutex_);
  open_database();
}

CacheDb::~CacheDb() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (db_ && opened_by_pid_ != getpid()) db_->abandon();  // the parent's, across fork()
  db_.reset();
}

CacheMode CacheDb::mode() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return mode_;
}

std::string CacheDb::path() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return path_;
}

bool CacheDb::ensure_open() {
  if (db_ && opened_by_pid_ != getpid()) {
    // A connection must not be used across fork(): leave the parent's alone, open anew.
    db_->abandon();
    db_.reset();
    mode_ = CacheMode::kDisabled;
    open_database();
  }
  return db_ != nullptr && mode_ != CacheMode::kDisabled;
}

bool CacheDb::set_aside(const std::string& reason, const std::string& suffix) {
  db_.reset();
  mode_ = CacheMode::kDisabled;
  const std::string aside = path_ + "." + suffix + "-" + timestamp() + "-" + std::to_string(getpid());
  // The database and its -wal and -shm go together: a WAL without its database (or the
  // other way round) is how SQLite files get corrupted.
  if (std::rename(path_.c_str(), aside.c_str()) != 0 && errno != ENOENT) {
    warn("cache " + path_ + " " + reason + ", and it cannot be moved aside (" +
         std::strerror(errno) + "): running without a cache");
    return false;
  }
  for (const char* extra : {"-wal", "-shm"}) {
    const std::string from = path_ + extra;
    std::rename(from.c_str(), (aside + extra).c_str());
  }
  warn("cache " + path_ + " " + reason + "; moved it to " + aside + " and started a new one");
  return true;
}

void CacheDb::open_database() {
  db_.reset();
  mode_ = CacheMode::kDisabled;
  opened_by_pid_ = getpid();
  if (path_.empty()) return;

  std::string folder = parent_folder(path_);
  if (std::string error = make_folders(folder); !error.empty()) {
    warn("cannot create the cache folder " + folder + " (" + error + "): running without a cache");
    return;
  }
  const bool network = options_.is_network_folder ? options_.is_network_folder(folder)
                                                  : statfs_says_network(folder);
  if (network) {
    const std::string local = options_.local_fallback_folder.empty()
                                  ? default_local_folder()
                                  : options_.local_fallback_folder;
    warn("the cache folder " + folder + " is on a network filesystem, where SQLite's WAL is "
         "unsafe; using " + local + " instead");
    path_ = local + "/" + file_name(path_);
    folder = local;
    if (std::string error = make_folders(folder); !error.empty()) {
      warn("cannot create the cache folder " + folder + " (" + error +
           "): running without a cache");
      return;
    }
  }

  switch (inspect_file(path_)) {
    case FileState::kNotDatabase:
      if (!set_aside("is not an SQLite database", "corrupt")) return;
      break;
    case FileState::kTruncated:
      if (!set_aside("is truncated", "corrupt")) return;
      break;
    case FileState::kMissing:
    case FileState::kEmpty:
    case FileState::kOk:
      break;
  }

  for (int attempt = 0; attempt < 3; ++attempt) {
    try {
      open_connection();
      return;
    } catch (const NotOurs& error) {
      if (!set_aside(error.what(), "not-fuseopt")) return;
    } catch (const MigrationFailed& error) {
      if (!set_aside(std::string("could not be migrated from schema ") +
                         std::to_string(error.from_version) + " (" + error.what() + ")",
                     "old-v" + std::to_string(error.from_version))) {
        return;
      }
    } catch (const sqlite::Error& error) {
      db_.reset();
      mode_ = CacheMode::kDisabled;
      if (error.is_corruption()) {
        if (!set_aside(std::string("is damaged (") + error.what() + ")", "corrupt")) return;
        continue;
      }
      if (error.is_unwritable() || error.is_busy()) {
        warn("cannot write to the cache " + path_ + " (" + error.what() +
             "): results are not cached");
        // Lookups may still work on what is there.
        try {
          auto db = std::make_unique<sqlite::Connection>(path_, true);
          db->set_busy_timeout(options_.busy_timeout_ms);
          if (db->query_int("PRAGMA application_id") == kCacheApplicationId) {
            db_ = std::move(db);
            mode_ = CacheMode::kReadOnly;
          }
        } catch (const sqlite::Error&) {
        }
        return;
      }
      warn("cannot open the cache " + path_ + " (" + error.what() + "): running without a cache");
      return;
    }
  }
}

void CacheDb::open_connection() {
  auto db = std::make_unique<sqlite::Connection>(path_, false);
  db->set_busy_timeout(options_.busy_timeout_ms);
  // One read transaction, so the three answers come from the same snapshot: another
  // process may be creating the schema right now.
  db->execute("BEGIN");
  const int64_t application_id = db->query_int("PRAGMA application_id");
  const int64_t version = db->query_int("PRAGMA user_version");
  const int64_t tables = db->query_int("SELECT count(*) FROM sqlite_schema");
  db->execute("COMMIT");
  if (application_id != 0 && application_id != kCacheApplicationId) {
    throw NotOurs("is not a fuseopt cache (application_id " + std::to_string(application_id) + ")");
  }
  if (application_id == 0 && version == 0 && tables > 0) {
    throw NotOurs("is not a fuseopt cache (an SQLite database without our application_id)");
  }
  if (version > options_.schema_version) {
    // A newer fuseopt wrote it: never downgrade, never write. Read what we understand.
    db.reset();
    auto reader = std::make_unique<sqlite::Connection>(path_, true);
    reader->set_busy_timeout(options_.busy_timeout_ms);
    db_ = std::move(reader);
    mode_ = CacheMode::kReadOnly;
    warn("cache " + path_ + " has schema " + std::to_string(version) + ", newer than this " +
         "fuseopt's " + std::to_string(options_.schema_version) + ": using it read-only");
    return;
  }
  if (db->is_read_only()) {
    db_ = std::move(db);
    mode_ = CacheMode::kReadOnly;
    warn("cache " + path_ + " is read-only: results are not cached");
    if (version < options_.schema_version) {  // cannot migrate: unusable
      db_.reset();
      mode_ = CacheMode::kDisabled;
    }
    return;
  }
  if (application_id == 0 || version < options_.schema_version) initialize_or_migrate(*db);

  db->execute("PRAGMA synchronous = NORMAL");
  db->execute("PRAGMA foreign_keys = ON");
  db->execute("PRAGMA journal_size_limit = 67108864");
  if (db->query_text("PRAGMA journal_mode") != "wal") {
    // Pragmas fail silently: read the mode back.
    if (switch_to_wal(*db, options_.busy_timeout_ms) != "wal") {
      warn("cache " + path_ + " could not be switched to WAL mode; concurrent use will be slower");
    }
  }
  maybe_quick_check(*db);
  db_ = std::move(db);
  mode_ = CacheMode::kReadWrite;
}

void CacheDb::initialize_or_migrate(sqlite::Connection& db) {
  // page_size and WAL must be set outside a transaction, before anything writes page 1;
  // both are no-ops once another process has done them.
  if (db.query_int("PRAGMA user_version") == 0) {
    db.execute("PRAGMA page_size = 8192");
    switch_to_wal(db, options_.busy_timeout_ms);
  }
  sqlite::WriteTransaction transaction(db);
  // Re-read under the write lock: another process may have created or migrated it.
  const int64_t application_id = db.query_int("PRAGMA application_id");
  const int64_t version = db.query_int("PRAGMA user_version");
  if (application_id != 0 && application_id != kCacheApplicationId) {
    throw NotOurs("is not a fuseopt cache (application_id " + std::to_string(application_id) + ")");
  }
  if (version >= options_.schema_version && application_id == kCacheApplicationId) return;
  try {
    for (const Migration& migration : kMigrations) {
      if (migration.version <= version || migration.version > options_.schema_version) continue;
      db.execute(migration.sql);
    }
    if (application_id == 0) {
      db.execute(kSetApplicationId);
      sqlite::Statement meta(db,
                             "INSERT OR REPLACE INTO meta(key, value) VALUES "
                             "('created_at', ?1), ('created_by', ?2), ('last_quick_check_at', ?1)");
      meta.bind_text(1, std::to_string(unix_now())).bind_text(2, "fuseopt").run();
    }
  } catch (const sqlite::Error& error) {
    if (error.is_busy() || error.is_unwritable() || error.is_corruption()) throw;
    throw MigrationFailed(static_cast<int>(version), error.what());
  }
  transaction.commit();
}

void CacheDb::maybe_quick_check(sqlite::Connection& db) {
  sqlite::Statement last(db, "SELECT value FROM meta WHERE key = 'last_quick_check_at'");
  int64_t checked_at = 0;
  if (last.step()) {
    try {
      checked_at = std::stoll(last.column_text(0));
    } catch (const std::exception&) {
      checked_at = 0;
    }
  }
  if (unix_now() - checked_at < kQuickCheckSeconds) return;
  const std::string result = db.query_text("PRAGMA quick_check");
  if (result != "ok") throw sqlite::Error(11 /* SQLITE_CORRUPT */, "quick_check: " + result);
  sqlite::WriteTransaction transaction(db);
  sqlite::Statement update(db,
                           "INSERT OR REPLACE INTO meta(key, value) VALUES ('last_quick_check_at', ?1)");
  update.bind_text(1, std::to_string(unix_now())).run();
  transaction.commit();
}

template <typename Result, typename Body>
Result CacheDb::guarded(const char* what, bool writes, Result fallback, Body body) {
  std::lock_guard<std::mutex> lock(mutex_);
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (!ensure_open()) return fallback;
    if (writes && mode_ != CacheMode::kReadWrite) return fallback;
    try {
      return body(*db_);
    } catch (const sqlite::Error& error) {
      if (error.is_corruption()) {
        if (!set_aside(std::string("is damaged (") + error.what() + ")", "corrupt")) {
          return fallback;
        }
        open_database();
        continue;  // once more, on the fresh database
      }
      if (error.is_busy()) {
        warn("cache " + path_ + " stayed locked by another process for " +
             std::to_string(options_.busy_timeout_ms / 1000) + " s; " + what + " skipped");
        return fallback;
      }
      if (error.is_unwritable()) {
        mode_ = CacheMode::kReadOnly;
        warn("cannot write to the cache " + path_ + " (" + error.what() +
             "): results are not cached from now on");
        return fallback;
      }
      warn("cache " + path_ + ": " + what + ": " + error.what());
      return fallback;
    }
  }
  return fallback;
}

// ---- Binaries ----------------------------------------------------------------------------------

namespace {

void put_toolchain(sqlite::Connection& db, const ToolchainRow& toolchain) {
  sqlite::Statement s(db,
                      "INSERT INTO toolchain(toolchain_fp, detail_json) VALUES (?1, ?2) "
                      "ON CONFLICT(toolchain_fp) DO NOTHING");
  s.bind_blob(1, toolchain.fp).bind_text(2, toolchain.detail_json).run();
}

void put_kernel(sqlite::Connection& db, const KernelRow& kernel) {
  sqlite::Statement s(db,
                      "INSERT INTO kernel(ir_hash, family, codegen_version, search_space_hash, "
                      "ir_text) VALUES (?1, ?2, ?3, ?4, ?5) "
                      "ON CONFLICT(ir_hash) DO UPDATE SET search_space_hash = "
                      "excluded.search_space_hash, codegen_version = excluded.codegen_version");
  s.bind_blob(1, kernel.ir_hash)
      .bind_text(2, kernel.family)
      .bind_text(3, kernel.codegen_version)
      .bind_blob(4, kernel.search_space_hash)
      .bind_text(5, kernel.ir_text)
      .run();
}

void put_device(sqlite::Connection& db, const DeviceRow& device) {
  sqlite::Statement s(db,
                      "INSERT INTO device(device_exact_fp, device_class_fp, kind, name, "
                      "detail_json) VALUES (?1, ?2, ?3, ?4, ?5) "
                      "ON CONFLICT(device_exact_fp) DO NOTHING");
  s.bind_blob(1, device.exact_fp)
      .bind_blob(2, device.class_fp)
      .bind_text(3, device.kind)
      .bind_text(4, device.name)
      .bind_text(5, device.detail_json)
      .run();
}

}  // namespace

bool CacheDb::store_binary(const ToolchainRow& toolchain, const KernelRow& kernel,
                           BinaryRow binary) {
  binary.sha256 = support::digest_bytes(support::sha256(binary.bytes));
  return guarded("storing a binary", true, false, [&](sqlite::Connection& db) {
    sqlite::WriteTransaction transaction(db);
    put_toolchain(db, toolchain);
    put_kernel(db, kernel);
    sqlite::Statement blob(db,
                           "INSERT INTO blob(sha256, size, data) VALUES (?1, ?2, ?3) "
                           "ON CONFLICT(sha256) DO NOTHING");
    blob.bind_blob(1, binary.sha256)
        .bind(2, static_cast<int64_t>(binary.bytes.size()))
        .bind_blob(3, binary.bytes)
        .run();
    sqlite::Statement row(
        db,
        "INSERT INTO binary(ir_hash, config_hash, config_json, isa_target, toolchain_fp, "
        "format, ptx_isa, blob_sha256, entry_name, launch_json, created_at, last_used_at) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11) "
        "ON CONFLICT(ir_hash, config_hash, isa_target, toolchain_fp) DO UPDATE SET "
        "config_json = excluded.config_json, format = excluded.format, ptx_isa = "
        "excluded.ptx_isa, blob_sha256 = excluded.blob_sha256, entry_name = "
        "excluded.entry_name, launch_json = excluded.launch_json, last_used_at = "
        "excluded.last_used_at");
    row.bind_blob(1, binary.ir_hash)
        .bind_blob(2, binary.config_hash)
        .bind_text(3, binary.config_json)
        .bind_text(4, binary.isa_target)
        .bind_blob(5, binary.toolchain_fp)
        .bind_text(6, binary.format);
    if (binary.ptx_isa.empty()) {
      row.bind_null(7);
    } else {
      row.bind_text(7, binary.ptx_isa);
    }
    row.bind_blob(8, binary.sha256)
        .bind_text(9, binary.entry_names)
        .bind_text(10, binary.launch_json)
        .bind(11, unix_now())
        .run();
    transaction.commit();
    return true;
  });
}

std::optional<BinaryRow> CacheDb::find_binary(const std::string& ir_hash,
                                              const std::string& config_hash,
                                              const std::string& isa_target,
                                              const std::string& toolchain_fp) {
  return guarded(
      "reading a binary", false, std::optional<BinaryRow>(),
      [&](sqlite::Connection& db) -> std::optional<BinaryRow> {
        BinaryRow row;
        int64_t last_used = 0;
        {
          sqlite::Statement s(
              db,
              "SELECT b.config_json, b.format, b.ptx_isa, b.blob_sha256, b.entry_name, "
              "b.launch_json, b.last_used_at, blob.data FROM binary b JOIN blob ON "
              "blob.sha256 = b.blob_sha256 WHERE b.ir_hash = ?1 AND b.config_hash = ?2 AND "
              "b.isa_target = ?3 AND b.toolchain_fp = ?4");
          s.bind_blob(1, ir_hash).bind_blob(2, config_hash).bind_text(3, isa_target);
          s.bind_blob(4, toolchain_fp);
          if (!s.step()) return std::nullopt;
          row.ir_hash = ir_hash;
          row.config_hash = config_hash;
          row.isa_target = isa_target;
          row.toolchain_fp = toolchain_fp;
          row.config_json = s.column_text(0);
          row.format = s.column_text(1);
          row.ptx_isa = s.column_text(2);
          row.sha256 = s.column_blob(3);
          row.entry_names = s.column_text(4);
          row.launch_json = s.column_text(5);
          last_used = s.column_int(6);
          row.bytes = s.column_blob(7);
        }
        if (support::digest_bytes(support::sha256(row.bytes)) != row.sha256) {
          warn("a cached binary in " + path_ + " failed its SHA-256 check (" +
               support::to_hex(support::sha256(row.bytes)).substr(0, 12) +
               "...); dropped it, compiling again");
          if (mode_ == CacheMode::kReadWrite) {
            try {
              sqlite::WriteTransaction transaction(db);
              delete_blob(db, row.sha256);
              transaction.commit();
            } catch (const sqlite::Error& error) {
              if (error.is_corruption()) throw;
            }
          }
          return std::nullopt;
        }
        if (mode_ == CacheMode::kReadWrite && unix_now() - last_used > kLastUsedResolution) {
          try {
            sqlite::WriteTransaction transaction(db);
            sqlite::Statement touch(db,
                                    "UPDATE binary SET last_used_at = ?5 WHERE ir_hash = ?1 AND "
                                    "config_hash = ?2 AND isa_target = ?3 AND toolchain_fp = ?4");
            touch.bind_blob(1, ir_hash).bind_blob(2, config_hash).bind_text(3, isa_target);
            touch.bind_blob(4, toolchain_fp).bind(5, unix_now()).run();
            transaction.commit();
          } catch (const sqlite::Error& error) {
            if (error.is_corruption()) throw;  // a busy or full disk only costs the timestamp
          }
        }
        return row;
      });
}

void CacheDb::drop_binary(const std::string& ir_hash, const std::string& config_hash,
                          const std::string& isa_target, const std::string& toolchain_fp) {
  guarded("dropping a binary", true, false, [&](sqlite::Connection& db) {
    sqlite::WriteTransaction transaction(db);
    sqlite::Statement find(db,
                           "SELECT blob_sha256 FROM binary WHERE ir_hash = ?1 AND config_hash = "
                           "?2 AND isa_target = ?3 AND toolchain_fp = ?4");
    find.bind_blob(1, ir_hash).bind_blob(2, config_hash).bind_text(3, isa_target);
    find.bind_blob(4, toolchain_fp);
    if (find.step()) {
      const std::string sha = find.column_blob(0);
      delete_blob(db, sha);
    }
    transaction.commit();
    return true;
  });
}

// ---- Tuning ------------------------------------------------------------------------------------

bool CacheDb::store_tuning(const DeviceRow& device, const ToolchainRow& toolchain,
                           const KernelRow& kernel, const std::vector<MeasurementRow>& measurements,
                           const std::optional<DecisionRow>& decision) {
  return guarded("storing tuning results", true, false, [&](sqlite::Connection& db) {
    sqlite::WriteTransaction transaction(db);
    put_device(db, device);
    put_toolchain(db, toolchain);
    put_kernel(db, kernel);
    sqlite::Statement m(
        db,
        "INSERT INTO measurement(" FUSEOPT_MEASUREMENT_COLUMNS
        ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, "
        "?18, ?19) ON CONFLICT(ir_hash, problem_key, device_exact_fp, config_hash, "
        "toolchain_fp, protocol_version) DO UPDATE SET status = excluded.status, n_samples = "
        "excluded.n_samples, median_ns = excluded.median_ns, p20_ns = excluded.p20_ns, "
        "p80_ns = excluded.p80_ns, min_ns = excluded.min_ns, mean_ns = excluded.mean_ns, "
        "rel_stddev = excluded.rel_stddev, eff_bw_gbs = excluded.eff_bw_gbs, pct_peak_bw = "
        "excluded.pct_peak_bw, env_json = excluded.env_json, measured_at = "
        "excluded.measured_at");
    for (const MeasurementRow& row : measurements) {
      sqlite::Statement& s = m;
      s.bind_blob(1, row.ir_hash)
          .bind_text(2, row.problem_key)
          .bind_blob(3, row.device_exact_fp)
          .bind_blob(4, row.config_hash)
          .bind_text(5, row.config_json)
          .bind_blob(6, row.toolchain_fp)
          .bind(7, static_cast<int64_t>(row.protocol_version))
          .bind_text(8, row.status)
          .bind(9, row.n_samples);
      bind_optional(s, 10, row.median_ns);
      bind_optional(s, 11, row.p20_ns);
      bind_optional(s, 12, row.p80_ns);
      bind_optional(s, 13, row.min_ns);
      bind_optional(s, 14, row.mean_ns);
      bind_optional(s, 15, row.rel_stddev);
      bind_optional(s, 16, row.eff_bw_gbs);
      bind_optional(s, 17, row.pct_peak_bw);
      s.bind_text(18, row.env_json).bind(19, row.measured_at);
      s.run();
      s.reset();
    }
    if (decision) {
      sqlite::Statement d(
          db,
          "INSERT INTO decision(ir_hash, problem_key, device_exact_fp, toolchain_fp, "
          "config_hash, config_json, margin_vs_runner_up, source, search_space_hash, "
          "decided_at, stale) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) "
          "ON CONFLICT(ir_hash, problem_key, device_exact_fp, toolchain_fp) DO UPDATE SET "
          "config_hash = excluded.config_hash, config_json = excluded.config_json, "
          "margin_vs_runner_up = excluded.margin_vs_runner_up, source = excluded.source, "
          "search_space_hash = excluded.search_space_hash, decided_at = excluded.decided_at, "
          "stale = excluded.stale");
      d.bind_blob(1, decision->ir_hash)
          .bind_text(2, decision->problem_key)
          .bind_blob(3, decision->device_exact_fp)
          .bind_blob(4, decision->toolchain_fp)
          .bind_blob(5, decision->config_hash)
          .bind_text(6, decision->config_json);
      bind_optional(d, 7, decision->margin);
      d.bind_text(8, decision->source)
          .bind_blob(9, decision->search_space_hash)
          .bind(10, decision->decided_at)
          .bind(11, static_cast<int64_t>(decision->stale ? 1 : 0))
          .run();
    }
    transaction.commit();
    return true;
  });
}

std::vector<DecisionRow> CacheDb::find_decisions(const std::string& ir_hash,
                                                 const std::string& device_class_fp) {
  return guarded("reading decisions", false, std::vector<DecisionRow>(),
                 [&](sqlite::Connection& db) {
                   std::vector<DecisionRow> rows;
                   sqlite::Statement s(db,
                                       "SELECT " FUSEOPT_DECISION_COLUMNS
                                       " FROM decision d JOIN device v ON v.device_exact_fp = "
                                       "d.device_exact_fp WHERE d.ir_hash = ?1 AND "
                                       "v.device_class_fp = ?2");
                   s.bind_blob(1, ir_hash).bind_blob(2, device_class_fp);
                   while (s.step()) rows.push_back(read_decision(s));
                   return rows;
                 });
}

std::vector<MeasurementRow> CacheDb::find_measurements(const std::string& ir_hash,
                                                       const std::string& problem_key,
                                                       const std::string& device_exact_fp) {
  return guarded("reading measurements", false, std::vector<MeasurementRow>(),
                 [&](sqlite::Connection& db) {
                   std::vector<MeasurementRow> rows;
                   sqlite::Statement s(db,
                                       "SELECT " FUSEOPT_MEASUREMENT_COLUMNS
                                       " FROM measurement WHERE ir_hash = ?1 AND problem_key = "
                                       "?2 AND device_exact_fp = ?3 ORDER BY median_ns IS NULL, "
                                       "median_ns");
                   s.bind_blob(1, ir_hash).bind_text(2, problem_key).bind_blob(3, device_exact_fp);
                   while (s.step()) rows.push_back(read_measurement(s));
                   return rows;
                 });
}

LeaseResult CacheDb::acquire_lease(const std::string& key, const std::string& owner,
                                   double ttl_seconds) {
  return guarded("taking a tuning lease", true, LeaseResult::kUnavailable,
                 [&](sqlite::Connection& db) {
                   sqlite::WriteTransaction transaction(db);
                   const double now = unix_now_precise();
                   {
                     sqlite::Statement s(db,
                                         "SELECT owner, expires_at FROM tuning_lease WHERE "
                                         "lease_key = ?1");
                     s.bind_text(1, key);
                     if (s.step() && s.column_text(0) != owner && s.column_double(1) > now) {
                       return LeaseResult::kHeldByOther;  // the transaction rolls back
                     }
                   }
                   sqlite::Statement put(db,
                                         "INSERT INTO tuning_lease(lease_key, owner, expires_at) "
                                         "VALUES (?1, ?2, ?3) ON CONFLICT(lease_key) DO UPDATE "
                                         "SET owner = excluded.owner, expires_at = "
                                         "excluded.expires_at");
                   put.bind_text(1, key).bind_text(2, owner).bind(3, now + ttl_seconds).run();
                   transaction.commit();
                   return LeaseResult::kAcquired;
                 });
}

void CacheDb::release_lease(const std::string& key, const std::string& owner) {
  guarded("releasing a tuning lease", true, false, [&](sqlite::Connection& db) {
    sqlite::WriteTransaction transaction(db);
    sqlite::Statement s(db, "DELETE FROM tuning_lease WHERE lease_key = ?1 AND owner = ?2");
    s.bind_text(1, key).bind_text(2, owner).run();
    transaction.commit();
    return true;
  });
}

// ---- Maintenance -------------------------------------------------------------------------------

CacheSummary CacheDb::summary() {
  return guarded("summarising", false, CacheSummary{}, [&](sqlite::Connection& db) {
    CacheSummary s;
    s.kernels = db.query_int("SELECT count(*) FROM kernel");
    s.binaries = db.query_int("SELECT count(*) FROM binary");
    s.blob_bytes = db.query_int("SELECT coalesce(sum(size), 0) FROM blob");
    s.measurements = db.query_int("SELECT count(*) FROM measurement");
    s.decisions = db.query_int("SELECT count(*) FROM decision");
    s.devices = db.query_int("SELECT count(*) FROM device");
    s.toolchains = db.query_int("SELECT count(*) FROM toolchain");
    s.leases = db.query_int("SELECT count(*) FROM tuning_lease");
    return s;
  });
}

namespace {

constexpr const char* kListingSql =
    "SELECT " FUSEOPT_DECISION_COLUMNS
    ", coalesce(k.family, '?'), v.name, (SELECT m.median_ns FROM measurement m WHERE "
    "m.ir_hash = d.ir_hash AND m.problem_key = d.problem_key AND m.device_exact_fp = "
    "d.device_exact_fp AND m.toolchain_fp = d.toolchain_fp AND m.config_hash = d.config_hash "
    "ORDER BY m.protocol_version DESC LIMIT 1) FROM decision d JOIN device v ON "
    "v.device_exact_fp = d.device_exact_fp LEFT JOIN kernel k ON k.ir_hash = d.ir_hash ";

DecisionListing read_listing(const sqlite::Statement& s) {
  DecisionListing listing;
  listing.decision = read_decision(s);
  listing.family = s.column_text(12);
  listing.device_name = s.column_text(13);
  listing.winner_median_ns = s.column_optional_double(14);
  return listing;
}

}  // namespace

std::vector<DecisionListing> CacheDb::list_decisions() {
  return guarded("listing decisions", false, std::vector<DecisionListing>(),
                 [&](sqlite::Connection& db) {
                   std::vector<DecisionListing> rows;
                   sqlite::Statement s(db, (std::string(kListingSql) +
                                            "ORDER BY k.family, d.problem_key").c_str());
                   while (s.step()) rows.push_back(read_listing(s));
                   return rows;
                 });
}

std::vector<DecisionListing> CacheDb::list_decisions_for(const std::string& ir_hash) {
  return guarded("listing decisions", false, std::vector<DecisionListing>(),
                 [&](sqlite::Connection& db) {
                   std::vector<DecisionListing> rows;
                   sqlite::Statement s(db, (std::string(kListingSql) +
                                            "WHERE d.ir_hash = ?1 ORDER BY d.problem_key").c_str());
                   s.bind_blob(1, ir_hash);
                   while (s.step()) rows.push_back(read_listing(s));
                   return rows;
                 });
}

std::vector<KernelRow> CacheDb::find_kernels(const std::string& key) {
  return guarded("finding kernels", false, std::vector<KernelRow>(), [&](sqlite::Connection& db) {
    std::vector<KernelRow> rows;
    std::string prefix;
    for (char c : key) prefix += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    sqlite::Statement s(db,
                        "SELECT ir_hash, family, codegen_version, search_space_hash, ir_text "
                        "FROM kernel WHERE family = ?1 OR (length(?2) >= 4 AND "
                        "substr(hex(ir_hash), 1, length(?2)) = ?2) ORDER BY family");
    s.bind_text(1, key).bind_text(2, prefix);
    while (s.step()) {
      rows.push_back({s.column_blob(0), s.column_text(1), s.column_text(2), s.column_blob(3),
                      s.column_text(4)});
    }
    return rows;
  });
}

std::vector<BinaryRow> CacheDb::list_binaries(const std::string& ir_hash) {
  return guarded("listing binaries", false, std::vector<BinaryRow>(), [&](sqlite::Connection& db) {
    std::vector<BinaryRow> rows;
    sqlite::Statement s(db,
                        "SELECT b.config_hash, b.config_json, b.isa_target, b.toolchain_fp, "
                        "b.format, b.ptx_isa, b.blob_sha256, b.entry_name, b.launch_json, "
                        "blob.size FROM binary b LEFT JOIN blob ON blob.sha256 = b.blob_sha256 "
                        "WHERE b.ir_hash = ?1 ORDER BY b.config_json");
    s.bind_blob(1, ir_hash);
    while (s.step()) {
      BinaryRow row;
      row.ir_hash = ir_hash;
      row.config_hash = s.column_blob(0);
      row.config_json = s.column_text(1);
      row.isa_target = s.column_text(2);
      row.toolchain_fp = s.column_blob(3);
      row.format = s.column_text(4);
      row.ptx_isa = s.column_text(5);
      row.sha256 = s.column_blob(6);
      row.entry_names = s.column_text(7);
      row.launch_json = s.column_text(8);
      row.size = s.column_int(9);
      rows.push_back(std::move(row));
    }
    return rows;
  });
}

std::vector<MeasurementRow> CacheDb::list_measurements(const std::string& ir_hash) {
  return guarded("listing measurements", false, std::vector<MeasurementRow>(),
                 [&](sqlite::Connection& db) {
                   std::vector<MeasurementRow> rows;
                   sqlite::Statement s(db,
                                       "SELECT " FUSEOPT_MEASUREMENT_COLUMNS
                                       " FROM measurement WHERE ir_hash = ?1 ORDER BY "
                                       "problem_key, median_ns IS NULL, median_ns");
                   s.bind_blob(1, ir_hash);
                   while (s.step()) rows.push_back(read_measurement(s));
                   return rows;
                 });
}

VerifyReport CacheDb::verify() {
  VerifyReport fallback;
  fallback.integrity = "no cache";
  return guarded("verifying", false, fallback, [&](sqlite::Connection& db) {
    VerifyReport report;
    {
      sqlite::Statement check(db, "PRAGMA integrity_check");
      std::string problems;
      while (check.step()) {
        if (!problems.empty()) problems += "; ";
        problems += check.column_text(0);
      }
      report.integrity = problems;
    }
    if (report.integrity != "ok") {
      set_aside("failed its integrity check (" + report.integrity.substr(0, 200) + ")",
                "corrupt");
      open_database();
      return report;
    }
    {
      sqlite::Statement fk(db, "PRAGMA foreign_key_check");
      while (fk.step()) ++report.foreign_key_problems;
    }
    std::vector<std::string> bad;
    {
      sqlite::Statement blobs(db, "SELECT sha256, data FROM blob");
      while (blobs.step()) {
        ++report.blobs_checked;
        const std::string sha = blobs.column_blob(0);
        if (support::digest_bytes(support::sha256(blobs.column_blob(1))) != sha) bad.push_back(sha);
      }
    }
    report.blobs_dropped = static_cast<int64_t>(bad.size());
    if (!bad.empty() && mode_ == CacheMode::kReadWrite) {
      sqlite::WriteTransaction transaction(db);
      for (const std::string& sha : bad) delete_blob(db, sha);
      transaction.commit();
    }
    return report;
  });
}

void CacheDb::checkpoint() {
  guarded("checkpointing", true, false, [&](sqlite::Connection& db) {
    db.query_text("PRAGMA wal_checkpoint(PASSIVE)");  // never waits for anyone
    return true;
  });
}

bool CacheDb::clear() {
  const bool cleared = guarded("clearing", true, false, [&](sqlite::Connection& db) {
    sqlite::WriteTransaction transaction(db);
    db.execute(
        "DELETE FROM binary; DELETE FROM blob; DELETE FROM decision; DELETE FROM measurement; "
        "DELETE FROM tuning_lease; DELETE FROM kernel; DELETE FROM device; "
        "DELETE FROM toolchain;");
    transaction.commit();
    return true;
  });
  if (cleared) {
    // Give the space back when nobody else is reading; a busy database keeps it for now.
    guarded("compacting", true, false, [&](sqlite::Connection& db) {
      try {
        db.query_text("PRAGMA wal_checkpoint(TRUNCATE)");
        db.execute("VACUUM");
      } catch (const sqlite::Error& error) {
        if (error.is_corruption()) throw;
      }
      return true;
    });
  }
  return cleared;
}

int64_t CacheDb::count_rows(const std::string& table) {
  static const std::pair<const char*, const char*> kCounts[] = {
      {"meta", "SELECT count(*) FROM meta"},
      {"toolchain", "SELECT count(*) FROM toolchain"},
      {"device", "SELECT count(*) FROM device"},
      {"kernel", "SELECT count(*) FROM kernel"},
      {"blob", "SELECT count(*) FROM blob"},
      {"binary", "SELECT count(*) FROM binary"},
      {"measurement", "SELECT count(*) FROM measurement"},
      {"decision", "SELECT count(*) FROM decision"},
      {"tuning_lease", "SELECT count(*) FROM tuning_lease"},
  };
  for (const auto& entry : kCounts) {
    if (table == entry.first) {
      const char* sql = entry.second;  // C++20 lambdas cannot capture structured bindings in clang 14
      return guarded("counting", false, int64_t{-1},
                     [sql](sqlite::Connection& db) { return db.query_int(sql); });
    }
  }
  return -1;
}

}  // namespace fuseopt::autotune

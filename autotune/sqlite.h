// A thin RAII layer over the SQLite C API for the cache database: a connection, prepared
// statements with bound parameters (SQL text is always a constant; values are never
// formatted into it), and an exception that keeps SQLite's result code so callers can tell
// corruption from a full disk from a busy lock.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

struct sqlite3;
struct sqlite3_stmt;

namespace fuseopt::autotune::sqlite {

/// A failed SQLite call: `code()` is the primary result code (SQLITE_BUSY, SQLITE_CORRUPT...).
class Error : public std::runtime_error {
 public:
  Error(int code, const std::string& message);
  int code() const { return code_; }
  /// The database file is damaged or is not a database (quarantine it).
  bool is_corruption() const;
  /// Writing is impossible here: read-only file or folder, full disk, I/O error.
  bool is_unwritable() const;
  /// Another connection held the lock past the busy timeout.
  bool is_busy() const;

 private:
  int code_;
};

class Statement;

/// One connection. Not shared between threads without a lock; never used across fork().
class Connection {
 public:
  /// Opens `path` (SQLITE_OPEN_READWRITE|CREATE, or READONLY). Throws Error.
  Connection(const std::string& path, bool read_only);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  /// Leaves the handle open without closing it: for a connection inherited across fork(),
  /// which must not be closed in the child (its locks belong to the parent).
  void abandon();

  /// Runs constant SQL (pragmas, schema) with no parameters and no result rows wanted.
  void execute(const char* sql);
  /// The first column of the first row of a constant query, as text ("" when no row).
  std::string query_text(const char* sql);
  int64_t query_int(const char* sql);

  void set_busy_timeout(int milliseconds);
  /// True when SQLite opened the file read-only (e.g. the file or its folder is not writable).
  bool is_read_only() const;
  int64_t changes() const;
  sqlite3* handle() const { return db_; }
  const std::string& path() const { return path_; }

 private:
  sqlite3* db_ = nullptr;
  std::string path_;
};

/// A prepared statement. bind() numbers parameters from 1, as SQLite does; column() from 0.
class Statement {
 public:
  Statement(Connection& connection, const char* sql);
  ~Statement();
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  Statement& bind(int index, int64_t value);
  Statement& bind(int index, double value);
  Statement& bind_text(int index, std::string_view text);
  Statement& bind_blob(int index, std::string_view bytes);
  Statement& bind_null(int index);

  /// Advances to the next row: true when there is one, false when done. Throws Error.
  bool step();
  /// Runs a statement that returns no rows.
  void run();
  /// Makes the statement ready to run again with new bindings.
  void reset();

  bool is_null(int column) const;
  int64_t column_int(int column) const;
  double column_double(int column) const;
  std::string column_text(int column) const;
  std::string column_blob(int column) const;
  std::optional<double> column_optional_double(int column) const;

 private:
  Connection& connection_;
  sqlite3_stmt* statement_ = nullptr;
};

/// BEGIN IMMEDIATE ... COMMIT: takes the write lock up front (so the busy timeout applies)
/// and rolls back when destroyed without commit().
class WriteTransaction {
 public:
  explicit WriteTransaction(Connection& connection);
  ~WriteTransaction();
  WriteTransaction(const WriteTransaction&) = delete;
  WriteTransaction& operator=(const WriteTransaction&) = delete;
  void commit();

 private:
  Connection& connection_;
  bool open_ = true;
};

/// SQLite's library version, e.g. "3.40.1".
std::string library_version();

}  // namespace fuseopt::autotune::sqlite

// A minimal RAII layer over SQLite for packs (the runtime-only side must not link the
// autotuner, whose wrapper lives in autotune/). Errors are thrown as support::UserError
// (a damaged or foreign file is the user's input, never a crash).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

struct sqlite3;
struct sqlite3_stmt;

namespace fuseopt::pack::db {

class Connection {
 public:
  /// Opens `path` read-only (never creating it), or creates/truncates it for writing.
  Connection(const std::string& path, bool read_only);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
  void execute(const char* sql);
  int64_t query_int(const char* sql);
  sqlite3* handle() const { return db_; }
  const std::string& path() const { return path_; }

 private:
  sqlite3* db_ = nullptr;
  std::string path_;
};

class Statement {
 public:
  Statement(Connection& connection, const char* sql);
  ~Statement();
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  Statement& bind(int index, int64_t value);
  Statement& bind_text(int index, std::string_view text);
  Statement& bind_blob(int index, std::string_view bytes);
  bool step();
  void run();
  void reset();
  bool is_null(int column) const;
  int64_t column_int(int column) const;
  std::string column_text(int column) const;
  std::string column_blob(int column) const;

 private:
  Connection& connection_;
  sqlite3_stmt* statement_ = nullptr;
};

}  // namespace fuseopt::pack::db

// The SQLite wrapper: every call is checked and a failure becomes sqlite::Error with the
// database's own message (the third error channel: a result with context).
#include "autotune/sqlite.h"

#include <sqlite3.h>

namespace fuseopt::autotune::sqlite {
namespace {

[[noreturn]] void fail(sqlite3* db, int code, const std::string& what) {
  std::string message = what + ": ";
  message += db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(code);
  throw Error(code, message);
}

}  // namespace

Error::Error(int code, const std::string& message) : std::runtime_error(message), code_(code) {}

bool Error::is_corruption() const {
  const int primary = code_ & 0xff;
  return primary == SQLITE_CORRUPT || primary == SQLITE_NOTADB;
}

bool Error::is_unwritable() const {
  const int primary = code_ & 0xff;
  return primary == SQLITE_READONLY || primary == SQLITE_FULL || primary == SQLITE_IOERR ||
         primary == SQLITE_CANTOPEN || primary == SQLITE_PERM || primary == SQLITE_AUTH;
}

bool Error::is_busy() const {
  const int primary = code_ & 0xff;
  return primary == SQLITE_BUSY || primary == SQLITE_LOCKED;
}

Connection::Connection(const std::string& path, bool read_only) : path_(path) {
  const int flags = (read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) |
                    SQLITE_OPEN_NOMUTEX;
  const int rc = sqlite3_open_v2(path.c_str(), &db_, flags, nullptr);
  if (rc != SQLITE_OK) {
    const std::string message =
        "cannot open " + path + ": " + (db_ != nullptr ? sqlite3_errmsg(db_) : sqlite3_errstr(rc));
    sqlite3_close_v2(db_);
    db_ = nullptr;
    throw Error(rc, message);
  }
  sqlite3_extended_result_codes(db_, 1);
}

Connection::~Connection() {
  if (db_ != nullptr) sqlite3_close_v2(db_);
}

void Connection::abandon() { db_ = nullptr; }

void Connection::execute(const char* sql) {
  char* error = nullptr;
  const int rc = sqlite3_exec(db_, sql, nullptr, nullptr, &error);
  if (rc != SQLITE_OK) {
    std::string message = std::string("'") + sql + "': " + (error != nullptr ? error : sqlite3_errstr(rc));
    sqlite3_free(error);
    throw Error(rc, message);
  }
}

std::string Connection::query_text(const char* sql) {
  Statement statement(*this, sql);
  return statement.step() ? statement.column_text(0) : std::string();
}

int64_t Connection::query_int(const char* sql) {
  Statement statement(*this, sql);
  return statement.step() ? statement.column_int(0) : 0;
}

void Connection::set_busy_timeout(int milliseconds) {
  const int rc = sqlite3_busy_timeout(db_, milliseconds);
  if (rc != SQLITE_OK) fail(db_, rc, "busy timeout");
}

bool Connection::is_read_only() const { return sqlite3_db_readonly(db_, "main") == 1; }

int64_t Connection::changes() const { return sqlite3_changes64(db_); }

Statement::Statement(Connection& connection, const char* sql) : connection_(connection) {
  const int rc = sqlite3_prepare_v3(connection.handle(), sql, -1, 0, &statement_, nullptr);
  if (rc != SQLITE_OK) fail(connection.handle(), rc, std::string("prepare '") + sql + "'");
}

Statement::~Statement() { sqlite3_finalize(statement_); }

Statement& Statement::bind(int index, int64_t value) {
  const int rc = sqlite3_bind_int64(statement_, index, value);
  if (rc != SQLITE_OK) fail(connection_.handle(), rc, "bind");
  return *this;
}

Statement& Statement::bind(int index, double value) {
  const int rc = sqlite3_bind_double(statement_, index, value);
  if (rc != SQLITE_OK) fail(connection_.handle(), rc, "bind");
  return *this;
}

Statement& Statement::bind_text(int index, std::string_view text) {
  const int rc = sqlite3_bind_text64(statement_, index, text.data(), text.size(),
                                     SQLITE_TRANSIENT, SQLITE_UTF8);
  if (rc != SQLITE_OK) fail(connection_.handle(), rc, "bind");
  return *this;
}

Statement& Statement::bind_blob(int index, std::string_view bytes) {
  // A zero-length blob must still be a BLOB, not NULL: give SQLite a valid pointer.
  static const char kEmpty = 0;
  const int rc = sqlite3_bind_blob64(statement_, index, bytes.empty() ? &kEmpty : bytes.data(),
                                     bytes.size(), SQLITE_TRANSIENT);
  if (rc != SQLITE_OK) fail(connection_.handle(), rc, "bind");
  return *this;
}

Statement& Statement::bind_null(int index) {
  const int rc = sqlite3_bind_null(statement_, index);
  if (rc != SQLITE_OK) fail(connection_.handle(), rc, "bind");
  return *this;
}

bool Statement::step() {
  const int rc = sqlite3_step(statement_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  // sqlite3_step's own code is the extended one since extended_result_codes is on.
  const std::string sql = sqlite3_sql(statement_) != nullptr ? sqlite3_sql(statement_) : "";
  fail(connection_.handle(), rc, "'" + sql.substr(0, 60) + (sql.size() > 60 ? "...'" : "'"));
}

void Statement::run() {
  while (step()) {
  }
}

void Statement::reset() {
  sqlite3_reset(statement_);
  sqlite3_clear_bindings(statement_);
}

bool Statement::is_null(int column) const {
  return sqlite3_column_type(statement_, column) == SQLITE_NULL;
}

int64_t Statement::column_int(int column) const {
  return sqlite3_column_int64(statement_, column);
}

double Statement::column_double(int column) const {
  return sqlite3_column_double(statement_, column);
}

std::string Statement::column_text(int column) const {
  const unsigned char* text = sqlite3_column_text(statement_, column);
  const int size = sqlite3_column_bytes(statement_, column);
  return text != nullptr ? std::string(reinterpret_cast<const char*>(text), static_cast<size_t>(size))
                         : std::string();
}

std::string Statement::column_blob(int column) const {
  const void* data = sqlite3_column_blob(statement_, column);
  const int size = sqlite3_column_bytes(statement_, column);
  return data != nullptr ? std::string(static_cast<const char*>(data), static_cast<size_t>(size))
                         : std::string();
}

std::optional<double> Statement::column_optional_double(int column) const {
  if (is_null(column)) return std::nullopt;
  return column_double(column);
}

WriteTransaction::WriteTransaction(Connection& connection) : connection_(connection) {
  connection_.execute("BEGIN IMMEDIATE");
}

WriteTransaction::~WriteTransaction() {
  if (!open_) return;
  // A rollback that fails (the connection is broken) leaves nothing more to do here.
  sqlite3_exec(connection_.handle(), "ROLLBACK", nullptr, nullptr, nullptr);
}

void WriteTransaction::commit() {
  connection_.execute("COMMIT");
  open_ = false;
}

std::string library_version() { return sqlite3_libversion(); }

}  // namespace fuseopt::autotune::sqlite

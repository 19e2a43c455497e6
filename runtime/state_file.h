// The byte level of Optimizer::save and load: a little-endian stream of fixed-size numbers
// and length-prefixed strings, ended by an FNV-1a 64 checksum of every byte before it.
// Writing goes to a temporary file renamed over the target when complete; reading takes
// the whole file into memory so it can be checked before anything is used.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

namespace fuseopt::runtime {

/// "FUSEOPT" and a format byte; the version follows as a u32.
inline constexpr std::string_view kStateMagic{"FUSEOPTS", 8};
/// Version 2 added each tensor's "states initialised" flag; version 1 files still load.
inline constexpr uint32_t kStateFormatVersion = 2;
inline constexpr uint32_t kOldestStateFormatVersion = 1;

/// FNV-1a 64, continued from `hash`.
uint64_t fnv1a64(const void* data, size_t size, uint64_t hash = 0xcbf29ce484222325ULL);

/// Streams to `path` through a temporary file in the same directory; commit() syncs and
/// renames it into place. Without commit() the temporary file is removed. Errors are
/// UserErrors naming the path.
class StateWriter {
 public:
  explicit StateWriter(std::string path);
  ~StateWriter();
  StateWriter(const StateWriter&) = delete;
  StateWriter& operator=(const StateWriter&) = delete;

  void bytes(const void* data, size_t size);
  void u8(uint8_t v) { bytes(&v, 1); }
  void u32(uint32_t v) { bytes(&v, sizeof v); }
  void u64(uint64_t v) { bytes(&v, sizeof v); }
  void i64(int64_t v) { bytes(&v, sizeof v); }
  void f64(double v) { bytes(&v, sizeof v); }
  void string(const std::string& s);
  /// Writes the checksum of everything so far, then moves the file into place.
  void commit();

 private:
  [[noreturn]] void fail(const std::string& what);

  std::string path_;
  std::string temp_path_;
  std::FILE* file_ = nullptr;
  uint64_t hash_;
};

/// Reads a whole state file. Every read checks the length and throws UserError("... is
/// truncated or damaged") past the end.
class StateReader {
 public:
  /// Reads `path` and checks the magic, the version and the checksum.
  explicit StateReader(const std::string& path);

  void bytes(void* out, size_t size);
  uint8_t u8();
  uint32_t u32();
  uint64_t u64();
  int64_t i64();
  double f64();
  std::string string();
  /// A view of the next `size` bytes, consumed.
  const char* take(size_t size);
  /// True when everything before the checksum has been read.
  bool at_end() const { return position_ == end_; }
  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  [[noreturn]] void damaged(const std::string& detail) const;

 private:
  std::string path_;
  std::vector<char> data_;
  size_t position_ = 0;
  size_t end_ = 0;  ///< where the checksum starts
  uint32_t version_ = 0;
};

}  // namespace fuseopt::runtime

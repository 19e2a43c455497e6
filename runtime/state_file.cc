// The state file's bytes. Numbers are written in the machine's order, which must be little
// endian (checked at compile time), so the file reads the same on every supported host.
#include "runtime/state_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bit>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <utility>

#include "support/error.h"

namespace fuseopt::runtime {

static_assert(std::endian::native == std::endian::little,
              "the optimizer state format is little endian");

uint64_t fnv1a64(const void* data, size_t size, uint64_t hash) {
  const auto* bytes = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < size; ++i) {
    hash ^= bytes[i];
    hash *= 0x100000001b3ULL;
  }
  return hash;
}

StateWriter::StateWriter(std::string path) : path_(std::move(path)), hash_(fnv1a64(nullptr, 0)) {
  if (path_.empty()) throw UserError("cannot save the optimizer state: the path is empty");
  std::string pattern = path_ + ".tmp-XXXXXX";
  int fd = mkstemp(pattern.data());
  if (fd < 0) fail("cannot create a temporary file beside it");
  temp_path_ = pattern;
  // mkstemp creates 0600; a state file is an ordinary file, readable as the umask allows.
  mode_t mask = umask(0);
  umask(mask);
  fchmod(fd, 0666 & ~mask);
  file_ = fdopen(fd, "wb");
  if (file_ == nullptr) {
    close(fd);
    fail("cannot open the temporary file");
  }
}

StateWriter::~StateWriter() {
  if (file_ != nullptr) std::fclose(file_);
  if (!temp_path_.empty()) unlink(temp_path_.c_str());
}

void StateWriter::fail(const std::string& what) {
  const std::string reason = std::strerror(errno);
  throw UserError("cannot save the optimizer state to '" + path_ + "': " + what + " (" + reason +
                  ")");
}

void StateWriter::bytes(const void* data, size_t size) {
  if (size == 0) return;
  hash_ = fnv1a64(data, size, hash_);
  if (std::fwrite(data, 1, size, file_) != size) fail("write failed");
}

void StateWriter::string(const std::string& s) {
  u32(static_cast<uint32_t>(s.size()));
  bytes(s.data(), s.size());
}

void StateWriter::commit() {
  const uint64_t checksum = hash_;
  if (std::fwrite(&checksum, 1, sizeof checksum, file_) != sizeof checksum) fail("write failed");
  if (std::fflush(file_) != 0) fail("write failed");
  if (fsync(fileno(file_)) != 0) fail("cannot sync the file");
  const int closed = std::fclose(file_);
  file_ = nullptr;
  if (closed != 0) fail("write failed");
  if (std::rename(temp_path_.c_str(), path_.c_str()) != 0) fail("cannot rename the temporary file");
  temp_path_.clear();
}

StateReader::StateReader(const std::string& path) : path_(path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw UserError("cannot read optimizer state '" + path + "': " + std::strerror(errno));
  }
  data_.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  if (in.bad()) throw UserError("cannot read optimizer state '" + path + "': read failed");
  if (data_.size() < kStateMagic.size() ||
      std::string_view(data_.data(), kStateMagic.size()) != kStateMagic) {
    throw UserError("'" + path +
                    "' is not a fuseopt optimizer state file (it does not start "
                    "with the expected magic string)");
  }
  if (data_.size() < kStateMagic.size() + sizeof(uint32_t) + sizeof(uint64_t)) {
    damaged("it is too short");
  }
  end_ = data_.size() - sizeof(uint64_t);
  position_ = kStateMagic.size();
  version_ = u32();
  if (version_ < kOldestStateFormatVersion || version_ > kStateFormatVersion) {
    throw UserError("'" + path + "' uses optimizer state format version " +
                    std::to_string(version_) + "; this fuseopt reads versions " +
                    std::to_string(kOldestStateFormatVersion) + " to " +
                    std::to_string(kStateFormatVersion));
  }
  uint64_t stored = 0;
  std::memcpy(&stored, data_.data() + end_, sizeof stored);
  if (fnv1a64(data_.data(), end_) != stored) damaged("its checksum does not match");
}

void StateReader::damaged(const std::string& detail) const {
  throw UserError("optimizer state '" + path_ + "' is truncated or damaged: " + detail);
}

const char* StateReader::take(size_t size) {
  if (size > end_ - position_) damaged("it ends early");
  const char* at = data_.data() + position_;
  position_ += size;
  return at;
}

void StateReader::bytes(void* out, size_t size) {
  if (size != 0) std::memcpy(out, take(size), size);
}

uint8_t StateReader::u8() {
  uint8_t v = 0;
  bytes(&v, sizeof v);
  return v;
}

uint32_t StateReader::u32() {
  uint32_t v = 0;
  bytes(&v, sizeof v);
  return v;
}

uint64_t StateReader::u64() {
  uint64_t v = 0;
  bytes(&v, sizeof v);
  return v;
}

int64_t StateReader::i64() {
  int64_t v = 0;
  bytes(&v, sizeof v);
  return v;
}

double StateReader::f64() {
  double v = 0;
  bytes(&v, sizeof v);
  return v;
}

std::string StateReader::string() {
  const uint32_t size = u32();
  const char* at = take(size);
  return std::string(at, size);
}

}  // namespace fuseopt::runtime

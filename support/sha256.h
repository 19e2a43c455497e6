// SHA-256 (FIPS 180-4): the content hash of the cache and packs. Binaries are stored and
// looked up by their digest, kernels by the digest of their printed IR.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace fuseopt::support {

using Sha256Digest = std::array<uint8_t, 32>;

/// Incremental SHA-256: update() any number of times, then finish() once.
class Sha256 {
 public:
  Sha256();
  void update(const void* data, size_t size);
  void update(std::string_view bytes) { update(bytes.data(), bytes.size()); }
  /// The digest of everything given; the object must not be used afterwards.
  Sha256Digest finish();

 private:
  void compress(const uint8_t* block);

  std::array<uint32_t, 8> state_;
  std::array<uint8_t, 64> buffer_{};
  size_t buffered_ = 0;
  uint64_t total_bytes_ = 0;
};

Sha256Digest sha256(std::string_view bytes);
/// Lower-case hexadecimal, 64 characters.
std::string to_hex(const Sha256Digest& digest);
std::string sha256_hex(std::string_view bytes);
/// The digest's 32 bytes as a string (for BLOB columns).
std::string digest_bytes(const Sha256Digest& digest);

}  // namespace fuseopt::support

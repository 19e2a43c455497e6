#include "pack/builder/pack_signing.h"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <vector>

#include "pack/pack_trust.h"
#include "support/error.h"

namespace fuseopt::pack {
namespace {

void init() {
  if (sodium_init() < 0) throw EnvironmentError("libsodium could not be initialised");
}

std::string to_hex(const unsigned char* bytes, size_t size) {
  std::string text(size * 2 + 1, '\0');
  sodium_bin2hex(text.data(), text.size(), bytes, size);
  text.pop_back();
  return text;
}

std::vector<unsigned char> from_hex(const std::string& text, size_t size, const std::string& what) {
  std::vector<unsigned char> bytes(size);
  size_t length = 0;
  if (text.size() != size * 2 ||
      sodium_hex2bin(bytes.data(), size, text.data(), text.size(), nullptr, &length, nullptr) != 0 ||
      length != size) {
    throw UserError(what + " is not " + std::to_string(size) + " bytes in hexadecimal");
  }
  return bytes;
}

std::string read_key_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw UserError("cannot read the key file '" + path + "'");
  std::string text;
  in >> text;
  return text;
}

void write_file(const std::string& path, const std::string& text, mode_t mode) {
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL, mode);
  if (fd < 0) throw UserError("cannot create the key file '" + path + "' (does it exist?)");
  const std::string line = text + "\n";
  const bool ok = write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size());
  close(fd);
  if (!ok) throw EnvironmentError("cannot write the key file '" + path + "'");
}

}  // namespace

void generate_key_pair(const std::string& secret_path) {
  init();
  unsigned char public_key[crypto_sign_PUBLICKEYBYTES];
  unsigned char secret_key[crypto_sign_SECRETKEYBYTES];
  crypto_sign_keypair(public_key, secret_key);
  write_file(secret_path, to_hex(secret_key, sizeof secret_key), 0600);
  write_file(secret_path + ".pub", to_hex(public_key, sizeof public_key), 0644);
  sodium_memzero(secret_key, sizeof secret_key);
}

std::pair<std::string, std::string> sign_digest(const std::string& secret_path,
                                                const std::string& digest_hex) {
  init();
  std::vector<unsigned char> secret =
      from_hex(read_key_file(secret_path), crypto_sign_SECRETKEYBYTES, "'" + secret_path + "'");
  unsigned char signature[crypto_sign_BYTES];
  crypto_sign_detached(signature, nullptr,
                       reinterpret_cast<const unsigned char*>(digest_hex.data()),
                       digest_hex.size(), secret.data());
  unsigned char public_key[crypto_sign_PUBLICKEYBYTES];
  crypto_sign_ed25519_sk_to_pk(public_key, secret.data());
  sodium_memzero(secret.data(), secret.size());
  return {to_hex(public_key, sizeof public_key), to_hex(signature, sizeof signature)};
}

void check_signature(PackReader& pack, const std::string& public_path) {
  const TrustedKey key = read_public_key(public_path);
  bool signed_by_key = false;
  for (const PackSignature& s : pack.signatures()) {
    signed_by_key = signed_by_key || s.public_key == key.public_key_hex;
  }
  if (!signed_by_key) {
    throw UserError("kernel pack '" + pack.path() + "' is not signed by the key in '" +
                    public_path + "'");
  }
  const std::string digest = pack.content_digest();
  for (const PackSignature& s : pack.signatures()) {
    if (s.public_key == key.public_key_hex &&
        signature_is_valid(digest, key.public_key_hex, s.signature)) {
      return;
    }
  }
  throw UserError("kernel pack '" + pack.path() + "': the signature by '" + public_path +
                  "' does not match the pack's content (tampered)");
}

}  // namespace fuseopt::pack

#include "pack/pack_trust.h"

#include <sodium.h>

#include <cstdlib>
#include <fstream>

#include "support/error.h"

namespace fuseopt::pack {
namespace {

bool from_hex(const std::string& text, unsigned char* bytes, size_t size) {
  size_t length = 0;
  return text.size() == size * 2 &&
         sodium_hex2bin(bytes, size, text.data(), text.size(), nullptr, &length, nullptr) == 0 &&
         length == size;
}

std::string lower(std::string text) {
  for (char& c : text) {
    if (c >= 'A' && c <= 'F') c = static_cast<char>(c - 'A' + 'a');
  }
  return text;
}

}  // namespace

TrustedKey read_public_key(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw UserError("cannot read the public key file '" + path + "'");
  std::string text;
  in >> text;
  unsigned char key[crypto_sign_PUBLICKEYBYTES];
  if (!from_hex(text, key, sizeof key)) {
    throw UserError("'" + path + "' is not a public key (" +
                    std::to_string(crypto_sign_PUBLICKEYBYTES) +
                    " bytes in hexadecimal, as `fuseopt pack keygen` writes KEYFILE.pub)");
  }
  return {path, lower(text)};
}

std::vector<TrustedKey> trusted_keys_from_environment() {
  std::vector<TrustedKey> keys;
  const char* value = std::getenv(kTrustedKeysVariable);
  if (value == nullptr) return keys;
  const std::string list = value;
  size_t start = 0;
  while (start <= list.size()) {
    const size_t colon = std::min(list.find(':', start), list.size());
    const std::string file = list.substr(start, colon - start);
    start = colon + 1;
    if (file.empty()) continue;
    try {
      keys.push_back(read_public_key(file));
    } catch (const UserError& e) {
      throw UserError(std::string(kTrustedKeysVariable) + ": " + e.what());
    }
  }
  return keys;
}

bool signature_is_valid(const std::string& digest_hex, const std::string& public_key_hex,
                        const std::string& signature_hex) {
  if (sodium_init() < 0) throw EnvironmentError("libsodium could not be initialised");
  unsigned char key[crypto_sign_PUBLICKEYBYTES];
  unsigned char signature[crypto_sign_BYTES];
  if (!from_hex(public_key_hex, key, sizeof key) ||
      !from_hex(signature_hex, signature, sizeof signature)) {
    return false;
  }
  return crypto_sign_verify_detached(signature,
                                     reinterpret_cast<const unsigned char*>(digest_hex.data()),
                                     digest_hex.size(), key) == 0;
}

void require_trusted_signature(PackReader& pack, const std::vector<TrustedKey>& keys,
                               const std::string& where) {
  if (keys.empty()) return;
  const std::vector<PackSignature> signatures = pack.signatures();
  const std::string only = "; only packs signed by " + where + " are accepted";
  if (signatures.empty()) {
    throw UserError("kernel pack '" + pack.path() + "' is not signed" + only);
  }
  const std::string digest = pack.content_digest();
  std::string tampered_by;
  for (const PackSignature& s : signatures) {
    for (const TrustedKey& key : keys) {
      if (lower(s.public_key) != key.public_key_hex) continue;
      if (signature_is_valid(digest, key.public_key_hex, s.signature)) return;
      tampered_by = key.file;
    }
  }
  if (!tampered_by.empty()) {
    throw UserError("kernel pack '" + pack.path() + "': its signature by the trusted key '" +
                    tampered_by + "' does not match the pack's content (tampered or corrupted)");
  }
  std::string signers;
  for (const PackSignature& s : signatures) {
    signers += (signers.empty() ? "" : ", ") + s.public_key.substr(0, 16) + "...";
  }
  throw UserError("kernel pack '" + pack.path() +
                  "' is signed only by keys that are not "
                  "trusted (" +
                  signers + ")" + only);
}

}  // namespace fuseopt::pack

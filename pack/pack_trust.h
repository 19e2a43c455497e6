// Which kernel packs a program accepts: with trusted public keys given (API, the
// `--trusted-key` flag of fuseopt-pack-run, or $FUSEOPT_PACK_TRUSTED_KEYS), only packs that
// carry a valid ed25519 signature (libsodium) by one of them of their current content
// (PackReader::content_digest). Checking needs only libsodium: no compiler.
#pragma once

#include <string>
#include <vector>

#include "pack/pack_reader.h"

namespace fuseopt::pack {

/// The environment variable listing trusted public key files, separated by ':'.
inline constexpr const char* kTrustedKeysVariable = "FUSEOPT_PACK_TRUSTED_KEYS";

/// A public key read from a key file (`fuseopt pack keygen` writes KEYFILE.pub: 32 bytes in
/// hexadecimal, lower case).
struct TrustedKey {
  std::string file;
  std::string public_key_hex;
};

/// Reads a public key file. UserError when it is missing or not 32 bytes of hexadecimal.
TrustedKey read_public_key(const std::string& path);

/// The key files $FUSEOPT_PACK_TRUSTED_KEYS names (empty when unset or empty), read.
std::vector<TrustedKey> trusted_keys_from_environment();

/// Whether `signature_hex` is a valid ed25519 signature by `public_key_hex` of `digest_hex`.
/// False for malformed hexadecimal. EnvironmentError when libsodium cannot start.
bool signature_is_valid(const std::string& digest_hex, const std::string& public_key_hex,
                        const std::string& signature_hex);

/// Throws UserError unless `pack` carries a valid signature of its current content by one of
/// `keys` (no-op when `keys` is empty). The message says which case it is: the pack is
/// unsigned, signed only by keys not trusted, or its signature by a trusted key does not
/// match its content (tampered). `where` names where the keys came from, for the message.
void require_trusted_signature(PackReader& pack, const std::vector<TrustedKey>& keys,
                               const std::string& where = "the trusted keys");

}  // namespace fuseopt::pack

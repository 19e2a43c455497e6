// Signed kernel packs: ed25519 (libsodium) over the pack's content digest
// (PackReader::content_digest). Key files are hexadecimal text: the secret key file holds
// libsodium's 64-byte secret key, KEYFILE.pub the 32-byte public key.
#pragma once

#include <string>
#include <utility>

#include "pack/pack_reader.h"

namespace fuseopt::pack {

/// Writes a new key pair: `secret_path` (mode 0600) and `secret_path + ".pub"`. Refuses to
/// overwrite an existing file (UserError).
void generate_key_pair(const std::string& secret_path);

/// Signs `digest_hex` with the secret key in `secret_path`: {public key hex, signature hex}.
std::pair<std::string, std::string> sign_digest(const std::string& secret_path,
                                                const std::string& digest_hex);

/// Throws UserError unless `pack` carries a valid signature by the public key in
/// `public_path` of its current content.
void check_signature(PackReader& pack, const std::string& public_path);

}  // namespace fuseopt::pack

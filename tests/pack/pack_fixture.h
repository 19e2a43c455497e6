// Shared test packs, built once per fuseopt binary: gtest_discover_tests runs every test in a
// process of its own, and building a pack (Halide, NVRTC) takes seconds, so the packs live in
// PACK_FIXTURE_DIR of the build tree and are rebuilt only when missing or older than the
// fuseopt binary. Concurrent builds are safe (the builder renames a finished file into place).
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "tests/cli/process.h"

namespace fuseopt::pack_testing {

using fuseopt::testing::ProcessResult;

/// A pack built by `fuseopt pack build` with `build_args` (rules and flags, -o added) into
/// PACK_FIXTURE_DIR/name. On failure `ok` is false and `build` says why.
struct SharedPack {
  std::string path;
  bool ok = false;
  ProcessResult build;
};
SharedPack shared_pack(const std::string& name, const std::vector<std::string>& build_args);

/// The host-target pack of adadelta (both option combinations).
const SharedPack& adadelta_pack();
/// adadelta with maximize=false for host, sm_80, sm_90 and ptx (needs NVRTC on this machine).
const SharedPack& mixed_pack();

/// An ed25519 key pair in PACK_FIXTURE_DIR (`fuseopt pack keygen`): NAME and NAME.pub.
std::string shared_key(const std::string& name);
/// adadelta (maximize=false, host) signed by shared_key("signing.key").
const SharedPack& signed_pack();

/// A folder of this process's own, removed at exit.
const std::string& scratch_folder();
std::string scratch(const std::string& name);

/// A writable copy of `pack` named `name` in the scratch folder, changed by `sql`.
std::string tampered(const std::string& pack, const std::string& name, const char* sql);

/// fuseopt-pack-run with an empty PATH (it must need no compiler or linker), plus `env`
/// assignments ("NAME=VALUE").
ProcessResult pack_run(const std::vector<std::string>& args,
                       const std::vector<std::string>& env = {});
ProcessResult fuseopt(const std::vector<std::string>& args);

/// Expects a clean failure: no signal, exit code `code`, `text` in standard error.
void expect_failure(const ProcessResult& r, int code, const std::string& text);

/// The bytes of a binary of `pack`, by target (SHA-256 checked).
std::string blob_of(const std::string& pack, const std::string& target);

}  // namespace fuseopt::pack_testing

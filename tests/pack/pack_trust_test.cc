// Trusted keys in the runtime: told to trust public keys (fuseopt-pack-run --trusted-key,
// $FUSEOPT_PACK_TRUSTED_KEYS, pack::require_trusted_signature), a program runs only packs
// signed by one of them of their current content, and refuses an unsigned pack, a pack signed
// by another key and a signed pack changed afterwards, each with its own clear error.
#include "pack/pack_trust.h"

#include <gtest/gtest.h>

#include <string>

#include "pack/pack_reader.h"
#include "support/error.h"
#include "tests/pack/pack_fixture.h"

namespace fuseopt {
namespace {

using pack_testing::expect_failure;
using pack_testing::pack_run;
using pack_testing::ProcessResult;

class PackTrustTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(pack_testing::signed_pack().ok)
        << pack_testing::signed_pack().build.out << pack_testing::signed_pack().build.err;
    ASSERT_TRUE(pack_testing::adadelta_pack().ok) << pack_testing::adadelta_pack().build.err;
  }
  static std::string signed_pack() { return pack_testing::signed_pack().path; }
  static std::string unsigned_pack() { return pack_testing::adadelta_pack().path; }
  static std::string key() { return pack_testing::shared_key("signing.key") + ".pub"; }
  static std::string other_key() { return pack_testing::shared_key("other.key") + ".pub"; }
  // The signed pack with one launch setting changed (every blob hash still matches).
  static std::string tampered_signed() {
    return pack_testing::tampered(signed_pack(), "signed_tampered.pack",
                                  "UPDATE binary SET chunk_elements = 1024");
  }
};

TEST_F(PackTrustTest, SignedByATrustedKeyRuns) {
  const ProcessResult r = pack_run(
      {signed_pack(), "adadelta", "--size", "1000", "--steps", "2", "--trusted-key", key()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("signature:  valid, by a trusted key"), std::string::npos) << r.out;
  // Any one of several trusted keys will do.
  const ProcessResult two = pack_run({signed_pack(), "adadelta", "--size", "1000", "--trusted-key",
                                      other_key(), "--trusted-key", key()});
  EXPECT_EQ(two.exit_code, 0) << two.err;
  // Without trusted keys nothing is checked: signed and unsigned packs both run.
  EXPECT_EQ(pack_run({unsigned_pack(), "adadelta", "--size", "1000"}).exit_code, 0);
}

TEST_F(PackTrustTest, UnsignedPackIsRefused) {
  expect_failure(pack_run({unsigned_pack(), "adadelta", "--trusted-key", key()}), 1,
                 "is not signed; only packs signed by the trusted keys");
}

TEST_F(PackTrustTest, PackSignedByAnotherKeyIsRefused) {
  expect_failure(pack_run({signed_pack(), "adadelta", "--trusted-key", other_key()}), 1,
                 "is signed only by keys that are not trusted");
}

TEST_F(PackTrustTest, ChangedSignedPackIsRefused) {
  expect_failure(pack_run({tampered_signed(), "adadelta", "--trusted-key", key()}), 1,
                 "does not match the pack's content (tampered or corrupted)");
}

TEST_F(PackTrustTest, EnvironmentVariableTrustsKeys) {
  const std::string env = std::string(pack::kTrustedKeysVariable) + "=" + other_key() + ":" + key();
  EXPECT_EQ(pack_run({signed_pack(), "adadelta", "--size", "1000"}, {env}).exit_code, 0);
  expect_failure(pack_run({unsigned_pack(), "adadelta"}, {env}), 1, "is not signed");
  expect_failure(pack_run({signed_pack(), "adadelta"},
                          {std::string(pack::kTrustedKeysVariable) + "=" + other_key()}),
                 1, "not trusted");
  expect_failure(pack_run({signed_pack(), "adadelta"},
                          {std::string(pack::kTrustedKeysVariable) + "=/nonexistent.pub"}),
                 1,
                 "FUSEOPT_PACK_TRUSTED_KEYS: cannot read the public key file '/nonexistent.pub'");
}

TEST_F(PackTrustTest, BadKeyFilesAreClearErrors) {
  // The secret key is no public key.
  expect_failure(pack_run({signed_pack(), "adadelta", "--trusted-key",
                           pack_testing::shared_key("signing.key")}),
                 1, "is not a public key");
  expect_failure(pack_run({signed_pack(), "adadelta", "--trusted-key", "/nonexistent.pub"}), 1,
                 "cannot read the public key file");
  expect_failure(pack_run({signed_pack(), "adadelta", "--trusted-key"}), 2, "needs a value");
}

TEST_F(PackTrustTest, LibraryCheck) {
  const std::vector<pack::TrustedKey> trusted = {pack::read_public_key(key())};
  pack::PackReader good(signed_pack());
  EXPECT_NO_THROW(pack::require_trusted_signature(good, trusted));
  EXPECT_NO_THROW(pack::require_trusted_signature(good, {}));  // no keys: no check
  pack::PackReader bad(tampered_signed());
  EXPECT_THROW(pack::require_trusted_signature(bad, trusted), UserError);
  const std::string digest = good.content_digest();
  const pack::PackSignature signature = good.signatures().at(0);
  EXPECT_TRUE(pack::signature_is_valid(digest, signature.public_key, signature.signature));
  EXPECT_FALSE(
      pack::signature_is_valid(bad.content_digest(), signature.public_key, signature.signature));
  EXPECT_FALSE(pack::signature_is_valid(digest, signature.public_key, "not hex"));
}

}  // namespace
}  // namespace fuseopt

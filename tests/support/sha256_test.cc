// SHA-256 against the FIPS 180-4 examples (NIST's "SHA256.pdf" and the CAVP short and long
// messages), and incremental hashing against one-shot hashing at every split point.
#include "support/sha256.h"

#include <gtest/gtest.h>

#include <string>

namespace fuseopt::support {
namespace {

TEST(Sha256Test, EmptyMessage) {
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST(Sha256Test, OneBlockMessage) {
  EXPECT_EQ(sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(Sha256Test, TwoBlockMessage) {
  EXPECT_EQ(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

TEST(Sha256Test, LongMessage896Bits) {
  EXPECT_EQ(sha256_hex("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmno"
                       "ijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu"),
            "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
}

TEST(Sha256Test, OneMillionA) {
  EXPECT_EQ(sha256_hex(std::string(1000000, 'a')),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Sha256Test, CavpShortMessages) {
  // SHA256ShortMsg.rsp: Len = 8 and Len = 16.
  EXPECT_EQ(sha256_hex(std::string("\xd3", 1)),
            "28969cdfa74a12c82f3bad960b0b000aca2ac329deea5c2328ebc6f2ba9802c1");
  EXPECT_EQ(sha256_hex(std::string("\x11\xaf", 2)),
            "5ca7133fa735326081558ac312c620eeca9970d1e70a4b95533d956f072d1f98");
}

TEST(Sha256Test, PaddingBoundaries) {
  // 55, 56, 63 and 64 bytes put the length field in the same or the next block.
  EXPECT_EQ(sha256_hex(std::string(55, 'a')),
            "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318");
  EXPECT_EQ(sha256_hex(std::string(56, 'a')),
            "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a");
  EXPECT_EQ(sha256_hex(std::string(64, 'a')),
            "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb");
}

TEST(Sha256Test, IncrementalMatchesOneShot) {
  std::string message;
  for (int i = 0; i < 300; ++i) message += static_cast<char>((i * 7 + 3) & 0xff);
  const Sha256Digest expected = sha256(message);
  for (size_t split = 0; split <= message.size(); ++split) {
    Sha256 hasher;
    hasher.update(std::string_view(message).substr(0, split));
    hasher.update(std::string_view(message).substr(split));
    ASSERT_EQ(hasher.finish(), expected) << "split at " << split;
  }
  Sha256 bytewise;
  for (char c : message) bytewise.update(&c, 1);
  EXPECT_EQ(bytewise.finish(), expected);
}

TEST(Sha256Test, DigestBytesAreTheRawDigest) {
  const Sha256Digest digest = sha256("abc");
  const std::string raw = digest_bytes(digest);
  ASSERT_EQ(raw.size(), 32u);
  EXPECT_EQ(static_cast<uint8_t>(raw[0]), 0xba);
  EXPECT_EQ(static_cast<uint8_t>(raw[31]), 0xad);
}

}  // namespace
}  // namespace fuseopt::support

// Kernel packs in the C++ API's lookup chain (memory, cache, packs, compile): a pack hit
// compiles nothing (the on-disk cache stays empty), a miss compiles with the reason in
// last_kernel_provenance() and a warning, the cache comes before packs, $FUSEOPT_PACKS
// lists packs, a pack that cannot be read is an error, and trusted keys apply.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "api/fuseopt.h"
#include "autotune/cache_db.h"
#include "autotune/kernel_store.h"
#include "autotune/warnings.h"
#include "support/error.h"
#include "tests/pack/pack_fixture.h"

namespace fuseopt {
namespace {

namespace fs = std::filesystem;

class PackApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(pack_testing::adadelta_pack().ok) << pack_testing::adadelta_pack().build.err;
    // A cache of this test's own, so "compiled nothing" means an empty cache.
    const std::string name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    cache_ = pack_testing::scratch("cache_" + name + "/cache.sqlite");
    fs::create_directories(fs::path(cache_).parent_path());
    setenv("FUSEOPT_CACHE", cache_.c_str(), 1);
    unsetenv("FUSEOPT_PACKS");
    unsetenv("FUSEOPT_PACK_TRUSTED_KEYS");
    clear_compiled_kernels();
    autotune::clear_memory_cache();
    previous_ = autotune::set_warning_handler(
        [this](const std::string& message) { warnings_.push_back(message); });
  }
  void TearDown() override { autotune::set_warning_handler(previous_); }

  static std::string pack() { return pack_testing::adadelta_pack().path; }
  static CompileOptions with_packs(std::vector<std::string> packs) {
    CompileOptions options;
    options.backend = Backend::kCpu;
    options.packs = std::move(packs);
    return options;
  }
  int64_t cached_binaries() {
    autotune::CacheDb cache(cache_);
    return cache.summary().binaries;
  }
  static std::string error_of(const std::string& rule, const CompileOptions& options) {
    try {
      compile_rule(rule, options);
    } catch (const UserError& e) {
      return e.what();
    }
    return "no error";
  }

  std::string cache_;
  std::vector<std::string> warnings_;
  std::function<void(const std::string&)> previous_;
};

TEST_F(PackApiTest, PackHitCompilesNothing) {
  auto kernel = compile_rule("adadelta", with_packs({pack()}));
  KernelProvenance from = last_kernel_provenance();
  EXPECT_EQ(from.origin, "pack");
  EXPECT_EQ(from.pack, pack());
  EXPECT_EQ(from.binary, "host");
  EXPECT_TRUE(from.pack_miss.empty()) << from.pack_miss;
  EXPECT_EQ(cached_binaries(), 0);
  EXPECT_TRUE(warnings_.empty());
  // The same request again: this process's memory.
  compile_rule("adadelta", with_packs({pack()}));
  EXPECT_EQ(last_kernel_provenance().origin, "memory");
  EXPECT_EQ(last_kernel_provenance().pack, pack());

  // It computes what the interpreter computes, bit for bit.
  CompileOptions interp;
  interp.backend = Backend::kInterpreter;
  Optimizer a(kernel, {}, 2), b(compile_rule("adadelta", interp), {}, 2);
  const int64_t n = 20000;
  std::vector<float> param(n), grad(n);
  for (int64_t i = 0; i < n; ++i) {
    param[i] = static_cast<float>((i % 89) - 44) * 0.01f;
    grad[i] = static_cast<float>((i % 23) - 11) * 0.004f;
  }
  for (Optimizer* o : {&a, &b}) {
    o->add_tensor(n);
    o->write_param(0, param);
    o->write_grad(0, grad);
    for (int s = 0; s < 3; ++s) o->step();
  }
  const std::vector<float> pa = a.read_param(0), pb = b.read_param(0);
  EXPECT_EQ(std::memcmp(pa.data(), pb.data(), pa.size() * sizeof(float)), 0);
  EXPECT_EQ(cached_binaries(), 0);
}

TEST_F(PackApiTest, EnvironmentVariableListsPacks) {
  const std::string list = "/nonexistent/first.pack:" + pack();
  setenv("FUSEOPT_PACKS", list.c_str(), 1);
  // Every listed pack must be readable: the first one is missing.
  EXPECT_NE(
      error_of("adadelta", with_packs({})).find("no kernel pack at '/nonexistent/first.pack'"),
      std::string::npos);
  setenv("FUSEOPT_PACKS", (":" + pack() + ":").c_str(), 1);
  compile_rule("adadelta", with_packs({}));
  EXPECT_EQ(last_kernel_provenance().origin, "pack");
  EXPECT_EQ(cached_binaries(), 0);
}

TEST_F(PackApiTest, MissCompilesWithTheReason) {
  // sgd is not in the pack; adadelta for x86-64-v3 is not either (the pack has "host" only).
  compile_rule("sgd", with_packs({pack()}));
  KernelProvenance from = last_kernel_provenance();
  EXPECT_EQ(from.origin, "compiled");
  EXPECT_NE(from.pack_miss.find(pack() + ": no binary of this kernel"), std::string::npos)
      << from.pack_miss;
  ASSERT_EQ(warnings_.size(), 1u);
  EXPECT_NE(warnings_[0].find("no kernel pack has a binary of sgd"), std::string::npos)
      << warnings_[0];
  EXPECT_NE(warnings_[0].find("; compiling it"), std::string::npos) << warnings_[0];

  CompileOptions v3 = with_packs({pack()});
  v3.cpu_target = "x86-64-v3";
  compile_rule("adadelta", v3);
  from = last_kernel_provenance();
  EXPECT_EQ(from.origin, "compiled");
  EXPECT_NE(from.pack_miss.find("no CPU binary for x86-64-v3 that runs here"), std::string::npos)
      << from.pack_miss;
  EXPECT_EQ(cached_binaries(), 2);
}

TEST_F(PackApiTest, CacheComesBeforePacks) {
  compile_rule("adadelta", with_packs({}));
  EXPECT_EQ(last_kernel_provenance().origin, "compiled");
  EXPECT_EQ(cached_binaries(), 1);
  clear_compiled_kernels();
  autotune::clear_memory_cache();
  compile_rule("adadelta", with_packs({pack()}));
  EXPECT_EQ(last_kernel_provenance().origin, "cache");
  EXPECT_TRUE(last_kernel_provenance().pack.empty());
}

TEST_F(PackApiTest, UnreadablePackIsAnError) {
  const std::string text = pack_testing::scratch("text.pack");
  std::ofstream(text) << "not a pack\n";
  EXPECT_NE(error_of("adadelta", with_packs({text})).find("is not a kernel pack"),
            std::string::npos);
  const std::string tampered = pack_testing::tampered(
      pack(), "api_tampered.pack", "UPDATE binary SET blob = CAST(zeroblob(64) AS BLOB)");
  EXPECT_NE(error_of("adadelta", with_packs({tampered})).find("does not match its SHA-256"),
            std::string::npos);
  const std::string abi = pack_testing::tampered(
      pack(), "api_abi.pack", "UPDATE manifest SET value = '99' WHERE key = 'abi_version'");
  EXPECT_NE(error_of("adadelta", with_packs({abi})).find("kernel ABI version 99"),
            std::string::npos);
  EXPECT_EQ(cached_binaries(), 0);  // nothing compiled behind the error
}

TEST_F(PackApiTest, TrustedKeysApply) {
  ASSERT_TRUE(pack_testing::signed_pack().ok) << pack_testing::signed_pack().build.err;
  const std::string key = pack_testing::shared_key("signing.key") + ".pub";
  CompileOptions unsigned_pack = with_packs({pack()});
  unsigned_pack.trusted_keys = {key};
  EXPECT_NE(error_of("adadelta", unsigned_pack).find("is not signed"), std::string::npos);
  CompileOptions signed_pack = with_packs({pack_testing::signed_pack().path});
  signed_pack.trusted_keys = {key};
  compile_rule("adadelta", signed_pack);
  EXPECT_EQ(last_kernel_provenance().origin, "pack");
  clear_compiled_kernels();
  setenv("FUSEOPT_PACK_TRUSTED_KEYS", (pack_testing::shared_key("other.key") + ".pub").c_str(), 1);
  EXPECT_NE(error_of("adadelta", with_packs({pack_testing::signed_pack().path}))
                .find("signed only by keys that are not trusted"),
            std::string::npos);
  EXPECT_EQ(cached_binaries(), 0);
}

}  // namespace
}  // namespace fuseopt

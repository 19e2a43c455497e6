// Kernel packs end to end (CPU targets): build with `fuseopt pack build`, inspect, verify,
// run with the runtime-only fuseopt-pack-run (bit-identical to the interpreter, no compiler on
// PATH, no Halide/LLVM/NVRTC linked), and every kind of bad pack giving a clear error, never a
// crash. CUDA targets: pack_cuda_test.cc; trusted keys: pack_trust_test.cc; the C++ API's
// lookup chain: pack_api_test.cc.
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "frontend/rule.h"
#include "pack/pack_loader.h"
#include "pack/pack_reader.h"
#include "runtime/cpu_binary.h"
#include "runtime/optimizer.h"
#include "support/error.h"
#include "tests/cli/process.h"
#include "tests/pack/pack_fixture.h"

namespace fuseopt {
namespace {

namespace fs = std::filesystem;
using testing::ProcessResult;
using testing::run_process;

class PackTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(pack_testing::adadelta_pack().ok)
        << pack_testing::adadelta_pack().build.out << pack_testing::adadelta_pack().build.err;
  }

  static std::string path(const std::string& name) { return pack_testing::scratch(name); }
  static std::string pack_path() { return pack_testing::adadelta_pack().path; }

  // A writable copy of the pack, changed by `sql`.
  static std::string tampered(const std::string& name, const char* sql) {
    return pack_testing::tampered(pack_path(), name, sql);
  }

  static ProcessResult pack_run(const std::vector<std::string>& args) {
    return pack_testing::pack_run(args);
  }

  static void expect_failure(const ProcessResult& r, int code, const std::string& text) {
    pack_testing::expect_failure(r, code, text);
  }
};

TEST_F(PackTest, InspectListsEveryCombination) {
  const ProcessResult r = run_process(FUSEOPT_BINARY, {"pack", "inspect", pack_path()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("adadelta_maximize0"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("adadelta_maximize1"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("abi_version:"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("binaries (2)"), std::string::npos) << r.out;
}

TEST_F(PackTest, VerifyAcceptsASoundPack) {
  const ProcessResult r = run_process(FUSEOPT_BINARY, {"pack", "verify", pack_path()});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find(": ok"), std::string::npos) << r.out;
}

TEST_F(PackTest, ReaderChecksTheManifest) {
  pack::PackReader reader(pack_path(), runtime::kKernelAbiVersion);
  EXPECT_EQ(reader.abi_version(), runtime::kKernelAbiVersion);
  EXPECT_EQ(reader.manifest().at("rules"), "adadelta");
  EXPECT_EQ(reader.manifest().at("targets"), "host");
  EXPECT_TRUE(reader.verify().empty());
  EXPECT_EQ(reader.rules().size(), 1u);
}

TEST_F(PackTest, PackKernelMatchesTheInterpreterBitForBit) {
  pack::PackReader reader(pack_path(), runtime::kKernelAbiVersion);
  pack::LoadedKernel loaded = pack::load_cpu_kernel_from_pack(reader, "adadelta", {{"maximize", "true"}});
  EXPECT_EQ(loaded.binary.config, "adadelta_maximize1");
  const frontend::Rule rule = frontend::load_rule("adadelta");
  auto reference = runtime::make_interpreter_kernel(rule.compile(rule.resolve_options({{"maximize", "true"}})));
  const int64_t n = 40000;
  std::vector<float> param(n), grad(n);
  for (int64_t i = 0; i < n; ++i) {
    param[i] = static_cast<float>((i % 97) - 48) * 0.01f;
    grad[i] = static_cast<float>((i % 31) - 15) * 0.003f;
  }
  Optimizer a(loaded.kernel, {}, 2), b(reference, {}, 2);
  a.add_tensor(n);
  b.add_tensor(n);
  for (Optimizer* o : {&a, &b}) {
    o->write_param(0, param);
    o->write_grad(0, grad);
    for (int s = 0; s < 3; ++s) o->step();
  }
  const std::vector<float> pa = a.read_param(0), pb = b.read_param(0);
  ASSERT_EQ(pa.size(), pb.size());
  EXPECT_EQ(std::memcmp(pa.data(), pb.data(), pa.size() * sizeof(float)), 0);
}

TEST_F(PackTest, PackRunRunsWithNoCompilerOnPath) {
  const ProcessResult r = pack_run({pack_path(), "adadelta", "--size", "10000", "--steps", "3"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("checksum:"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("per step:"), std::string::npos) << r.out;
  // The same run twice gives the same checksum; --json carries it too.
  const ProcessResult json =
      pack_run({pack_path(), "adadelta", "--size", "10000", "--steps", "3", "--json"});
  ASSERT_EQ(json.exit_code, 0) << json.err;
  const size_t at = r.out.find("checksum:   ") + 12;
  EXPECT_NE(json.out.find("\"checksum\": \"" + r.out.substr(at, 64) + "\""), std::string::npos)
      << json.out;
}

TEST_F(PackTest, PackRunLinksNoCompiler) {
  const ProcessResult r = run_process("/usr/bin/env", {"LC_ALL=C", "ldd", PACK_RUN_BINARY});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // The CUDA driver is opened with dlopen when a pack has CUDA binaries, never linked.
  for (const char* library : {"Halide", "LLVM", "nvrtc", "libcuda", "cudart", "clang"}) {
    EXPECT_EQ(r.out.find(library), std::string::npos) << library << " in:\n" << r.out;
  }
}

TEST_F(PackTest, NotAPackIsAClearError) {
  {
    std::ofstream(path("text.pack")) << "hello, this is not a pack\n";
  }
  expect_failure(pack_run({path("text.pack"), "adadelta"}), 1, "is not a kernel pack");
  expect_failure(pack_run({path("missing.pack"), "adadelta"}), 1, "no kernel pack at");
  expect_failure(run_process(FUSEOPT_BINARY, {"pack", "verify", path("text.pack")}), 1,
                 "is not a kernel pack");
}

TEST_F(PackTest, AnotherSqliteDatabaseIsNotAPack) {
  const std::string other = path("other.db");
  fs::remove(other);
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(other.c_str(), &db), SQLITE_OK);
  sqlite3_exec(db, "PRAGMA application_id = 1330918475; CREATE TABLE t (x);", nullptr, nullptr, nullptr);
  sqlite3_close(db);
  expect_failure(pack_run({other, "adadelta"}), 1, "is not a kernel pack (application_id");
}

TEST_F(PackTest, TruncatedPackIsAClearError) {
  std::ifstream in(pack_path(), std::ios::binary);
  std::stringstream bytes;
  bytes << in.rdbuf();
  const std::string all = bytes.str();
  for (size_t keep : {size_t{50}, size_t{4096}, all.size() / 2}) {
    const std::string truncated = path("truncated.pack");
    fs::remove(truncated);
    std::ofstream(truncated, std::ios::binary) << all.substr(0, keep);
    const ProcessResult r = pack_run({truncated, "adadelta"});
    EXPECT_EQ(r.signal, 0) << keep;
    EXPECT_NE(r.exit_code, 0) << keep;
    EXPECT_NE(r.err.find("fuseopt-pack-run: error: "), std::string::npos) << keep << r.err;
    const ProcessResult v = run_process(FUSEOPT_BINARY, {"pack", "verify", truncated});
    EXPECT_EQ(v.signal, 0) << keep;
    EXPECT_NE(v.exit_code, 0) << keep;
  }
}

TEST_F(PackTest, TamperedBlobIsRefused) {
  const std::string bad =
      tampered("tampered.pack", "UPDATE binary SET blob = CAST(zeroblob(64) AS BLOB)");
  expect_failure(pack_run({bad, "adadelta"}), 1, "does not match its SHA-256");
  const ProcessResult v = run_process(FUSEOPT_BINARY, {"pack", "verify", bad});
  expect_failure(v, 1, "failed verification");
  EXPECT_NE(v.out.find("blob does not match its SHA-256"), std::string::npos) << v.out;
  const std::string source = tampered("source.pack", "UPDATE rule SET source = source || ' '");
  expect_failure(run_process(FUSEOPT_BINARY, {"pack", "verify", source}), 1, "failed verification");
  expect_failure(pack_run({source, "adadelta"}), 1, "does not match its SHA-256");
}

TEST_F(PackTest, UnknownVersionsAreRefused) {
  const std::string abi =
      tampered("abi.pack", "UPDATE manifest SET value = '99' WHERE key = 'abi_version'");
  expect_failure(pack_run({abi, "adadelta"}), 1, "kernel ABI version 99");
  const std::string format =
      tampered("format.pack", "UPDATE manifest SET value = '7' WHERE key = 'format_version'");
  expect_failure(pack_run({format, "adadelta"}), 1, "format version 7");
  expect_failure(run_process(FUSEOPT_BINARY, {"pack", "inspect", format}), 1, "format version 7");
  const std::string manifest = tampered("manifest.pack", "DELETE FROM manifest WHERE key = 'rules'");
  expect_failure(pack_run({manifest, "adadelta"}), 1, "has no 'rules'");
}

TEST_F(PackTest, NoBinaryForThisHostGivesTheReason) {
  const std::string other =
      tampered("other_ir.pack", "UPDATE binary SET ir_hash = '00000000000000000000000000000000'");
  expect_failure(pack_run({other, "adadelta"}), 4, "compiled from other IR");
  expect_failure(pack_run({pack_path(), "adam"}), 1, "has no rule 'adam'");
  const std::string none = tampered("no_binaries.pack", "DELETE FROM binary");
  expect_failure(pack_run({none, "adadelta"}), 1, "has no CPU binary");
}

TEST_F(PackTest, SignedPackVerifiesOnlyWithItsKeyAndContent) {
  const std::string key = path("signing.key");
  const std::string other_key = path("other.key");
  for (const std::string& k : {key, other_key}) {
    fs::remove(k);
    fs::remove(k + ".pub");
    ASSERT_EQ(run_process(FUSEOPT_BINARY, {"pack", "keygen", k}).exit_code, 0);
  }
  expect_failure(run_process(FUSEOPT_BINARY, {"pack", "keygen", key}), 1, "does it exist?");
  EXPECT_EQ(fs::status(key).permissions() & fs::perms::group_read, fs::perms::none);
  const std::string pack = path("signed.pack");
  const ProcessResult build = run_process(
      FUSEOPT_BINARY, {"pack", "build", "adadelta", "--options", "maximize=false", "-o", pack,
                       "--sign", key});
  ASSERT_EQ(build.exit_code, 0) << build.err;
  const ProcessResult ok =
      run_process(FUSEOPT_BINARY, {"pack", "verify", pack, "--key", key + ".pub"});
  EXPECT_EQ(ok.exit_code, 0) << ok.out << ok.err;
  EXPECT_NE(ok.out.find("signed by"), std::string::npos) << ok.out;
  const ProcessResult other =
      run_process(FUSEOPT_BINARY, {"pack", "verify", pack, "--key", other_key + ".pub"});
  expect_failure(other, 1, "failed verification");
  EXPECT_NE(other.out.find("is not signed by the key"), std::string::npos) << other.out;
  // The unsigned pack is refused when a key is required.
  expect_failure(run_process(FUSEOPT_BINARY, {"pack", "verify", pack_path(), "--key", key + ".pub"}),
                 1, "failed verification");
  // Changing any metadata (consistently re-hashed or not) breaks the signature.
  const std::string copy = path("signed_tampered.pack");
  fs::remove(copy);
  fs::copy_file(pack, copy);
  fs::permissions(copy, fs::perms::owner_read | fs::perms::owner_write);
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(copy.c_str(), &db), SQLITE_OK);
  sqlite3_exec(db, "UPDATE binary SET chunk_elements = 1024", nullptr, nullptr, nullptr);
  sqlite3_close(db);
  const ProcessResult tampered_run =
      run_process(FUSEOPT_BINARY, {"pack", "verify", copy, "--key", key + ".pub"});
  expect_failure(tampered_run, 1, "failed verification");
  EXPECT_NE(tampered_run.out.find("does not match the pack's content"), std::string::npos)
      << tampered_run.out;
}

TEST_F(PackTest, UsageErrors) {
  expect_failure(pack_run({pack_path()}), 2, "needs a PACK and a RULE");
  expect_failure(pack_run({pack_path(), "adadelta", "--steps", "0"}), 2, "--steps");
  expect_failure(run_process(FUSEOPT_BINARY, {"pack", "build", "adadelta"}), 2, "-o FILE");
  expect_failure(run_process(FUSEOPT_BINARY,
                             {"pack", "build", "adadelta", "-o", path("x.pack"), "--targets", "z80"}),
                 1, "unknown pack target 'z80'");
}

}  // namespace
}  // namespace fuseopt

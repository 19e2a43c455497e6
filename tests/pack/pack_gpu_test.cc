// Kernel packs on a GPU (ctest label `gpu`; every test skips without one): fuseopt-pack-run
// picks the cubin of the device's exact SM (else the PTX, which the driver compiles), the PTX
// gives the cubin's bits, and the C++ API takes the pack's binary instead of compiling with
// NVRTC and gets the bits NVRTC's own compile gives.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "api/fuseopt.h"
#include "autotune/kernel_store.h"
#include "runtime/cuda/cuda_driver.h"
#include "tests/pack/pack_fixture.h"

namespace fuseopt {
namespace {

using pack_testing::pack_run;
using pack_testing::ProcessResult;

class PackGpu : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string reason = runtime::CudaDriver::unavailable_reason();
    if (!reason.empty()) GTEST_SKIP() << "no usable GPU: " << reason;
    ASSERT_TRUE(pack_testing::mixed_pack().ok) << pack_testing::mixed_pack().build.err;
  }
  // The binary fuseopt-pack-run should take on this GPU.
  static std::string expected_target() {
    const std::string arch = runtime::CudaDriver::get().device().arch();
    return arch == "sm_80" || arch == "sm_90" ? arch : "ptx";
  }
  static std::string field(const std::string& json, const std::string& name) {
    const std::string key = "\"" + name + "\": ";
    const size_t at = json.find(key);
    if (at == std::string::npos) return "";
    const size_t start = at + key.size();
    const size_t end = json.find_first_of(",}", start);
    std::string value = json.substr(start, end - start);
    if (!value.empty() && value.front() == '"') value = value.substr(1, value.size() - 2);
    return value;
  }
};

TEST_F(PackGpu, PackRunPicksTheExactSmElseThePtxWithTheSameBits) {
  const std::vector<std::string> args = {"adadelta", "--device", "cuda", "--size", "1000003",
                                         "--steps", "3", "--json"};
  std::vector<std::string> run = {pack_testing::mixed_pack().path};
  run.insert(run.end(), args.begin(), args.end());
  const ProcessResult r = pack_run(run);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(field(r.out, "target"), expected_target()) << r.out;
  std::printf("pack-run on %s: %s", runtime::CudaDriver::get().device().name.c_str(),
              r.out.c_str());

  const std::string ptx_only = pack_testing::tampered(
      pack_testing::mixed_pack().path, "ptx_only.pack",
      "DELETE FROM cuda_launch WHERE binary IN (SELECT id FROM binary WHERE kind = 'cubin'); "
      "DELETE FROM binary WHERE kind = 'cubin'");
  run[0] = ptx_only;
  const ProcessResult p = pack_run(run);
  ASSERT_EQ(p.exit_code, 0) << p.err;
  EXPECT_EQ(field(p.out, "target"), "ptx") << p.out;
  EXPECT_EQ(field(p.out, "checksum"), field(r.out, "checksum"));
}

TEST_F(PackGpu, ApiTakesThePacksBinaryWithNvrtcsBits) {
  setenv("FUSEOPT_CACHE", pack_testing::scratch("cache").c_str(), 1);
  CompileOptions options;
  options.backend = Backend::kCuda;
  options.packs = {pack_testing::mixed_pack().path};
  auto from_pack = compile_rule("adadelta", options);
  ASSERT_EQ(last_kernel_provenance().origin, "pack");
  EXPECT_EQ(last_kernel_provenance().binary, expected_target());
  clear_compiled_kernels();
  options.packs.clear();
  auto compiled = compile_rule("adadelta", options);
  ASSERT_EQ(last_kernel_provenance().origin, "compiled");

  const int64_t n = 300007;
  std::vector<float> param(n), grad(n);
  for (int64_t i = 0; i < n; ++i) {
    param[i] = static_cast<float>((i % 89) - 44) * 0.01f;
    grad[i] = static_cast<float>((i % 23) - 11) * 0.004f;
  }
  Optimizer a(from_pack), b(compiled);
  for (Optimizer* o : {&a, &b}) {
    o->add_tensor(n);
    o->write_param(0, param);
    o->write_grad(0, grad);
    for (int s = 0; s < 3; ++s) o->step();
  }
  const std::vector<float> pa = a.read_param(0), pb = b.read_param(0);
  EXPECT_EQ(std::memcmp(pa.data(), pb.data(), pa.size() * sizeof(float)), 0);
}

}  // namespace
}  // namespace fuseopt

// CUDA targets in kernel packs, without a GPU: `pack build --targets sm_80,sm_90,ptx` stores
// real cubins (ELF for EM_CUDA recording their SM) and PTX (a .version and the .target of
// its arch) compiled by NVRTC; inspect and verify show and check them; the chooser picks the
// exact SM's cubin, else the PTX, for made-up compute capabilities; the loader hands the
// chosen bytes to the device (a recording fake); and fuseopt-pack-run with a CUDA-only pack
// on a machine without a GPU says so and exits 4. The build needs NVRTC: tests skip without.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "pack/pack_loader.h"
#include "pack/pack_reader.h"
#include "runtime/cuda/cuda_device.h"
#include "support/error.h"
#include "tests/pack/pack_fixture.h"

namespace fuseopt {
namespace {

using pack::BinaryEntry;
using pack_testing::expect_failure;
using pack_testing::fuseopt;
using pack_testing::mixed_pack;
using pack_testing::pack_run;
using pack_testing::ProcessResult;

class PackCudaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const pack_testing::SharedPack& pack = mixed_pack();
    if (!pack.ok && pack.build.err.find("NVRTC") != std::string::npos) {
      GTEST_SKIP() << "no NVRTC on this machine: " << pack.build.err;
    }
    ASSERT_TRUE(pack.ok) << pack.build.out << pack.build.err;
  }
  static std::string pack_path() { return mixed_pack().path; }
  // The pack without its CPU binary (the blobs and their hashes untouched).
  static std::string cuda_only() {
    return pack_testing::tampered(pack_path(), "cuda_only.pack",
                                  "DELETE FROM binary WHERE kind = 'cpu'");
  }
};

TEST_F(PackCudaTest, BlobsAreRealCubinsAndPtxForTheirArch) {
  const std::string sm80 = pack_testing::blob_of(pack_path(), "sm_80");
  const std::string sm90 = pack_testing::blob_of(pack_path(), "sm_90");
  const std::string ptx = pack_testing::blob_of(pack_path(), "ptx");
  EXPECT_EQ(sm80.substr(0, 4),
            "\x7f"
            "ELF");
  EXPECT_EQ(sm90.substr(0, 4),
            "\x7f"
            "ELF");
  EXPECT_EQ(pack::cubin_sm(sm80), 80);
  EXPECT_EQ(pack::cubin_sm(sm90), 90);
  EXPECT_EQ(pack::cubin_sm(ptx), 0);
  EXPECT_NE(ptx.find("\n.version "), std::string::npos);
  EXPECT_NE(ptx.find("\n.target sm_80"), std::string::npos);
  EXPECT_EQ(ptx.find('\0'), std::string::npos) << "the PTX keeps NVRTC's NUL";
  EXPECT_NE(ptx.find(".entry"), std::string::npos);

  pack::PackReader reader(pack_path());
  int cuda = 0;
  for (const BinaryEntry& entry : reader.binaries()) {
    if (!entry.is_cuda()) continue;
    ++cuda;
    EXPECT_TRUE(entry.has_launch) << entry.target;
    EXPECT_EQ(entry.block_size, 512) << entry.target;
    EXPECT_NE(entry.table_layout.find("v1 "), std::string::npos) << entry.table_layout;
    EXPECT_EQ(entry.backend_target, entry.target == "ptx" ? "compute_80" : entry.target);
    EXPECT_EQ(entry.kind, entry.target == "ptx" ? "ptx" : "cubin");
  }
  EXPECT_EQ(cuda, 3);
  EXPECT_EQ(reader.manifest().at("targets"), "host,sm_80,sm_90,ptx");
  EXPECT_EQ(reader.manifest().count("nvrtc_version"), 1u);
}

TEST_F(PackCudaTest, InspectAndVerifyShowTheCudaBinaries) {
  const ProcessResult inspect = fuseopt({"pack", "inspect", pack_path()});
  ASSERT_EQ(inspect.exit_code, 0) << inspect.err;
  for (const char* text :
       {"binaries (4)", "cubin  sm_80", "cubin  sm_90", "ptx    compute_80", "b512_e8_v4_c65536_g0",
        "nvrtc_version:", "bytes per rule and target:"}) {
    EXPECT_NE(inspect.out.find(text), std::string::npos) << text << " in:\n" << inspect.out;
  }
  const ProcessResult verify = fuseopt({"pack", "verify", pack_path()});
  EXPECT_EQ(verify.exit_code, 0) << verify.out << verify.err;
}

TEST_F(PackCudaTest, VerifyCatchesACubinForAnotherSm) {
  // The sm_80 cubin stored as sm_90's, consistently re-hashed: only the ELF header tells.
  const std::string swapped = pack_testing::tampered(
      pack_path(), "swapped.pack",
      "UPDATE binary SET (blob, sha256) = (SELECT blob, sha256 FROM binary WHERE target = "
      "'sm_80') WHERE target = 'sm_90'");
  const ProcessResult verify = fuseopt({"pack", "verify", swapped});
  expect_failure(verify, 1, "failed verification");
  EXPECT_NE(verify.out.find("a cubin for sm_80, recorded as sm_90"), std::string::npos)
      << verify.out;
  const std::string no_launch =
      pack_testing::tampered(pack_path(), "no_launch.pack", "DELETE FROM cuda_launch");
  const ProcessResult v2 = fuseopt({"pack", "verify", no_launch});
  expect_failure(v2, 1, "failed verification");
  EXPECT_NE(v2.out.find("no cuda_launch row"), std::string::npos) << v2.out;
}

TEST_F(PackCudaTest, LaunchDataIsPartOfTheSignedContent) {
  // Launch data has no blob hash of its own: the content digest (what a signature signs)
  // must change with it, or a signed pack's block size could be changed unnoticed.
  const std::string changed = pack_testing::tampered(pack_path(), "block_size.pack",
                                                     "UPDATE cuda_launch SET block_size = 256");
  pack::PackReader original(pack_path()), tampered(changed);
  EXPECT_TRUE(tampered.verify().empty());  // every hash still matches
  EXPECT_NE(original.content_digest(), tampered.content_digest());
  const std::string cpu_only = pack_testing::tampered(
      pack_testing::adadelta_pack().path, "no_launch_table.pack", "DROP TABLE cuda_launch");
  pack::PackReader without(cpu_only), with(pack_testing::adadelta_pack().path);
  // A CPU pack's digest is the same with or without the (empty) table: older packs stay
  // signed.
  EXPECT_EQ(without.content_digest(), with.content_digest());
  EXPECT_EQ(without.binaries().size(), 2u);
}

TEST_F(PackCudaTest, PackRunWithACudaOnlyPackAndNoGpuSaysSo) {
  const std::string pack = cuda_only();
  const ProcessResult r = pack_run({pack, "adadelta", "--size", "1000"},
                                   {"FUSEOPT_CUDA_DRIVER=/nonexistent/libcuda.so.1"});
  expect_failure(r, 4, "has only CUDA binaries of 'adadelta_maximize0' (sm_80, sm_90, ptx)");
  EXPECT_NE(r.err.find("this machine cannot run CUDA: no CUDA driver"), std::string::npos) << r.err;
  // Asking for the CPU names what the pack has instead.
  expect_failure(pack_run({pack, "adadelta", "--device", "cpu"}), 1,
                 "has no CPU binary of 'adadelta_maximize0' (it has CUDA binaries for: sm_80, "
                 "sm_90, ptx)");
}

TEST_F(PackCudaTest, PackRunFallsBackToTheCpuWithoutAGpu) {
  const ProcessResult r =
      pack_run({pack_path(), "adadelta", "--size", "1000", "--steps", "2", "--json"},
               {"FUSEOPT_CUDA_DRIVER=/nonexistent/libcuda.so.1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("\"target\": \"host\""), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"kind\": \"cpu\""), std::string::npos) << r.out;
  expect_failure(pack_run({pack_path(), "adadelta", "--device", "cuda"},
                          {"FUSEOPT_CUDA_DRIVER=/nonexistent/libcuda.so.1"}),
                 4, "this machine cannot run CUDA");
  expect_failure(pack_run({pack_path(), "adadelta", "--device", "tpu"}), 2, "--device");
}

// ---- The chooser, on made-up binaries and compute capabilities -------------------------

BinaryEntry entry(const std::string& target, const std::string& kind, const std::string& arch,
                  const std::string& ir_hash = "h") {
  BinaryEntry e;
  e.target = target;
  e.kind = kind;
  e.backend_target = arch;
  e.ir_hash = ir_hash;
  return e;
}

std::string chosen(const std::vector<BinaryEntry>& candidates, int major, int minor) {
  const pack::BinaryChoice choice = pack::choose_cuda_binary(candidates, major, minor, "h");
  return choice.binary ? choice.binary->target : "none:" + choice.reasons;
}

TEST(PackCudaChooser, ExactSmCubinElseThePtx) {
  const std::vector<BinaryEntry> all = {
      entry("host", "cpu", "x86-64-linux"), entry("ptx", "ptx", "compute_80"),
      entry("sm_80", "cubin", "sm_80"), entry("sm_90", "cubin", "sm_90")};
  EXPECT_EQ(chosen(all, 9, 0), "sm_90");
  EXPECT_EQ(chosen(all, 8, 0), "sm_80");
  // No exact cubin: the PTX, which the driver compiles for the device.
  EXPECT_EQ(chosen(all, 8, 6), "ptx");
  EXPECT_EQ(chosen(all, 8, 9), "ptx");
  EXPECT_EQ(chosen(all, 10, 0), "ptx");
  EXPECT_EQ(chosen(all, 12, 0), "ptx");
  // Older than the PTX's arch: nothing, with each binary's reason.
  const std::string older = chosen(all, 7, 5);
  EXPECT_EQ(older.rfind("none:", 0), 0u) << older;
  EXPECT_NE(older.find("sm_90: a cubin for sm_90, this GPU is sm_75"), std::string::npos) << older;
  EXPECT_NE(older.find("ptx: PTX for compute_80 needs a newer GPU than sm_75"), std::string::npos)
      << older;
}

TEST(PackCudaChooser, WithoutPtxOnlyTheExactSm) {
  const std::vector<BinaryEntry> cubins = {entry("sm_80", "cubin", "sm_80"),
                                           entry("sm_90", "cubin", "sm_90")};
  EXPECT_EQ(chosen(cubins, 9, 0), "sm_90");
  const std::string sm86 = chosen(cubins, 8, 6);
  EXPECT_NE(sm86.find("sm_80: a cubin for sm_80, this GPU is sm_86"), std::string::npos) << sm86;
}

TEST(PackCudaChooser, OtherIrNeverCounts) {
  const std::vector<BinaryEntry> other = {entry("sm_90", "cubin", "sm_90", "other"),
                                          entry("ptx", "ptx", "compute_80", "other")};
  const std::string none = chosen(other, 9, 0);
  EXPECT_NE(none.find("sm_90: compiled from other IR"), std::string::npos) << none;
  EXPECT_NE(none.find("ptx: compiled from other IR"), std::string::npos) << none;
}

// ---- The loader, on a device that records what it is given -----------------------------

class RecordingDevice final : public runtime::CudaDevice {
 public:
  RecordingDevice(int major, int minor) {
    info_.name = "recording device";
    info_.sm_major = major;
    info_.sm_minor = minor;
    info_.sm_count = 4;
  }
  const runtime::CudaDeviceInfo& device() const override { return info_; }
  runtime::CudaDevicePtr allocate(size_t) const override { return next_ += 256; }
  void free(runtime::CudaDevicePtr) const noexcept override {}
  void copy_to_device(runtime::CudaDevicePtr, const void*, size_t) const override {}
  void copy_to_host(void*, runtime::CudaDevicePtr, size_t) const override {}
  void synchronize() const override {}
  runtime::CudaModule load_module(std::string_view cubin, std::string_view ptx) const override {
    cubin_ = std::string(cubin);
    ptx_ = std::string(ptx);
    return reinterpret_cast<runtime::CudaModule>(&cubin_);
  }
  runtime::CudaFunction function(runtime::CudaModule, const std::string& name) const override {
    functions_.push_back(name);
    return reinterpret_cast<runtime::CudaFunction>(&functions_);
  }
  int resident_blocks_per_sm(runtime::CudaFunction, int) const override { return 2; }
  void launch(runtime::CudaFunction, unsigned, unsigned, void**) const override {
    ADD_FAILURE() << "loading launches nothing";
  }

  mutable std::string cubin_, ptx_;
  mutable std::vector<std::string> functions_;

 private:
  runtime::CudaDeviceInfo info_;
  mutable runtime::CudaDevicePtr next_ = 4096;
};

TEST_F(PackCudaTest, LoaderGivesTheDeviceTheChosenBytes) {
  pack::PackReader reader(pack_path(), runtime::kKernelAbiVersion);
  {
    RecordingDevice h100(9, 0);
    const pack::LoadedKernel loaded =
        pack::load_cuda_kernel_from_pack(reader, "adadelta", {}, h100);
    EXPECT_EQ(loaded.binary.target, "sm_90");
    EXPECT_EQ(pack::cubin_sm(h100.cubin_), 90);
    EXPECT_TRUE(h100.ptx_.empty());
    EXPECT_EQ(h100.functions_, loaded.binary.phase_functions);
    EXPECT_EQ(loaded.kernel->backend, "cuda");
    EXPECT_TRUE(loaded.kernel->device_memory);
  }
  {
    RecordingDevice a10(8, 6);
    const pack::LoadedKernel loaded = pack::load_cuda_kernel_from_pack(reader, "adadelta", {}, a10);
    EXPECT_EQ(loaded.binary.target, "ptx");
    EXPECT_TRUE(a10.cubin_.empty());
    EXPECT_NE(a10.ptx_.find(".target sm_80"), std::string::npos);
  }
  RecordingDevice t4(7, 5);
  try {
    pack::load_cuda_kernel_from_pack(reader, "adadelta", {}, t4);
    ADD_FAILURE() << "a 7.5 GPU got a binary";
  } catch (const EnvironmentError& e) {
    EXPECT_NE(std::string(e.what()).find("that this GPU (recording device, sm_75) can run"),
              std::string::npos)
        << e.what();
  }
  // A configuration the pack lacks is the user's error.
  EXPECT_THROW(pack::load_cuda_kernel_from_pack(reader, "adadelta", {{"maximize", "true"}}, t4),
               UserError);
}

}  // namespace
}  // namespace fuseopt

// Device and toolchain fingerprints: /proc/cpuinfo parsing, ISA levels, class versus exact
// keys, and canonical JSON.
#include "autotune/fingerprint.h"

#include <gtest/gtest.h>

#include "autotune/gpu_description.h"

namespace fuseopt::autotune {
namespace {

constexpr const char* kCpuinfo =
    "processor\t: 0\n"
    "vendor_id\t: AuthenticAMD\n"
    "cpu family\t: 25\n"
    "model\t\t: 17\n"
    "model name\t: AMD EPYC 9654 96-Core Processor\n"
    "stepping\t: 1\n"
    "microcode\t: 0xa101144\n"
    "flags\t\t: fpu sse sse2 ssse3 fma cx16 sse4_1 sse4_2 movbe popcnt xsave avx f16c "
    "lahf_lm abm bmi1 avx2 bmi2 avx512f avx512dq avx512cd avx512bw avx512vl hypervisor\n"
    "\n"
    "processor\t: 1\n"
    "vendor_id\t: SomethingElse\n"
    "flags\t\t: fpu\n";

TEST(FingerprintTest, ParsesTheFirstProcessorOfCpuinfo) {
  CpuDescription cpu;
  parse_cpuinfo(kCpuinfo, cpu);
  EXPECT_EQ(cpu.vendor, "AuthenticAMD");
  EXPECT_EQ(cpu.model_name, "AMD EPYC 9654 96-Core Processor");
  EXPECT_EQ(cpu.family, 25);
  EXPECT_EQ(cpu.model, 17);
  EXPECT_EQ(cpu.stepping, 1);
  EXPECT_EQ(cpu.microcode, "0xa101144");
  EXPECT_EQ(cpu.isa_level, "x86-64-v4");
  EXPECT_TRUE(std::is_sorted(cpu.features.begin(), cpu.features.end()));
  EXPECT_NE(std::find(cpu.features.begin(), cpu.features.end(), "avx512f"), cpu.features.end());
  // Flags that do not change code stay out of the class.
  EXPECT_EQ(std::find(cpu.features.begin(), cpu.features.end(), "hypervisor"), cpu.features.end());
}

TEST(FingerprintTest, IsaLevels) {
  EXPECT_EQ(isa_level_of({"sse", "sse2"}), "x86-64-v1");
  EXPECT_EQ(isa_level_of({"cx16", "lahf_lm", "popcnt", "sse4_1", "sse4_2", "ssse3"}), "x86-64-v2");
  EXPECT_EQ(isa_level_of({"cx16", "lahf_lm", "popcnt", "sse4_1", "sse4_2", "ssse3", "avx", "avx2",
                          "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave"}),
            "x86-64-v3");
}

TEST(FingerprintTest, ExactKeySeesWhatTheClassIgnores) {
  CpuDescription a;
  parse_cpuinfo(kCpuinfo, a);
  a.logical_cores = a.physical_cores = 16;
  a.l2_bytes = 1 << 20;
  a.l3_bytes = 32 << 20;
  CpuDescription b = a;
  b.microcode = "0xa101148";
  b.os_release = "6.1.0-99";
  const DeviceFingerprint fa = fingerprint_cpu(a), fb = fingerprint_cpu(b);
  EXPECT_EQ(fa.klass, fb.klass);
  EXPECT_NE(fa.exact, fb.exact);
  EXPECT_EQ(fa.kind, "cpu");
  CpuDescription c = a;
  c.logical_cores = 8;  // a smaller affinity mask is another class: tuning differs
  EXPECT_NE(fingerprint_cpu(c).klass, fa.klass);
  EXPECT_EQ(fingerprint_cpu(a).exact_json, fa.exact_json);  // deterministic
  EXPECT_EQ(fa.class_json.front(), '{');
}

TEST(FingerprintTest, GpuFingerprintsForTheCudaBackend) {
  GpuDescription h100;
  h100.name = "NVIDIA H100 80GB HBM3";
  h100.sm_major = 9;
  h100.sm_count = 132;
  h100.memory_bytes = int64_t{80} << 30;
  h100.l2_bytes = 50 << 20;
  h100.driver_version = "12.4";
  GpuDescription newer_driver = h100;
  newer_driver.driver_version = "12.6";
  GpuDescription pcie = h100;
  pcie.sm_count = 114;
  const DeviceFingerprint f = fingerprint_gpu(h100);
  EXPECT_EQ(f.kind, "cuda");
  EXPECT_EQ(f.klass, fingerprint_gpu(newer_driver).klass);
  EXPECT_NE(f.exact, fingerprint_gpu(newer_driver).exact);
  EXPECT_NE(f.klass, fingerprint_gpu(pcie).klass);
  EXPECT_NE(f.class_json.find("\"sm\":\"9.0\""), std::string::npos);
}

TEST(FingerprintTest, TheCudaRuntimesDeviceInfoBecomesAGpuDescription) {
  runtime::CudaDeviceInfo info;
  info.name = "NVIDIA H200";
  info.sm_major = 9;
  info.sm_minor = 0;
  info.sm_count = 132;
  info.total_memory = uint64_t{141} << 30;
  info.driver_version = 12040;
  const GpuDescription gpu = describe_gpu(info);
  EXPECT_EQ(gpu.name, "NVIDIA H200");
  EXPECT_EQ(gpu.driver_version, "12.4");
  EXPECT_EQ(gpu.sm_count, 132);
  EXPECT_EQ(gpu.memory_bytes, int64_t{141} << 30);
  EXPECT_EQ(fingerprint_gpu(gpu).kind, "cuda");
}

TEST(FingerprintTest, ToolchainsDifferWhenTheirBytesWould) {
  const ToolchainFingerprint a = cpu_toolchain("Halide 14.0.0 LLVM 14.0.6");
  EXPECT_EQ(a.digest, cpu_toolchain("Halide 14.0.0 LLVM 14.0.6").digest);
  EXPECT_NE(a.digest, cpu_toolchain("Halide 15.0.0 LLVM 15.0.0").digest);
  EXPECT_NE(a.json.find(codegen_digest()), std::string::npos);
  EXPECT_NE(a.json.find(fuseopt_version()), std::string::npos);
  const ToolchainFingerprint cuda = cuda_toolchain("12.4", {"-arch=sm_90", "-ftz=false"});
  EXPECT_NE(cuda.digest, cuda_toolchain("12.4", {"-ftz=false", "-arch=sm_90"}).digest);
  EXPECT_NE(cuda.digest, cuda_toolchain("12.6", {"-arch=sm_90", "-ftz=false"}).digest);
  EXPECT_NE(cuda_toolchain("", {}).json.find("probe_failed"), std::string::npos);
}

TEST(FingerprintTest, HostCpuIsDescribed) {
  const CpuDescription& cpu = host_cpu();
  EXPECT_GE(cpu.logical_cores, 1);
  EXPECT_GE(cpu.physical_cores, 1);
  EXPECT_LE(cpu.physical_cores, cpu.logical_cores);
  EXPECT_FALSE(cpu.isa_level.empty());
}

}  // namespace
}  // namespace fuseopt::autotune

// Who measured, and with what: fingerprints of devices (what a tuning decision depends on)
// and of toolchains (what a binary's bytes depend on). Each is a canonical JSON text and its
// SHA-256; the JSON is stored beside the digest so "why did I miss?" has an answer.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "support/sha256.h"

namespace fuseopt::autotune {

/// What this process sees of the CPU it runs on (Linux: /proc/cpuinfo, sysfs, the
/// affinity mask).
struct CpuDescription {
  std::string vendor;      ///< "GenuineIntel", "AuthenticAMD"
  std::string model_name;  ///< the marketing name
  int family = 0;
  int model = 0;
  int stepping = 0;
  std::string microcode;
  std::string isa_level;              ///< "x86-64-v1" ... "x86-64-v4"
  std::vector<std::string> features;  ///< the code-relevant flags, sorted
  int logical_cores = 1;              ///< in this process's affinity mask
  int physical_cores = 1;             ///< of those
  int64_t l1d_bytes = 0;
  int64_t l2_bytes = 0;
  int64_t l3_bytes = 0;
  int numa_nodes = 1;
  std::string os_release;  ///< the kernel release (uname -r)
};

/// This machine's CPU, read once per process.
const CpuDescription& host_cpu();
/// Parses the text of /proc/cpuinfo (the first processor's entry) into `cpu`: vendor, model,
/// flags and the ISA level. Exposed for tests.
void parse_cpuinfo(const std::string& text, CpuDescription& cpu);
/// The x86-64 micro-architecture level the flags of /proc/cpuinfo give.
std::string isa_level_of(const std::vector<std::string>& flags);

/// What the tuner needs to know of a GPU, from cuDeviceGetAttribute and cuDriverGetVersion
/// (autotune/gpu_description.h converts runtime::CudaDeviceInfo); nothing here calls CUDA.
struct GpuDescription {
  std::string name;  ///< "NVIDIA H100 80GB HBM3"
  int sm_major = 0;
  int sm_minor = 0;
  int sm_count = 0;
  int64_t memory_bytes = 0;
  int64_t l2_bytes = 0;
  int memory_bus_bits = 0;
  int memory_clock_khz = 0;
  std::string driver_version;  ///< "12.4" from cuDriverGetVersion
  std::string mig_profile;     ///< empty when not a MIG instance
};

/// A device's two keys. Decisions are written under `exact` and read back through `klass`
/// too: another machine of the same class (same model, cores, caches) reuses them.
struct DeviceFingerprint {
  std::string kind;  ///< "cpu" or "cuda"
  std::string name;  ///< for people: the model name
  support::Sha256Digest exact{};
  support::Sha256Digest klass{};
  std::string exact_json;  ///< canonical JSON hashed into `exact` (includes the class)
  std::string class_json;  ///< canonical JSON hashed into `klass`
};

DeviceFingerprint fingerprint_cpu(const CpuDescription& cpu);
DeviceFingerprint fingerprint_gpu(const GpuDescription& gpu);

/// Everything that changes a binary's bytes except the IR and the ISA target (which are
/// keys of their own): fuseopt's version and a digest of the code generator's sources,
/// the code generator's versions (Halide/LLVM or NVRTC), the options, the kernel ABI.
struct ToolchainFingerprint {
  support::Sha256Digest digest{};
  std::string json;
};

/// The CPU backend's toolchain; `halide_version` as codegen::halide_version() gives it.
ToolchainFingerprint cpu_toolchain(const std::string& halide_version);
/// The CUDA backend's toolchain: the NVRTC version and the exact option vector.
ToolchainFingerprint cuda_toolchain(const std::string& nvrtc_version,
                                    const std::vector<std::string>& options);

/// fuseopt's version, e.g. "0.1.0".
const char* fuseopt_version();
/// The digest of the code generators' sources this library was built with.
const char* codegen_digest();

}  // namespace fuseopt::autotune

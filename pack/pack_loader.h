// From a pack entry to a runnable kernel, with no compiler: the rule's source (stored in the
// pack) is compiled to IR by the frontend, its hash is checked against the binary's, and the
// binary is loaded by the runtime (a CPU shared object with dlopen from memory; a cubin or
// PTX through the CUDA driver, itself opened with dlopen). Links support, ir, frontend, the
// runtime and libsodium (signatures): never Halide, LLVM or NVRTC.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "ir/kernel.h"
#include "pack/pack_reader.h"
#include "runtime/kernel_abi.h"

namespace fuseopt::runtime {
class CudaDevice;
}

namespace fuseopt::pack {

struct LoadedKernel {
  std::shared_ptr<const runtime::CompiledKernel> kernel;
  BinaryEntry binary;  ///< the binary chosen
  std::map<std::string, double> hyper_defaults;
};

/// Where a kernel from a pack runs.
enum class PackDevice {
  kAuto,  ///< CUDA when the pack has a CUDA binary of the configuration and CUDA works here
  kCpu,
  kCuda,
};

/// Parses "auto", "cpu", "cuda"; UserError otherwise.
PackDevice parse_pack_device(const std::string& name);

/// The rule `rule` of the pack with `options` (NAME -> "true"/"false"/integer; the rule's
/// defaults otherwise) compiled to IR from the pack's own source, which is checked against its
/// SHA-256 first. UserError when the rule is absent or damaged.
struct PackRuleKernel {
  ir::Kernel kernel;
  std::string config;   ///< kernel.config_name()
  std::string ir_hash;  ///< hex, as BinaryEntry::ir_hash
  std::map<std::string, double> hyper_defaults;
};
PackRuleKernel compile_pack_rule(PackReader& pack, const std::string& rule,
                                 const std::map<std::string, std::string>& options = {});

/// The hex IR hash that packs and caches key binaries by: SHA-256 of "fuseopt-ir-v1\n" +
/// ir::print_kernel(kernel).
std::string kernel_ir_hash(const ir::Kernel& kernel);

/// The outcome of choosing a binary: the one to load (null when none fits) and, for each
/// candidate skipped, why ("\n  TARGET: reason" lines).
struct BinaryChoice {
  const BinaryEntry* binary = nullptr;
  std::string reasons;
};

/// Chooses among `candidates` the CUDA binary for a GPU of compute capability
/// `sm_major`.`sm_minor`: the cubin built for exactly that SM, else the PTX when the GPU is at
/// least as new as the PTX's arch (the driver JIT-compiles it). Only binaries of kind cubin or
/// ptx whose ir_hash equals `ir_hash` count. Pure: tested with made-up capabilities.
BinaryChoice choose_cuda_binary(const std::vector<BinaryEntry>& candidates, int sm_major,
                                int sm_minor, const std::string& ir_hash);

/// Chooses among `candidates` the CPU binary this machine can run: with `cpu_target` "host",
/// the "host" binary if it runs here, else the highest x86-64 level; with an x86-64 level,
/// only that level. Only binaries of kind cpu whose ir_hash equals `ir_hash` count.
BinaryChoice choose_cpu_binary(const std::vector<BinaryEntry>& candidates,
                               const std::string& ir_hash, const std::string& cpu_target = "host");

/// Loads a chosen CPU binary for `kernel` (its blob's SHA-256 checked).
std::shared_ptr<const runtime::CompiledKernel> load_cpu_binary(PackReader& pack,
                                                               const ir::Kernel& kernel,
                                                               const BinaryEntry& entry);
/// Loads a chosen CUDA binary for `kernel` on `device` (which must outlive the kernel): the
/// blob's SHA-256 and format are checked, a cubin goes to the driver as a cubin, PTX as PTX.
std::shared_ptr<const runtime::CompiledKernel> load_cuda_binary(PackReader& pack,
                                                                const ir::Kernel& kernel,
                                                                const BinaryEntry& entry,
                                                                const runtime::CudaDevice& device);

/// Chooses the best CPU binary of `rule` with `options` that this machine can run (see
/// choose_cpu_binary). Throws UserError when the rule or configuration is absent, or
/// EnvironmentError naming each binary's reason when none runs here.
LoadedKernel load_cpu_kernel_from_pack(PackReader& pack, const std::string& rule,
                                       const std::map<std::string, std::string>& options = {});

/// The same for a CUDA device (see choose_cuda_binary).
LoadedKernel load_cuda_kernel_from_pack(PackReader& pack, const std::string& rule,
                                        const std::map<std::string, std::string>& options,
                                        const runtime::CudaDevice& device);

/// `device` kAuto: the CUDA binary on the process's GPU (runtime::CudaDriver::get()) when
/// the pack has one for this configuration and CUDA works here, else the CPU binary. A pack
/// with only CUDA binaries of the configuration on a machine without a usable GPU is an
/// EnvironmentError that says so, with the driver's reason. kCuda without a GPU likewise.
LoadedKernel load_kernel_from_pack(PackReader& pack, const std::string& rule,
                                   const std::map<std::string, std::string>& options,
                                   PackDevice device = PackDevice::kAuto);

}  // namespace fuseopt::pack

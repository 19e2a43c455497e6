// From a pack entry to a runnable kernel, with no compiler: the rule's source (stored in the
// pack) is compiled to IR by the frontend, its hash is checked against the binary's, and the
// binary is loaded by the runtime (dlopen from memory). Links support, ir, frontend and the
// runtime: never Halide, LLVM or NVRTC.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "pack/pack_reader.h"
#include "runtime/kernel_abi.h"

namespace fuseopt::pack {

struct LoadedKernel {
  std::shared_ptr<const runtime::CompiledKernel> kernel;
  BinaryEntry binary;  ///< the binary chosen
  std::map<std::string, double> hyper_defaults;
};

/// Chooses the best CPU binary of `rule` with `options` (NAME -> "true"/"false"/integer;
/// the rule's defaults otherwise) that this machine can run: "host" if it runs here, else
/// the highest x86-64 level. Throws UserError when the rule or configuration is absent, or
/// EnvironmentError naming each binary's reason when none runs here.
LoadedKernel load_cpu_kernel_from_pack(PackReader& pack, const std::string& rule,
                                       const std::map<std::string, std::string>& options = {});

}  // namespace fuseopt::pack

// IR kernel -> CUDA C (cuda_source.h) -> NVRTC -> a cubin for one SM plus its PTX, with the
// resources ptxas reports. runtime/cuda loads the result (runtime/cuda/cuda_kernel.h); this
// library is the only one that uses NVRTC.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "codegen/cuda/launch_shape.h"
#include "ir/kernel.h"

namespace fuseopt::codegen {

/// A kernel compiled for one CUDA architecture (see cuda_source.h for the calling
/// convention of the phase functions).
struct CudaBinary {
  std::string name;  ///< spells the configuration, e.g. "adam_amsgrad0_maximize0_cuda_sm_90_b512_e8_v4_c65536_g0"
  std::string arch;  ///< "sm_90" (cubin and PTX) or "compute_90" (PTX only)
  std::string cubin;
  std::string ptx;   ///< the fallback when no cubin matches the device
  std::vector<std::string> phase_functions;
  CudaLaunchShape shape;
  std::vector<int> registers;  ///< per phase function, as ptxas reported (0 for PTX only)
  int spill_bytes = 0;         ///< spill stores + loads over every function; 0 expected
  double compile_seconds = 0;  ///< NVRTC's time (0 when the process cache answered)
  std::string table_layout;    ///< cuda_table_layout() the code was generated for
  std::vector<std::string> nvrtc_options;  ///< every option NVRTC was given (besides -arch)
  std::string source;          ///< the generated CUDA C
  std::string log;             ///< NVRTC's log (ptxas's report)
};

enum class CudaCompileCache : uint8_t {
  kProcess,  ///< reuse an identical compilation done earlier in this process
  kNone,     ///< always run NVRTC (to measure it)
};

/// Generates and compiles `kernel` (verified, split, optimized) for `arch` ("sm_90", or
/// "compute_90" for PTX only). Throws EnvironmentError without NVRTC, UserError for a bad
/// shape or an arch NVRTC cannot target.
CudaBinary compile_cuda_kernel(const ir::Kernel& kernel, const CudaLaunchShape& shape,
                               const std::string& arch,
                               CudaCompileCache cache = CudaCompileCache::kProcess);

/// The arch to compile for on a device of compute capability major.minor: "sm_XY" when
/// NVRTC supports it exactly; for a device newer than NVRTC knows, "compute_ZZ" of the
/// newest arch it supports (the driver compiles that PTX). EnvironmentError when the device
/// is older than every arch NVRTC supports, or NVRTC is missing.
std::string cuda_arch_for_device(int major, int minor);

/// "nvrtc 13.0", for toolchain fingerprints; EnvironmentError without NVRTC.
std::string nvrtc_version();

}  // namespace fuseopt::codegen

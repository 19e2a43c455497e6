// Loading CPU kernels: a shared object produced by codegen/halide (or read from a cache or
// pack), opened with dlopen and called through Halide's argv entry points. Needs only the
// C library's loader: no Halide, LLVM, compiler or linker.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "runtime/kernel_abi.h"

namespace fuseopt::runtime {

/// The function a CPU object exports for error messages: `const char* NAME(void)` gives the
/// calling thread's last Halide error in that object. Equal to codegen::kLastErrorSymbol
/// (the runtime does not include codegen's headers; api_test checks the two agree).
inline constexpr const char* kCpuLastErrorSymbol = "fuseopt_halide_last_error";

/// What the loader needs to know of a CPU shared object (see codegen/halide/cpu_codegen.h
/// for the calling convention of the phase functions).
struct CpuBinary {
  std::string name;
  std::string target;
  int64_t chunk_elements = 16384;
  std::vector<std::string> phase_functions;
  std::string shared_object;  ///< the ELF file's bytes
};

/// Loads `binary` for `kernel` (the IR it was compiled from). The object is loaded from
/// memory (never written where another process could change it) and stays loaded while
/// the returned kernel lives. Throws UserError for a damaged object, EnvironmentError when
/// this machine cannot run it (e.g. AVX-512 code on an AVX2 machine).
std::shared_ptr<const CompiledKernel> load_cpu_kernel(ir::Kernel kernel, const CpuBinary& binary);

/// Throws EnvironmentError naming the missing CPU feature when this machine cannot run code
/// compiled for the Halide target string `target` (e.g. "x86-64-linux-avx2-fma-f16c-sse41").
void check_cpu_target(const std::string& target);

/// The chunked interpreter as a backend: the oracle's arithmetic behind the same interface.
std::shared_ptr<const CompiledKernel> make_interpreter_kernel(ir::Kernel kernel,
                                                              int64_t chunk_elements = 16384);

}  // namespace fuseopt::runtime

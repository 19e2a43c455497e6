// IR kernel -> Halide pipelines (one per phase) -> a native shared object for one CPU
// target. The runtime loads the object (runtime/cpu_binary.h) and calls one exported
// function per phase and chunk; this library is the only one that links Halide and LLVM.
#pragma once

#include <string>
#include <vector>

#include "codegen/halide/cpu_schedule.h"
#include "ir/kernel.h"

namespace fuseopt::codegen {

/// The compiled form of a kernel for one CPU target.
///
/// Calling convention of phase k's function (its `_argv` wrapper takes a `void**` with one
/// entry per argument, in this order):
///   1. every buffer of ir::Kernel::buffers, in order: a 1-D halide_buffer_t with min 0,
///      extent = the chunk's element count, stride 1, of the buffer's storage type: float32
///      for f32, uint16 (the bits) for bf16 and f16 (pointers aligned to the element size);
///   2. each name of ir::phase_scalar_inputs(phase): a pointer to a float;
///   3. only when the phase stores a buffer with stochastic rounding: a pointer to an int64,
///      the index of the chunk's first element in its tensor (runtime::ChunkArgs::
///      first_index), then for each such buffer, in buffer order
///      (stochastic_store_buffers() in lower_to_halide.h), a pointer to its uint32 rounding
///      stream key (ChunkArgs::rounding_keys[buffer]); element x of the chunk rounds with
///      rounding_random(key, first_index + x). Phases that store nothing stochastically (a
///      reduction-only phase, every phase of an f32 kernel) take no such arguments;
///   4. outputs: for each store of the phase, in order, a 1-D buffer of the stored buffer's
///      type aliasing its input (updates are in place); then for each reduction of the
///      phase, a 0-D float64 buffer receiving the chunk's partial result.
/// Two-byte buffers are widened exactly where loaded and rounded once where stored
/// (support/low_precision.h), so the results are the interpreter's bits.
/// It returns 0, or a Halide error code after calling halide_error. Every buffer must have
/// the chunk's extent (another extent is an error). Never pass a null host pointer: Halide
/// takes it for a bounds query, computes nothing and returns 0.
///
/// The object is self-contained (its own copy of the Halide runtime, all hidden; it needs
/// libc and libm only) and exports just, per phase k, `NAME`, `NAME_argv` and
/// `NAME_metadata` with NAME = name + "_phase" + k, plus kLastErrorSymbol. A Halide error
/// never aborts the process: halide_error keeps the message for the calling thread and the
/// function returns the error code. The phase functions never start threads and are safe to
/// call from several threads at once on disjoint chunks.
struct HalideCpuBinary {
  std::string name;    ///< e.g. "adam_amsgrad0_maximize0_cpu_v8_u1_c16384"
  std::string target;  ///< the Halide target string it was compiled for
  CpuSchedule schedule;
  std::vector<std::string> phase_functions;  ///< the `_argv` entry point of each phase
  std::string shared_object;                 ///< the ELF shared object's bytes
  double compile_seconds = 0;                ///< Halide + LLVM + link, for reports
};

/// Exported by every CPU object: `const char* fuseopt_halide_last_error(void)`, the message
/// of the calling thread's last Halide error in that object ("" when none).
inline constexpr const char* kLastErrorSymbol = "fuseopt_halide_last_error";

/// The Halide target for this machine ("host"), or one of "x86-64-v2", "x86-64-v3",
/// "x86-64-v4", or a Halide target string. strict_float is always added: element
/// arithmetic then rounds exactly as the interpreter's, with no fused multiply-add.
std::string resolve_cpu_target(const std::string& name = "host");

/// Compiles every phase of `kernel` (verified, split) for `target`. Throws
/// EnvironmentError when no linker can be run, InternalError on a Halide failure, UserError
/// for an unknown target or a schedule out of range (vector width 4, 8, 16 or 32; unroll 1
/// to 16; chunk up to 2^28 elements). Safe to call from several threads (Halide's part runs
/// one at a time). The first call in a process per target also builds the Halide runtime
/// (about a second).
HalideCpuBinary compile_cpu_kernel(const ir::Kernel& kernel, const CpuSchedule& schedule,
                                   const std::string& target = "host");

/// A readable description of the Halide pipelines (`fuseopt emit --halide`): per phase,
/// the Halide definitions, the schedule and Halide's lowered statement.
std::string describe_halide_pipelines(const ir::Kernel& kernel, const CpuSchedule& schedule,
                                      const std::string& target = "host");

/// Halide's and LLVM's versions, for toolchain fingerprints.
std::string halide_version();

}  // namespace fuseopt::codegen

// The C++ API in one header: compile a rule (built-in name, file or source text) for a
// backend and build Optimizers from it. Compiled kernels are kept in the process, so the
// same rule, options and schedule compile once (CUDA modules stay loaded).
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "codegen/cuda/launch_shape.h"
#include "codegen/halide/cpu_schedule.h"
#include "runtime/optimizer.h"

namespace fuseopt {

enum class Backend {
  kInterpreter,  ///< the reference interpreter, chunked like the others
  kCpu,          ///< fused kernels through Halide
  kAuto,         ///< the fastest available: cuda where it works (cuda_unavailable_reason()), else cpu
  kCuda,         ///< one launch per phase over the whole group, tensors in device memory
};

/// Parses "interp", "cpu", "cuda", "auto"; throws UserError otherwise.
Backend parse_backend(const std::string& name);
const char* backend_name(Backend backend);

/// Why the cuda backend cannot run in this process, in one line ("no CUDA driver
/// (libcuda.so.1 not found): ...", no GPU, no NVRTC, a GPU NVRTC cannot target), or "" when
/// it can. Never throws; the answer is the same for the whole process.
std::string cuda_unavailable_reason();
/// Throws EnvironmentError, in one line, with cuda_unavailable_reason() and what the cuda
/// backend needs, when it cannot run here; returns otherwise.
void require_cuda();
/// The backend `backend` runs on: kAuto becomes kCuda when cuda_unavailable_reason() is
/// empty, else kCpu; the others stay.
Backend resolve_backend(Backend backend);

struct CompileOptions {
  Backend backend = Backend::kAuto;
  /// Option values by name ("true", "false" or an integer); others keep their defaults.
  std::map<std::string, std::string> options;
  /// The CPU schedule; the default is the built-in heuristic. Its chunk size also applies
  /// to the interpreter backend, so both cut a group the same way.
  codegen::CpuSchedule cpu_schedule = codegen::default_cpu_schedule();
  /// The CPU target: "host", "x86-64-v2", "x86-64-v3", "x86-64-v4" or a Halide target
  /// string (see codegen::resolve_cpu_target).
  std::string cpu_target = "host";
  /// The CUDA launch shape (its chunk size cuts the group on the GPU).
  codegen::CudaLaunchShape cuda_shape;
  /// Use this machine's tuned schedule (autotune cache, `fuseopt tune`) when cpu_schedule is
  /// left at the heuristic default. Binaries are cached on disk either way.
  bool tuned = true;
  /// Elements one step covers (all tensors of the group), to pick the size bucket's
  /// decision; 0: unknown (the largest tuned bucket).
  int64_t size_hint = 0;
  int64_t tensor_count = 1;
  /// Kernel packs (docs/packs.md) to take binaries from before compiling, in order, ahead of
  /// those $FUSEOPT_PACKS lists (paths separated by ':'). Lookup order: this process's
  /// memory, the on-disk cache, these packs, then compiling. Packs serve the cpu backend with
  /// the default (tuned or heuristic) schedule and the cuda backend with the default launch
  /// shape; a pack that cannot be read (missing, damaged, another ABI or format, or not
  /// signed by a trusted key) is an error; a pack without a binary of the kernel for this
  /// machine is skipped, and the reason is in last_kernel_provenance() and a warning.
  std::vector<std::string> packs;
  /// How buffers are stored, over what the rule declares: a buffer ("param", "grad" or a
  /// state) -> "f32", "bf16" or "f16", optionally followed by " stochastic" (docs/language.md,
  /// "Storage types and rounding"). Every backend stores them: bf16 and f16 in two bytes.
  std::map<std::string, std::string> storage;
  /// Loss scaling: gradients are divided by the grad_scale hyper inside the step, and a step
  /// whose unscaled gradients hold an inf or NaN anywhere in the group is skipped
  /// (Optimizer::step() returns false). See ir/grad_transform.h.
  bool loss_scaling = false;
  /// Global-norm gradient clipping to the max_grad_norm hyper, over the whole group, in the
  /// same step (torch.nn.utils.clip_grad_norm_'s formula).
  bool clip_grad_norm = false;
  /// Public key files (KEYFILE.pub of `fuseopt pack keygen`): when any is given, here or in
  /// $FUSEOPT_PACK_TRUSTED_KEYS, every pack used must carry a valid signature by one of them.
  std::vector<std::string> trusted_keys;
};

/// Where the kernel of the calling thread's last compile_rule, compile_rule_text or
/// make_optimizer came from.
struct KernelProvenance {
  /// "memory" (compiled or loaded earlier in this process), "cache" (the on-disk cache),
  /// "pack", "compiled" or "interpreter".
  std::string origin;
  /// The pack file it came from (also when origin is "memory" and it first came from one).
  std::string pack;
  std::string binary;  ///< that pack binary's target: "host", "x86-64-v3", "sm_90", "ptx"
  /// When packs were listed but none had a binary of this kernel for this machine: why, one
  /// line per pack ("PACK: reason"); empty otherwise.
  std::string pack_miss;
};
KernelProvenance last_kernel_provenance();

/// Compiles a built-in rule (by name) or a rule file (by path). Throws UserError with the
/// rule's diagnostics when it has errors. For cuda (and auto where cuda works) the kernel
/// is compiled by NVRTC for the process's GPU (runtime::CudaDriver::get()) and loaded
/// there: its Optimizers take device memory (runtime/optimizer.h). Without a usable GPU,
/// driver or NVRTC, cuda throws EnvironmentError with a one-line reason.
std::shared_ptr<const runtime::CompiledKernel> compile_rule(const std::string& name_or_path,
                                                            const CompileOptions& options = {});
/// The same for rule source text; `name` is used in messages.
std::shared_ptr<const runtime::CompiledKernel> compile_rule_text(const std::string& text,
                                                                 const CompileOptions& options = {},
                                                                 const std::string& name = "<text>");

/// Forgets every kernel compiled in this process (Optimizers keep the kernels they use).
void clear_compiled_kernels();

/// compile_rule + Optimizer in one call. `threads` = 0 takes the schedule's thread count,
/// and when that is 0 too, every core.
Optimizer make_optimizer(const std::string& name_or_path, const CompileOptions& options = {},
                         const std::map<std::string, double>& hypers = {}, int threads = 0);

}  // namespace fuseopt

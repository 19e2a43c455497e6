// The C++ API: rule -> IR (frontend) -> kernel (codegen/halide + runtime loader, codegen/cuda
// + runtime/cuda loader, or the chunked interpreter), with two in-process caches: checked rules by source, and compiled
// kernels by (source, option values, backend, schedule, target). A kernel being compiled by
// one thread is waited for by the others asking for it, never compiled twice.
#include "api/fuseopt.h"

#include <future>
#include <mutex>
#include <utility>
#include <vector>

#include "autotune/kernel_store.h"
#include "autotune/size_bucket.h"
#include "codegen/cuda/cuda_codegen.h"
#include "codegen/halide/cpu_codegen.h"
#include "frontend/rule.h"
#include "runtime/cpu_binary.h"
#include "runtime/cuda/cuda_driver.h"
#include "runtime/cuda/cuda_kernel.h"
#include "support/edit_distance.h"
#include "support/error.h"

namespace fuseopt {
namespace {

using KernelPtr = std::shared_ptr<const runtime::CompiledKernel>;
using RulePtr = std::shared_ptr<const frontend::Rule>;

// Values computed once per key: the first caller computes outside the lock while later
// callers for the same key wait for its result. A failure reaches every waiter and is then
// forgotten, so a later call tries again.
template <typename Value>
class OnceCache {
 public:
  template <typename Compute>
  Value get(const std::string& key, const Compute& compute) {
    std::promise<Value> promise;
    std::shared_future<Value> future;
    bool mine = false;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto found = entries_.find(key);
      if (found != entries_.end()) {
        future = found->second;
      } else {
        future = promise.get_future().share();
        entries_.emplace(key, future);
        mine = true;
      }
    }
    if (mine) {
      try {
        promise.set_value(compute());
      } catch (...) {
        promise.set_exception(std::current_exception());
        std::lock_guard<std::mutex> lock(mutex_);
        entries_.erase(key);
      }
    }
    return future.get();
  }

  void clear() {
    std::lock_guard<std::mutex> lock(mutex_);
    entries_.clear();
  }

 private:
  std::mutex mutex_;
  std::map<std::string, std::shared_future<Value>> entries_;
};

OnceCache<RulePtr>& rule_cache() {
  static OnceCache<RulePtr> cache;
  return cache;
}

// A compiled kernel and the thread count its schedule asks for (0: every core).
struct Compiled {
  KernelPtr kernel;
  int threads = 0;
};

OnceCache<Compiled>& kernel_cache() {
  static OnceCache<Compiled> cache;
  return cache;
}

// Key fields are joined with a byte that appears in no rule name, option or target.
void append_field(std::string& key, const std::string& field) {
  key += field;
  key += '\x1f';
}

// The arch NVRTC compiles for on the process's GPU; EnvironmentError without one.
std::string cuda_arch() {
  const runtime::CudaDeviceInfo& info = runtime::CudaDriver::get().device();
  return codegen::cuda_arch_for_device(info.sm_major, info.sm_minor);
}

KernelPtr compile_cuda(ir::Kernel kernel, const codegen::CudaLaunchShape& shape,
                       const std::string& arch) {
  const codegen::CudaBinary binary = codegen::compile_cuda_kernel(kernel, shape, arch);
  runtime::CudaBinaryView view;
  view.name = binary.name;
  view.arch = binary.arch;
  view.cubin = binary.cubin;
  view.ptx = binary.ptx;
  view.phase_functions = binary.phase_functions;
  view.block_size = binary.shape.block_size;
  view.grid_limit = binary.shape.grid_limit;
  view.chunk_elements = binary.shape.chunk_elements;
  view.table_layout = binary.table_layout;
  return runtime::load_cuda_kernel(std::move(kernel), view, runtime::CudaDriver::get());
}

Compiled compile_source(std::shared_ptr<const support::SourceFile> source,
                        const CompileOptions& options) {
  const std::string rule_key = source->name() + '\x1f' + source->text();
  RulePtr rule = rule_cache().get(rule_key, [&] {
    // Throws UserError with every rendered diagnostic when the rule has errors.
    return std::make_shared<const frontend::Rule>(
        frontend::rule_from_text(source->text(), source->name()));
  });

  const std::vector<ir::OptionValue> resolved = rule->resolve_options(options.options);
  const Backend backend = resolve_backend(options.backend);
  const codegen::CpuSchedule& schedule = options.cpu_schedule;
  if (schedule.chunk_elements <= 0) {
    throw UserError("the chunk size must be positive, not " +
                    std::to_string(schedule.chunk_elements));
  }
  if (backend == Backend::kCuda) {
    require_cuda();
    options.cuda_shape.validate();
  }
  // The GPU is needed before anything compiles: without one this is the error.
  const std::string target = backend == Backend::kCpu  ? codegen::resolve_cpu_target(options.cpu_target)
                             : backend == Backend::kCuda ? cuda_arch()
                                                         : "";

  std::string key;
  append_field(key, source->text());
  for (const ir::OptionValue& option : resolved) {
    append_field(key, option.name + "=" + std::to_string(option.value));
  }
  append_field(key, backend_name(backend));
  const bool use_tuning = backend == Backend::kCpu && options.tuned &&
                          schedule == codegen::default_cpu_schedule();
  append_field(key, use_tuning ? "tuned " + (options.size_hint > 0
                                                 ? autotune::problem_key(
                                                       autotune::bucket_for(options.size_hint),
                                                       options.tensor_count)
                                                 : std::string("unknown"))
               : backend == Backend::kCpu  ? schedule.spelling()
               : backend == Backend::kCuda ? options.cuda_shape.spelling()
                                           : "c" + std::to_string(schedule.chunk_elements));
  append_field(key, target);

  return kernel_cache().get(key, [&]() -> Compiled {
    ir::Kernel kernel = rule->compile(resolved);
    switch (backend) {
      case Backend::kInterpreter:
        return {runtime::make_interpreter_kernel(std::move(kernel), schedule.chunk_elements),
                schedule.threads};
      case Backend::kCpu:
      case Backend::kAuto: {
        if (use_tuning) {
          // memory -> cache database -> heuristic; compiles (and caches) only on a miss.
          autotune::LookupOptions lookup;
          lookup.cpu_target = options.cpu_target;
          lookup.tensors = options.tensor_count;
          autotune::CpuKernelChoice choice =
              autotune::find_or_compile_cpu(kernel, options.size_hint, lookup);
          return {choice.kernel, choice.schedule.threads};
        }
        return {autotune::compile_cpu_cached(kernel, schedule, options.cpu_target),
                schedule.threads};
      }
      case Backend::kCuda:
        // Host passes only: every core.
        return {compile_cuda(std::move(kernel), options.cuda_shape, target), 0};
    }
    FUSEOPT_UNREACHABLE("compile_rule: unknown backend");
  });
}

}  // namespace

Backend parse_backend(const std::string& name) {
  if (name == "interp") return Backend::kInterpreter;
  if (name == "cpu") return Backend::kCpu;
  if (name == "cuda") return Backend::kCuda;
  if (name == "auto") return Backend::kAuto;
  const std::vector<std::string> names = {"interp", "cpu", "cuda", "auto"};
  std::string message = "unknown backend '" + name + "'";
  if (auto match = support::closest_match(name, names)) {
    message += "; did you mean '" + *match + "'?";
  } else {
    message += " (choose interp, cpu, cuda or auto)";
  }
  throw UserError(message);
}

std::string cuda_unavailable_reason() {
  static const std::string reason = [] {
    std::string why = runtime::CudaDriver::unavailable_reason();
    if (!why.empty()) return why;
    try {
      cuda_arch();  // NVRTC, and a GPU it can compile for
    } catch (const EnvironmentError& e) {
      return std::string(e.what());
    } catch (const UserError& e) {
      return std::string(e.what());
    }
    return std::string();
  }();
  return reason;
}

void require_cuda() {
  const std::string reason = cuda_unavailable_reason();
  if (reason.empty()) return;
  const bool no_driver = !runtime::CudaDriver::unavailable_reason().empty();
  throw EnvironmentError(reason + (no_driver
                                       ? "; the cuda backend needs an NVIDIA GPU and its driver"
                                       : "; the cuda backend needs NVRTC (the CUDA toolkit) "
                                         "able to compile for this GPU"));
}

Backend resolve_backend(Backend backend) {
  if (backend != Backend::kAuto) return backend;
  return cuda_unavailable_reason().empty() ? Backend::kCuda : Backend::kCpu;
}

const char* backend_name(Backend backend) {
  switch (backend) {
    case Backend::kInterpreter:
      return "interp";
    case Backend::kCpu:
      return "cpu";
    case Backend::kAuto:
      return "auto";
    case Backend::kCuda:
      return "cuda";
  }
  return "?";
}

std::shared_ptr<const runtime::CompiledKernel> compile_rule(const std::string& name_or_path,
                                                            const CompileOptions& options) {
  return compile_source(frontend::load_rule_source(name_or_path), options).kernel;
}

std::shared_ptr<const runtime::CompiledKernel> compile_rule_text(const std::string& text,
                                                                 const CompileOptions& options,
                                                                 const std::string& name) {
  return compile_source(std::make_shared<support::SourceFile>(name, text), options).kernel;
}

void clear_compiled_kernels() {
  kernel_cache().clear();
  rule_cache().clear();
}

Optimizer make_optimizer(const std::string& name_or_path, const CompileOptions& options,
                         const std::map<std::string, double>& hypers, int threads) {
  Compiled compiled = compile_source(frontend::load_rule_source(name_or_path), options);
  if (threads == 0) threads = compiled.threads;
  return Optimizer(compiled.kernel, hypers, threads);
}

}  // namespace fuseopt

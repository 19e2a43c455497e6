// The C++ API: rule -> IR (frontend) -> kernel (codegen/halide + runtime loader, codegen/cuda
// + runtime/cuda loader, or the chunked interpreter), with two in-process caches: checked rules by source, and compiled
// kernels by (source, option values, backend, schedule, target). A kernel being compiled by
// one thread is waited for by the others asking for it, never compiled twice.
#include "api/fuseopt.h"

#include <algorithm>
#include <cstdlib>
#include <future>
#include <mutex>
#include <utility>
#include <vector>

#include "autotune/kernel_store.h"
#include "autotune/size_bucket.h"
#include "codegen/cuda/cuda_codegen.h"
#include "codegen/halide/cpu_codegen.h"
#include "autotune/warnings.h"
#include "frontend/rule.h"
#include "ir/grad_transform.h"
#include "pack/pack_loader.h"
#include "pack/pack_reader.h"
#include "pack/pack_trust.h"
#include "runtime/cpu_binary.h"
#include "runtime/cuda/cuda_driver.h"
#include "runtime/cuda/cuda_kernel.h"
#include "support/edit_distance.h"
#include "support/error.h"
#include "support/low_precision.h"

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

// A compiled kernel, the thread count its schedule asks for (0: every core), and where it
// came from.
struct Compiled {
  KernelPtr kernel;
  int threads = 0;
  KernelProvenance provenance;
};

thread_local KernelProvenance last_provenance;

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

// ---- Kernel packs in the lookup chain (memory, cache, packs, compile) ----------------------

// CompileOptions::packs, then $FUSEOPT_PACKS (':'-separated), without repeats.
std::vector<std::string> pack_list(const CompileOptions& options) {
  std::vector<std::string> packs;
  auto add = [&](const std::string& path) {
    if (!path.empty() && std::find(packs.begin(), packs.end(), path) == packs.end()) {
      packs.push_back(path);
    }
  };
  for (const std::string& path : options.packs) add(path);
  if (const char* value = std::getenv("FUSEOPT_PACKS")) {
    const std::string list = value;
    size_t start = 0;
    while (start <= list.size()) {
      const size_t colon = std::min(list.find(':', start), list.size());
      add(list.substr(start, colon - start));
      start = colon + 1;
    }
  }
  return packs;
}

std::vector<pack::TrustedKey> trusted_keys(const CompileOptions& options) {
  std::vector<pack::TrustedKey> keys;
  for (const std::string& file : options.trusted_keys) keys.push_back(pack::read_public_key(file));
  for (const pack::TrustedKey& key : pack::trusted_keys_from_environment()) keys.push_back(key);
  return keys;
}

// Opens a listed pack for this runtime's ABI and checks its signature when keys are trusted.
// A pack that cannot be used at all is the caller's mistake: UserError, never a silent compile.
std::unique_ptr<pack::PackReader> open_pack(const std::string& path,
                                            const std::vector<pack::TrustedKey>& keys) {
  auto reader = std::make_unique<pack::PackReader>(path, runtime::kKernelAbiVersion);
  pack::require_trusted_signature(*reader, keys,
                                  "the trusted keys (CompileOptions::trusted_keys, $" +
                                      std::string(pack::kTrustedKeysVariable) + ")");
  return reader;
}

// Binaries of `packs` with this IR hash, by pack; `why` collects one line per pack without.
struct PackCandidates {
  std::unique_ptr<pack::PackReader> reader;
  std::vector<pack::BinaryEntry> binaries;
};

std::vector<PackCandidates> pack_candidates(const std::vector<std::string>& packs,
                                            const std::vector<pack::TrustedKey>& keys,
                                            const std::string& ir_hash, std::string& why) {
  std::vector<PackCandidates> found;
  for (const std::string& path : packs) {
    PackCandidates c;
    c.reader = open_pack(path, keys);
    for (pack::BinaryEntry& entry : c.reader->binaries()) {
      if (entry.ir_hash == ir_hash) c.binaries.push_back(std::move(entry));
    }
    if (c.binaries.empty()) {
      why += (why.empty() ? "" : "\n") + path + ": no binary of this kernel (IR hash " +
             ir_hash.substr(0, 12) + ")";
      continue;
    }
    found.push_back(std::move(c));
  }
  return found;
}

// Says once per kernel that the listed packs did not serve it and it is compiled instead.
void warn_pack_miss(const std::string& config, const std::string& why) {
  std::string one_line = why;
  for (char& c : one_line) {
    if (c == '\n') c = ';';
  }
  autotune::warn("no kernel pack has a binary of " + config + " for this machine (" + one_line +
                 "); compiling it");
}

// A CPU kernel from the listed packs, or null with the reason in `why`.
KernelPtr cpu_kernel_from_packs(const ir::Kernel& kernel, const CompileOptions& options,
                                KernelProvenance& provenance, std::string& why) {
  const std::string ir_hash = pack::kernel_ir_hash(kernel);
  const std::vector<pack::TrustedKey> keys = trusted_keys(options);
  for (PackCandidates& c : pack_candidates(pack_list(options), keys, ir_hash, why)) {
    const pack::BinaryChoice choice =
        pack::choose_cpu_binary(c.binaries, ir_hash, options.cpu_target);
    if (choice.binary == nullptr) {
      why += (why.empty() ? "" : "\n") + c.reader->path() + ": no CPU binary for " +
             options.cpu_target + " that runs here" + choice.reasons;
      continue;
    }
    KernelPtr loaded = pack::load_cpu_binary(*c.reader, kernel, *choice.binary);
    provenance.origin = "pack";
    provenance.pack = c.reader->path();
    provenance.binary = choice.binary->target;
    return loaded;
  }
  return nullptr;
}

// The launch shape fields compiled into CUDA code ("b512_e8_v4_c65536"): the grid limit is
// chosen at launch.
std::string shape_code(const std::string& spelling) {
  const size_t grid = spelling.rfind("_g");
  return grid == std::string::npos ? spelling : spelling.substr(0, grid);
}

// A CUDA kernel from the listed packs for the process's GPU, or null with the reason in `why`.
KernelPtr cuda_kernel_from_packs(const ir::Kernel& kernel, const CompileOptions& options,
                                 KernelProvenance& provenance, std::string& why) {
  const std::string ir_hash = pack::kernel_ir_hash(kernel);
  const std::vector<pack::TrustedKey> keys = trusted_keys(options);
  const runtime::CudaDriver& driver = runtime::CudaDriver::get();
  const std::string wanted = shape_code(options.cuda_shape.spelling());
  for (PackCandidates& c : pack_candidates(pack_list(options), keys, ir_hash, why)) {
    std::vector<pack::BinaryEntry> same_shape;
    for (const pack::BinaryEntry& entry : c.binaries) {
      if (entry.is_cuda() && shape_code(entry.schedule) == wanted) same_shape.push_back(entry);
    }
    const pack::BinaryChoice choice = pack::choose_cuda_binary(
        same_shape, driver.device().sm_major, driver.device().sm_minor, ir_hash);
    if (choice.binary == nullptr) {
      why += (why.empty() ? "" : "\n") + c.reader->path() + ": no CUDA binary with launch shape " +
             wanted + " for " + driver.device().arch() + choice.reasons;
      continue;
    }
    pack::BinaryEntry entry = *choice.binary;
    entry.grid_limit = options.cuda_shape.grid_limit;
    KernelPtr loaded = pack::load_cuda_binary(*c.reader, kernel, entry, driver);
    provenance.origin = "pack";
    provenance.pack = c.reader->path();
    provenance.binary = entry.target;
    return loaded;
  }
  return nullptr;
}

// CompileOptions::storage, loss_scaling and clip_grad_norm applied to a compiled rule.
void apply_storage_and_transform(ir::Kernel& kernel, const CompileOptions& options) {
  for (const auto& [buffer, spec] : options.storage) {
    std::string type = spec;
    bool stochastic = false;
    const std::string suffix = " stochastic";
    if (type.size() > suffix.size() && type.ends_with(suffix)) {
      type.resize(type.size() - suffix.size());
      stochastic = true;
    }
    const auto parsed = parse_storage_type(type);
    if (!parsed) {
      throw UserError("bad storage '" + spec + "' for '" + buffer +
                      "': expected f32, bf16 or f16, optionally followed by ' stochastic'");
    }
    ir::set_buffer_storage(kernel, buffer, *parsed, stochastic);
  }
  ir::apply_grad_transform(kernel, {options.loss_scaling, options.clip_grad_norm});
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
  for (const auto& [buffer, spec] : options.storage) append_field(key, buffer + ":" + spec);
  append_field(key, std::string(options.loss_scaling ? "unscale" : "") +
                        (options.clip_grad_norm ? "clipnorm" : ""));

  bool computed = false;
  Compiled compiled = kernel_cache().get(key, [&]() -> Compiled {
    computed = true;
    ir::Kernel kernel = rule->compile(resolved);
    apply_storage_and_transform(kernel, options);
    const bool use_packs = !pack_list(options).empty();
    KernelProvenance provenance;
    provenance.origin = "compiled";
    switch (backend) {
      case Backend::kInterpreter:
        provenance.origin = "interpreter";
        return {runtime::make_interpreter_kernel(std::move(kernel), schedule.chunk_elements),
                schedule.threads, provenance};
      case Backend::kCpu:
      case Backend::kAuto: {
        if (use_tuning) {
          // memory -> cache database -> packs -> heuristic; compiles (and caches) only on a miss.
          autotune::LookupOptions lookup;
          lookup.cpu_target = options.cpu_target;
          lookup.tensors = options.tensor_count;
          if (use_packs) {
            if (auto cached = autotune::default_kernel_store().find_cpu(kernel, options.size_hint,
                                                                        lookup)) {
              provenance.origin = autotune::origin_name(cached->origin);
              return {cached->kernel, cached->schedule.threads, provenance};
            }
            std::string why;
            if (KernelPtr from_pack = cpu_kernel_from_packs(kernel, options, provenance, why)) {
              return {from_pack, 0, provenance};
            }
            provenance.pack_miss = why;
            warn_pack_miss(kernel.config_name(), why);
          }
          autotune::CpuKernelChoice choice =
              autotune::find_or_compile_cpu(kernel, options.size_hint, lookup);
          provenance.origin = autotune::origin_name(choice.origin);
          return {choice.kernel, choice.schedule.threads, provenance};
        }
        autotune::KernelOrigin origin = autotune::KernelOrigin::kCompiled;
        KernelPtr compiled_kernel = autotune::default_kernel_store().compile_cpu(
            kernel, schedule, options.cpu_target, &origin);
        provenance.origin = autotune::origin_name(origin);
        return {compiled_kernel, schedule.threads, provenance};
      }
      case Backend::kCuda: {
        if (use_packs) {
          std::string why;
          if (KernelPtr from_pack = cuda_kernel_from_packs(kernel, options, provenance, why)) {
            return {from_pack, 0, provenance};
          }
          provenance.pack_miss = why;
          warn_pack_miss(kernel.config_name(), why);
        }
        // Host passes only: every core.
        return {compile_cuda(std::move(kernel), options.cuda_shape, target), 0, provenance};
      }
    }
    FUSEOPT_UNREACHABLE("compile_rule: unknown backend");
  });
  last_provenance = compiled.provenance;
  if (!computed) last_provenance.origin = "memory";
  return compiled;
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

KernelProvenance last_kernel_provenance() { return last_provenance; }

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

// The C++ API: rule -> IR (frontend) -> kernel (codegen/halide + runtime loader, or the
// chunked interpreter), with two in-process caches: checked rules by source, and compiled
// kernels by (source, option values, backend, schedule, target). A kernel being compiled by
// one thread is waited for by the others asking for it, never compiled twice.
#include "api/fuseopt.h"

#include <future>
#include <mutex>
#include <utility>
#include <vector>

#include "autotune/kernel_store.h"
#include "autotune/size_bucket.h"
#include "codegen/halide/cpu_codegen.h"
#include "frontend/rule.h"
#include "runtime/cpu_binary.h"
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

Compiled compile_source(std::shared_ptr<const support::SourceFile> source,
                        const CompileOptions& options) {
  const std::string rule_key = source->name() + '\x1f' + source->text();
  RulePtr rule = rule_cache().get(rule_key, [&] {
    // Throws UserError with every rendered diagnostic when the rule has errors.
    return std::make_shared<const frontend::Rule>(
        frontend::rule_from_text(source->text(), source->name()));
  });

  const std::vector<ir::OptionValue> resolved = rule->resolve_options(options.options);
  const Backend backend = options.backend == Backend::kAuto ? Backend::kCpu : options.backend;
  const codegen::CpuSchedule& schedule = options.cpu_schedule;
  if (schedule.chunk_elements <= 0) {
    throw UserError("the chunk size must be positive, not " +
                    std::to_string(schedule.chunk_elements));
  }
  const std::string target =
      backend == Backend::kCpu ? codegen::resolve_cpu_target(options.cpu_target) : "";

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
               : backend == Backend::kCpu ? schedule.spelling()
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
    }
    FUSEOPT_UNREACHABLE("compile_rule: unknown backend");
  });
}

}  // namespace

Backend parse_backend(const std::string& name) {
  if (name == "interp") return Backend::kInterpreter;
  if (name == "cpu") return Backend::kCpu;
  if (name == "auto") return Backend::kAuto;
  const std::vector<std::string> names = {"interp", "cpu", "auto"};
  std::string message = "unknown backend '" + name + "'";
  if (auto match = support::closest_match(name, names)) {
    message += "; did you mean '" + *match + "'?";
  } else {
    message += " (choose interp, cpu or auto)";
  }
  throw UserError(message);
}

const char* backend_name(Backend backend) {
  switch (backend) {
    case Backend::kInterpreter:
      return "interp";
    case Backend::kCpu:
      return "cpu";
    case Backend::kAuto:
      return "auto";
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

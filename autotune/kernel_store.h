// Where compiled CPU kernels come from, in order: this process's memory, the cache database
// (binaries verified by SHA-256, loaded with runtime::load_cpu_kernel: no compiler or linker),
// kernel packs (asked by the C++ API between find_cpu() and find_or_compile_cpu(): packs are a
// layer above this one), and last the code generator with the built-in heuristic schedule. The
// schedule itself is looked up the same way: a tuned decision for this kernel, size bucket and
// device (or a neighbouring bucket, or a machine of the same class), else the heuristic.
// Tuning (`fuseopt tune`, or opt-in on a miss) measures with tuner.h and records every
// measurement and the decision here.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "autotune/cache_db.h"
#include "autotune/config.h"
#include "autotune/fingerprint.h"
#include "autotune/search_space.h"
#include "autotune/tuner.h"
#include "codegen/halide/cpu_schedule.h"
#include "ir/kernel.h"
#include "runtime/cpu_binary.h"
#include "runtime/kernel_abi.h"

namespace fuseopt::autotune {

struct LookupOptions {
  /// "host", "x86-64-v2/v3/v4" or a Halide target string (codegen::resolve_cpu_target).
  std::string cpu_target = "host";
  /// Tensors in the group the size hint covers (a bucket of its own).
  int64_t tensors = 1;
  /// Online tuning, opt-in: on a miss, tune this key within `tune_budget_seconds` first.
  bool tune_on_miss = false;
  double tune_budget_seconds = 2;
};

/// Where the binary came from.
enum class KernelOrigin { kMemory, kCache, kCompiled };
const char* origin_name(KernelOrigin origin);

struct CpuKernelChoice {
  std::shared_ptr<const runtime::CompiledKernel> kernel;
  /// The configuration it runs with: kernel->chunk_elements is schedule.chunk_elements, and
  /// schedule.threads (0 = every core) is for the Optimizer.
  codegen::CpuSchedule schedule;
  KernelOrigin origin = KernelOrigin::kCompiled;
  /// How the schedule was chosen: "tuned", "tuned for n:e20.0|t:0", "tuned on a machine of
  /// the same class", "tuned with an older toolchain", "tuned now", "heuristic".
  std::string decision;
};

struct TuneSettings {
  /// Element counts to tune for (each stands for its bucket); empty: kDefaultTuneSizes.
  std::vector<int64_t> sizes;
  int64_t tensors = 1;
  /// Seconds per size, compiling included.
  double budget_seconds = 20;
  /// Tune again even where this machine already has a decision.
  bool force = false;
  std::string cpu_target = "host";
  Protocol protocol;
};

/// 64 Ki, 1 Mi and 16 Mi elements: small, cache-resident and memory-bound steps.
inline const std::vector<int64_t> kDefaultTuneSizes = {int64_t{1} << 16, int64_t{1} << 20,
                                                       int64_t{1} << 24};

/// One size of a `tune` run, for the summary.
struct KeyReport {
  enum class Outcome {
    kTuned,
    kAlreadyTuned,     ///< a decision existed (use force to tune again)
    kTunedElsewhere,   ///< another process held the lease and recorded a decision
    kNoValidConfig,    ///< nothing passed its correctness check
  };
  int64_t size = 0;
  std::string problem_key;
  Outcome outcome = Outcome::kTuned;
  Config default_config;
  Config winner;
  std::optional<double> default_ns;  ///< median per step
  std::optional<double> winner_ns;
  double gain = 0;  ///< from the paired shootout; 0 when the default won
  double seconds = 0;
  int64_t configs_measured = 0;
  int64_t configs_rejected = 0;  ///< failed to compile, run or match the interpreter
  int64_t samples = 0;
  int64_t measurements = 0;  ///< rows written to the measurement table
  bool budget_exhausted = false;
  bool saved = false;  ///< recorded in the cache
  std::string message;  ///< for kNoValidConfig: why the default failed
  double bytes_per_element = 0;
};

/// Progress of a tune run: which size, and the tuner's own progress within it.
struct TuneEvent {
  size_t index = 0;  ///< of the size being tuned
  size_t count = 0;
  int64_t size = 0;
  TuneProgress progress;
};

class KernelStore {
 public:
  /// Uses the cache database at `cache_path`; "" runs without one.
  explicit KernelStore(std::string cache_path, CacheOptions options = {});

  /// The lookup chain (see the top of this file). Compiling and loading errors propagate
  /// (EnvironmentError without a linker, InternalError for a code generator bug); nothing
  /// about the cache ever does. `size_hint` is the group's element count; 0 or less means
  /// unknown (the decision of the largest tuned bucket is taken).
  CpuKernelChoice find_or_compile_cpu(const ir::Kernel& kernel, int64_t size_hint,
                                      const LookupOptions& options = {});

  /// The same chain without compiling: the kernel when memory or the cache database has the
  /// binary of the schedule find_or_compile_cpu would choose (never tuning), else nullopt.
  /// The C++ API asks kernel packs between this and find_or_compile_cpu.
  std::optional<CpuKernelChoice> find_cpu(const ir::Kernel& kernel, int64_t size_hint,
                                          const LookupOptions& options = {});

  /// A kernel with a schedule the caller chose: only the binary is looked up (memory,
  /// cache, compile and store).
  std::shared_ptr<const runtime::CompiledKernel> compile_cpu(const ir::Kernel& kernel,
                                                             const codegen::CpuSchedule& schedule,
                                                             const std::string& cpu_target = "host",
                                                             KernelOrigin* origin = nullptr);

  /// Tunes `kernel` for each size and records the results. Errors in single configs are
  /// results (statuses), not exceptions.
  std::vector<KeyReport> tune_cpu(const ir::Kernel& kernel, const TuneSettings& settings,
                                  const std::function<void(const TuneEvent&)>& progress = {});

  CacheDb& cache() { return *cache_; }
  const DeviceFingerprint& device() const { return device_; }
  const ToolchainFingerprint& toolchain() const { return toolchain_; }
  const SearchSpace& search_space() const { return space_; }
  /// Forgets loaded kernels and decisions held in memory (the cache keeps them).
  void forget_memory();

  /// The kernel's key in the cache: SHA-256 of its printed IR (32 raw bytes).
  static std::string ir_hash(const ir::Kernel& kernel);

 private:
  struct Decision {
    Config config;
    std::string description;
  };
  /// What find_cpu and find_or_compile_cpu start from: the kernel's hash, the target, the
  /// memo key of its decision and the memoised decision, if any.
  struct Lookup {
    std::string hash;
    std::string target;
    int64_t tensors = 1;
    std::string memo;
    std::optional<Decision> decision;
  };
  Lookup start_lookup(const ir::Kernel& kernel, int64_t size_hint, const LookupOptions& options);
  std::string resolve_target(const std::string& name);
  std::shared_ptr<const runtime::CompiledKernel> load(const ir::Kernel& kernel,
                                                      const std::string& ir_hash,
                                                      const Config& config,
                                                      const std::string& target,
                                                      KernelOrigin* origin,
                                                      bool may_compile = true);
  std::optional<Decision> cached_decision(const std::string& ir_hash, int64_t size_hint,
                                          int64_t tensors);
  KeyReport tune_one(const ir::Kernel& kernel, const std::string& ir_hash, int64_t size,
                     const TuneSettings& settings, const std::string& target,
                     const std::function<void(const TuneProgress&)>& progress);
  KernelRow kernel_row(const ir::Kernel& kernel, const std::string& ir_hash) const;

  std::unique_ptr<CacheDb> cache_;
  DeviceFingerprint device_;
  ToolchainFingerprint toolchain_;
  SearchSpace space_;
  std::string space_hash_;

  std::mutex mutex_;  // guards the maps below; never held while compiling or measuring
  std::map<std::string, std::string> targets_;
  std::map<std::string, runtime::CpuBinary> binaries_;  // by binary key
  std::map<std::string, std::shared_ptr<const runtime::CompiledKernel>> loaded_;
  std::map<std::string, Decision> decisions_;
};

/// The store of the cache location the environment names (cache_location.h); one per path
/// per process, so changing FUSEOPT_CACHE between calls switches stores.
KernelStore& default_kernel_store();

/// default_kernel_store().find_or_compile_cpu: what the C++ API calls.
CpuKernelChoice find_or_compile_cpu(const ir::Kernel& kernel, int64_t size_hint,
                                    const LookupOptions& options = {});
/// default_kernel_store().compile_cpu.
std::shared_ptr<const runtime::CompiledKernel> compile_cpu_cached(
    const ir::Kernel& kernel, const codegen::CpuSchedule& schedule,
    const std::string& cpu_target = "host");
/// Forgets what every store holds in memory (for `fuseopt bench`'s cold/warm timings).
void clear_memory_cache();

}  // namespace fuseopt::autotune

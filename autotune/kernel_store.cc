// The lookup chain and the tuning driver. The cache is consulted with short reads; tuning
// measures first and writes everything in one transaction afterwards, under a lease so two
// processes never tune the same key at once.
#include "autotune/kernel_store.h"

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <ctime>
#include <thread>

#include "autotune/cache_location.h"
#include "autotune/cpu_tuning_device.h"
#include "autotune/size_bucket.h"
#include "autotune/warnings.h"
#include "codegen/halide/cpu_codegen.h"
#include "ir/printer.h"
#include "support/error.h"
#include "support/json.h"

namespace fuseopt::autotune {
namespace {

std::string field(const std::string& text) { return text + '\x1f'; }

bool is_valid_cpu_config(const Config& config) {
  const auto vector = config.find(kVectorKnob);
  const auto unroll = config.find(kUnrollKnob);
  const auto chunk = config.find(kChunkKnob);
  const auto threads = config.find(kThreadsKnob);
  return vector && unroll && chunk && threads && config.knobs().size() == 4 &&
         (*vector == 4 || *vector == 8 || *vector == 16 || *vector == 32) && *unroll >= 1 &&
         *unroll <= 16 && *chunk >= 1 && *chunk <= (int64_t{1} << 30) && *threads >= 0 &&
         *threads <= 4096;
}

std::vector<std::string> split_words(const std::string& text) {
  std::vector<std::string> words;
  std::string word;
  for (char c : text) {
    if (c == ' ') {
      if (!word.empty()) words.push_back(word);
      word.clear();
    } else {
      word += c;
    }
  }
  if (!word.empty()) words.push_back(word);
  return words;
}

std::string lease_owner() {
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  static const int64_t started = static_cast<int64_t>(std::time(nullptr));
  return std::string(host) + ":" + std::to_string(getpid()) + ":" + std::to_string(started);
}

std::optional<double> to_ns(double seconds, int64_t count) {
  if (count == 0) return std::nullopt;
  return seconds * 1e9;
}

}  // namespace

const char* origin_name(KernelOrigin origin) {
  switch (origin) {
    case KernelOrigin::kMemory:
      return "memory";
    case KernelOrigin::kCache:
      return "cache";
    case KernelOrigin::kCompiled:
      return "compiled";
  }
  return "?";
}

KernelStore::KernelStore(std::string cache_path, CacheOptions options)
    : cache_(std::make_unique<CacheDb>(std::move(cache_path), std::move(options))),
      device_(fingerprint_cpu(host_cpu())),
      toolchain_(cpu_toolchain(codegen::halide_version())),
      space_(cpu_search_space(host_cpu())),
      space_hash_(support::digest_bytes(search_space_hash(space_))) {}

std::string KernelStore::ir_hash(const ir::Kernel& kernel) {
  return support::digest_bytes(support::sha256("fuseopt-ir-v1\n" + ir::print_kernel(kernel)));
}

void KernelStore::forget_memory() {
  std::lock_guard<std::mutex> lock(mutex_);
  binaries_.clear();
  loaded_.clear();
  decisions_.clear();
}

std::string KernelStore::resolve_target(const std::string& name) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto found = targets_.find(name);
    if (found != targets_.end()) return found->second;
  }
  std::string resolved = codegen::resolve_cpu_target(name);
  std::lock_guard<std::mutex> lock(mutex_);
  targets_[name] = resolved;
  return resolved;
}

KernelRow KernelStore::kernel_row(const ir::Kernel& kernel, const std::string& hash) const {
  return KernelRow{hash, kernel.config_name(),
                   std::string(fuseopt_version()) + "+" + std::string(codegen_digest()).substr(0, 16),
                   space_hash_, ir::print_kernel(kernel)};
}

std::shared_ptr<const runtime::CompiledKernel> KernelStore::load(const ir::Kernel& kernel,
                                                                 const std::string& hash,
                                                                 const Config& config,
                                                                 const std::string& target,
                                                                 KernelOrigin* origin,
                                                                 bool may_compile) {
  const Config code = cpu_code_config(config);
  const std::string code_hash = support::digest_bytes(code.hash());
  const std::string binary_key =
      field(hash) + field(code_hash) + field(target) + support::digest_bytes(toolchain_.digest);
  const int64_t chunk = config.get(kChunkKnob);
  const std::string loaded_key = field(binary_key) + std::to_string(chunk);
  KernelOrigin from = KernelOrigin::kMemory;
  std::optional<runtime::CpuBinary> binary;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (auto found = loaded_.find(loaded_key); found != loaded_.end()) {
      if (origin) *origin = KernelOrigin::kMemory;
      return found->second;
    }
    if (auto found = binaries_.find(binary_key); found != binaries_.end()) binary = found->second;
  }
  const std::string toolchain_fp = support::digest_bytes(toolchain_.digest);
  auto compile = [&] {
    codegen::CpuSchedule schedule = cpu_schedule(config);
    schedule.chunk_elements = kCanonicalChunk;  // not part of the code: one binary for all
    schedule.threads = 0;
    codegen::HalideCpuBinary compiled = codegen::compile_cpu_kernel(kernel, schedule, target);
    runtime::CpuBinary result;
    result.name = compiled.name;
    result.target = compiled.target;
    result.phase_functions = compiled.phase_functions;
    result.shared_object = std::move(compiled.shared_object);
    BinaryRow row;
    row.ir_hash = hash;
    row.config_hash = code_hash;
    row.config_json = code.to_json();
    row.isa_target = target;
    row.toolchain_fp = toolchain_fp;
    row.format = "so";
    std::string entries;
    for (const std::string& f : result.phase_functions) entries += (entries.empty() ? "" : " ") + f;
    row.entry_names = entries;
    support::JsonWriter launch;
    launch.begin_object()
        .key("compile_seconds")
        .value(compiled.compile_seconds)
        .key("kernel_abi")
        .value(runtime::kKernelAbiVersion)
        .key("name")
        .value(result.name)
        .end_object();
    row.launch_json = launch.str();
    row.bytes = result.shared_object;
    cache_->store_binary(ToolchainRow{toolchain_fp, toolchain_.json}, kernel_row(kernel, hash),
                         std::move(row));
    from = KernelOrigin::kCompiled;
    return result;
  };
  if (!binary) {
    if (std::optional<BinaryRow> row = cache_->find_binary(hash, code_hash, target, toolchain_fp)) {
      runtime::CpuBinary cached;
      cached.name = kernel.config_name() + "_cpu";
      cached.target = target;
      cached.phase_functions = split_words(row->entry_names);
      cached.shared_object = std::move(row->bytes);
      binary = std::move(cached);
      from = KernelOrigin::kCache;
    } else if (!may_compile) {
      return nullptr;
    } else {
      binary = compile();
    }
  }
  runtime::CpuBinary to_load = *binary;
  to_load.chunk_elements = chunk;
  to_load.name = kernel.config_name() + "_cpu_" + cpu_spelling(config);
  std::shared_ptr<const runtime::CompiledKernel> loaded;
  try {
    loaded = runtime::load_cpu_kernel(kernel, to_load);
  } catch (const UserError& error) {
    if (from != KernelOrigin::kCache) throw;
    // Bytes that passed their hash but do not load (written by a broken build): drop them.
    warn(std::string("a cached kernel did not load (") + error.what() + "); compiling it again");
    cache_->drop_binary(hash, code_hash, target, toolchain_fp);
    binary = compile();
    to_load = *binary;
    to_load.chunk_elements = chunk;
    to_load.name = kernel.config_name() + "_cpu_" + cpu_spelling(config);
    loaded = runtime::load_cpu_kernel(kernel, to_load);
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    binaries_.emplace(binary_key, *binary);
    loaded_.emplace(loaded_key, loaded);
  }
  if (origin) *origin = from;
  return loaded;
}

std::shared_ptr<const runtime::CompiledKernel> KernelStore::compile_cpu(
    const ir::Kernel& kernel, const codegen::CpuSchedule& schedule, const std::string& cpu_target,
    KernelOrigin* origin) {
  return load(kernel, ir_hash(kernel), cpu_config(schedule), resolve_target(cpu_target), origin);
}

std::optional<KernelStore::Decision> KernelStore::cached_decision(const std::string& hash,
                                                                  int64_t size_hint,
                                                                  int64_t tensors) {
  const std::vector<DecisionRow> rows =
      cache_->find_decisions(hash, support::digest_bytes(device_.klass));
  const std::string exact = support::digest_bytes(device_.exact);
  const std::string toolchain = support::digest_bytes(toolchain_.digest);
  const std::optional<ProblemKey> wanted =
      size_hint > 0 ? parse_problem_key(problem_key(bucket_for(size_hint), tensors))
                    : std::nullopt;
  const DecisionRow* best = nullptr;
  std::tuple<int, int, int, int> best_score;
  for (const DecisionRow& row : rows) {
    const std::optional<ProblemKey> key = parse_problem_key(row.problem_key);
    const std::optional<Config> config = Config::from_json(row.config_json);
    if (!key || !config || !is_valid_cpu_config(*config)) continue;  // not ours to use
    // Unknown size: the largest bucket tuned (large tensors dominate a step's time).
    const int distance = wanted ? problem_distance(*key, *wanted) : 1000 - key->element_bucket;
    const std::tuple<int, int, int, int> score{distance, row.device_exact_fp == exact ? 0 : 1,
                                               row.toolchain_fp == toolchain ? 0 : 1,
                                               row.stale ? 1 : 0};
    if (best == nullptr || score < best_score) {
      best = &row;
      best_score = score;
    }
  }
  if (best == nullptr) return std::nullopt;
  Decision decision{*Config::from_json(best->config_json), "tuned"};
  if (std::get<0>(best_score) != 0 && wanted) decision.description += " for " + best->problem_key;
  if (std::get<1>(best_score) != 0) decision.description += " on a machine of the same class";
  if (std::get<2>(best_score) != 0) decision.description += " with another toolchain";
  return decision;
}

KernelStore::Lookup KernelStore::start_lookup(const ir::Kernel& kernel, int64_t size_hint,
                                              const LookupOptions& options) {
  Lookup lookup;
  lookup.hash = ir_hash(kernel);
  lookup.target = resolve_target(options.cpu_target);
  lookup.tensors = std::max<int64_t>(1, options.tensors);
  const std::string key =
      size_hint > 0 ? problem_key(bucket_for(size_hint), lookup.tensors) : "unknown";
  lookup.memo = field(lookup.hash) + field(key) + lookup.target;
  std::lock_guard<std::mutex> lock(mutex_);
  if (auto found = decisions_.find(lookup.memo); found != decisions_.end()) {
    lookup.decision = found->second;
  }
  return lookup;
}

std::optional<CpuKernelChoice> KernelStore::find_cpu(const ir::Kernel& kernel, int64_t size_hint,
                                                    const LookupOptions& options) {
  Lookup lookup = start_lookup(kernel, size_hint, options);
  const std::string& hash = lookup.hash;
  const std::string& target = lookup.target;
  std::optional<Decision>& decision = lookup.decision;
  // Not memoised here: a miss must not pin the heuristic before find_or_compile_cpu, which
  // may tune.
  if (!decision) decision = cached_decision(hash, size_hint, lookup.tensors);
  if (!decision) decision = Decision{space_.default_config, "heuristic"};
  CpuKernelChoice choice;
  choice.kernel = load(kernel, hash, decision->config, target, &choice.origin, false);
  if (!choice.kernel) return std::nullopt;
  choice.schedule = cpu_schedule(decision->config);
  choice.decision = decision->description;
  return choice;
}

CpuKernelChoice KernelStore::find_or_compile_cpu(const ir::Kernel& kernel, int64_t size_hint,
                                                 const LookupOptions& options) {
  Lookup lookup = start_lookup(kernel, size_hint, options);
  const std::string& hash = lookup.hash;
  const std::string& target = lookup.target;
  const int64_t tensors = lookup.tensors;
  std::optional<Decision>& decision = lookup.decision;
  if (!decision) {
    decision = cached_decision(hash, size_hint, tensors);
    if (!decision && options.tune_on_miss && size_hint > 0) {
      TuneSettings settings;
      settings.sizes = {size_hint};
      settings.tensors = tensors;
      settings.budget_seconds = options.tune_budget_seconds;
      settings.cpu_target = options.cpu_target;
      const KeyReport report = tune_one(kernel, hash, size_hint, settings, target, {});
      if (report.outcome != KeyReport::Outcome::kNoValidConfig) {
        decision = Decision{report.winner, "tuned now"};
      }
    }
    if (!decision) decision = Decision{space_.default_config, "heuristic"};
    std::lock_guard<std::mutex> lock(mutex_);
    decisions_[lookup.memo] = *decision;
  }
  CpuKernelChoice choice;
  choice.kernel = load(kernel, hash, decision->config, target, &choice.origin);
  choice.schedule = cpu_schedule(decision->config);
  choice.decision = decision->description;
  return choice;
}

std::vector<KeyReport> KernelStore::tune_cpu(const ir::Kernel& kernel, const TuneSettings& settings,
                                             const std::function<void(const TuneEvent&)>& progress) {
  const std::string hash = ir_hash(kernel);
  const std::string target = resolve_target(settings.cpu_target);
  const std::vector<int64_t>& sizes = settings.sizes.empty() ? kDefaultTuneSizes : settings.sizes;
  std::vector<KeyReport> reports;
  for (size_t i = 0; i < sizes.size(); ++i) {
    auto forward = [&](const TuneProgress& p) {
      if (progress) progress(TuneEvent{i, sizes.size(), sizes[i], p});
    };
    reports.push_back(tune_one(kernel, hash, sizes[i], settings, target, forward));
  }
  cache_->checkpoint();
  return reports;
}

KeyReport KernelStore::tune_one(const ir::Kernel& kernel, const std::string& hash, int64_t size,
                                const TuneSettings& settings, const std::string& target,
                                const std::function<void(const TuneProgress&)>& progress) {
  const auto started = std::chrono::steady_clock::now();
  auto elapsed = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  };
  if (size < 1) throw UserError("a size to tune for must be at least 1, not " + std::to_string(size));
  const int64_t tensors = std::clamp<int64_t>(settings.tensors, 1, size);
  KeyReport report;
  report.size = size;
  report.problem_key = problem_key(bucket_for(size), tensors);
  report.default_config = space_.default_config;
  report.winner = space_.default_config;
  const std::string exact = support::digest_bytes(device_.exact);
  const std::string toolchain = support::digest_bytes(toolchain_.digest);

  // A decision this machine already made with this toolchain and search space.
  auto existing = [&]() -> std::optional<DecisionRow> {
    for (const DecisionRow& row : cache_->find_decisions(hash, support::digest_bytes(device_.klass))) {
      if (row.problem_key == report.problem_key && row.device_exact_fp == exact &&
          row.toolchain_fp == toolchain && row.search_space_hash == space_hash_ && !row.stale) {
        return row;
      }
    }
    return std::nullopt;
  };
  auto from_existing = [&](const DecisionRow& row, KeyReport::Outcome outcome) {
    report.outcome = outcome;
    if (auto config = Config::from_json(row.config_json)) report.winner = *config;
    report.gain = row.margin.value_or(0);
    for (const MeasurementRow& m : cache_->find_measurements(hash, report.problem_key, exact)) {
      if (m.toolchain_fp != toolchain || m.status != "ok") continue;
      if (m.config_json == report.winner.to_json()) report.winner_ns = m.median_ns;
      if (m.config_json == report.default_config.to_json()) report.default_ns = m.median_ns;
    }
    report.saved = true;
    report.seconds = elapsed();
    return report;
  };
  if (!settings.force) {
    if (auto row = existing()) return from_existing(*row, KeyReport::Outcome::kAlreadyTuned);
  }

  // The lease: one process per key. Others wait for its decision (or for the lease to
  // expire, should the holder have died).
  const std::string lease_key =
      support::sha256_hex(field(hash) + field(report.problem_key) + field(exact) + toolchain);
  const std::string owner = lease_owner();
  const double ttl = settings.budget_seconds * 2 + 120;
  while (true) {
    const LeaseResult lease = cache_->acquire_lease(lease_key, owner, ttl);
    if (lease == LeaseResult::kAcquired && !settings.force) {
      // The previous holder may have recorded its decision between our look and our lease.
      if (auto row = existing()) {
        cache_->release_lease(lease_key, owner);
        return from_existing(*row, KeyReport::Outcome::kTunedElsewhere);
      }
    }
    if (lease != LeaseResult::kHeldByOther) break;
    if (progress) progress(TuneProgress{0, 0, 1, "waiting for another process tuning this size"});
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    if (auto row = existing()) return from_existing(*row, KeyReport::Outcome::kTunedElsewhere);
  }

  CpuTuningDevice device(
      kernel, CpuProblem{size, tensors},
      [&](const Config& config) { return load(kernel, hash, config, target, nullptr); });
  report.bytes_per_element = device.bytes_per_element();
  SteadyClock clock;
  Tuner tuner(device, clock, settings.protocol);
  const int cores = host_cpu().logical_cores;
  tuner.set_equivalence(
      [&](const Config& config) { return cpu_equivalence_key(config, size, tensors, cores); });
  tuner.set_spelling([](const Config& config) { return cpu_spelling(config); });
  if (progress) tuner.set_progress(progress);
  const TuneResult result = tuner.tune(space_, settings.budget_seconds);

  const std::string environment = device.environment_json();
  const int64_t now = static_cast<int64_t>(std::time(nullptr));
  std::vector<MeasurementRow> rows;
  for (const CandidateResult& candidate : result.candidates) {
    if (candidate.status == CandidateStatus::kOk) ++report.configs_measured;
    if (candidate.status != CandidateStatus::kOk &&
        candidate.status != CandidateStatus::kNotMeasured) {
      ++report.configs_rejected;
    }
    MeasurementRow row;
    row.ir_hash = hash;
    row.problem_key = report.problem_key;
    row.device_exact_fp = exact;
    row.config_hash = support::digest_bytes(candidate.config.hash());
    row.config_json = candidate.config.to_json();
    row.toolchain_fp = toolchain;
    row.protocol_version = Protocol::kVersion;
    row.status = status_name(candidate.status);
    const SampleStats stats = candidate.stats();
    row.n_samples = stats.count;
    if (stats.count > 0) {
      row.median_ns = to_ns(stats.median, stats.count);
      row.p20_ns = to_ns(stats.p20, stats.count);
      row.p80_ns = to_ns(stats.p80, stats.count);
      row.min_ns = to_ns(stats.min, stats.count);
      row.mean_ns = to_ns(stats.mean, stats.count);
      row.rel_stddev = stats.rel_stddev;
      if (stats.median > 0) {
        row.eff_bw_gbs = report.bytes_per_element * static_cast<double>(size) / stats.median / 1e9;
      }
    }
    support::JsonWriter env;
    env.begin_object().key("machine").value(environment).key("iterations").value(candidate.iterations);
    env.key("pruned").value(candidate.pruned).key("stage").value(candidate.stage);
    if (!candidate.message.empty()) env.key("message").value(candidate.message.substr(0, 500));
    env.end_object();
    row.env_json = env.str();
    row.measured_at = now;
    rows.push_back(std::move(row));
  }

  std::optional<DecisionRow> decision;
  if (result.winner_stats) {
    report.winner = result.winner;
    report.winner_ns = result.winner_stats->median * 1e9;
    report.gain = result.gain;
    decision = DecisionRow{hash,
                           report.problem_key,
                           exact,
                           toolchain,
                           support::digest_bytes(result.winner.hash()),
                           result.winner.to_json(),
                           result.gain,
                           "tuned",
                           space_hash_,
                           now,
                           false,
                           ""};
  } else {
    report.outcome = KeyReport::Outcome::kNoValidConfig;
    if (const CandidateResult* d = result.find(result.default_config)) report.message = d->message;
  }
  if (result.default_stats) report.default_ns = result.default_stats->median * 1e9;
  if (result.shootout_default_median) report.default_ns = *result.shootout_default_median * 1e9;
  if (report.winner == report.default_config) {
    report.winner_ns = report.default_ns;
  } else if (result.shootout_winner_median) {
    // Measured side by side with the default, in one window: the fairest comparison.
    report.winner_ns = *result.shootout_winner_median * 1e9;
  }
  report.samples = result.samples;
  report.budget_exhausted = result.budget_exhausted;

  const DeviceRow device_row{exact, support::digest_bytes(device_.klass), device_.kind,
                             device_.name, device_.exact_json};
  report.measurements = static_cast<int64_t>(rows.size());
  report.saved = cache_->store_tuning(device_row, ToolchainRow{toolchain, toolchain_.json},
                                      kernel_row(kernel, hash), rows, decision);
  cache_->release_lease(lease_key, owner);
  if (decision) {
    // This process uses the new decision from now on.
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto it = decisions_.begin(); it != decisions_.end();) {
      it = it->first.starts_with(field(hash)) ? decisions_.erase(it) : std::next(it);
    }
  }
  report.seconds = elapsed();
  return report;
}

namespace {

struct StoreRegistry {
  std::mutex mutex;
  std::map<std::string, std::unique_ptr<KernelStore>> stores;  // by cache path
};

StoreRegistry& registry() {
  static StoreRegistry r;
  return r;
}

}  // namespace

KernelStore& default_kernel_store() {
  const CacheLocation location = cache_location();
  StoreRegistry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  std::unique_ptr<KernelStore>& store = r.stores[location.path];
  if (!store) store = std::make_unique<KernelStore>(location.path);
  return *store;
}

CpuKernelChoice find_or_compile_cpu(const ir::Kernel& kernel, int64_t size_hint,
                                    const LookupOptions& options) {
  return default_kernel_store().find_or_compile_cpu(kernel, size_hint, options);
}

std::shared_ptr<const runtime::CompiledKernel> compile_cpu_cached(
    const ir::Kernel& kernel, const codegen::CpuSchedule& schedule, const std::string& cpu_target) {
  return default_kernel_store().compile_cpu(kernel, schedule, cpu_target);
}

void clear_memory_cache() {
  StoreRegistry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  for (auto& [path, store] : r.stores) store->forget_memory();
}

}  // namespace fuseopt::autotune

// fuseopt's CPU backend against the baselines of bench/baselines.h, all in this process and
// at 2 threads: the streaming triad (the bandwidth limit), the hand-fused Adam loop, fuseopt's
// Adam on one big tensor and on many small ones, the interpreter for reference, and the JIT
// compile time of every built-in rule. Figures are printed, never asserted.
//
//   fuseopt_cpu_bench                                 # everything (about 30 s on 2 cores)
//   fuseopt_cpu_bench --benchmark_filter=Adam         # one family
//   fuseopt_cpu_bench --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
//
// Counters: GB/s and ns/elem in the bytes convention of bench/baselines.h (28 bytes per
// element for Adam); bw_frac divides by the triad's rate measured in this process; vs_hand
// divides the hand-fused loop's time per element on one 2^25 tensor by this benchmark's
// (1 = as fast); vs_one_big does the same with fuseopt's own time on one 2^25 tensor.
// Those come from separate benchmarks, minutes apart; on a shared machine the interleaved
// ones (AdamVsHand, ManyVsOneBig, HandManyVsOneBig: two contenders alternating step by step)
// give the steadier ratios.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <exception>
#include <map>
#include <memory>
#include <new>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "api/fuseopt.h"
#include "bench/baselines.h"
#include "bench/kernel_traffic.h"
#include "codegen/halide/cpu_codegen.h"
#include "frontend/rule.h"
#include "rules/builtin_rules.h"

namespace fuseopt::bench {
namespace {

constexpr int kThreads = 2;
constexpr int64_t kBig = int64_t{1} << 25;
constexpr int64_t kTriadElements = int64_t{1} << 25;

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// ---- Figures shared between benchmarks -------------------------------------------------------
// Set by the triad and hand-loop benchmarks when they run; measured on demand otherwise
// (e.g. under --benchmark_filter), so every ratio has a denominator from this process.

std::optional<double> g_triad_gb_per_s;
std::optional<double> g_hand_ns_per_element;  // hand-fused Adam, one tensor of 2^25

double triad_gb_per_s() {
  if (!g_triad_gb_per_s) g_triad_gb_per_s = measure_triad(kThreads, kTriadElements).gb_per_s;
  return *g_triad_gb_per_s;
}

// Memory for the hand-fused loop: K tensors of N elements with four arrays each (param,
// grad, exp_avg, exp_avg_sq). kSeparate allocates every array of every tensor on its own, as
// a framework's tensors and an optimizer's states are; kArena cuts each of the four arrays
// for all tensors out of one allocation, so consecutive tensors form one long stream.
enum class Layout { kSeparate, kArena };

// 64-byte aligned like the runtime's own tensors: unaligned 64-byte vectors would split
// cache lines and handicap the hand loop.
struct AlignedDelete {
  void operator()(float* p) const { ::operator delete[](p, std::align_val_t{64}); }
};
using AlignedFloats = std::unique_ptr<float[], AlignedDelete>;

AlignedFloats aligned_zeros(size_t count) {
  const size_t bytes = (std::max<size_t>(count, 1) * sizeof(float) + 63) / 64 * 64;
  AlignedFloats data(static_cast<float*>(::operator new[](bytes, std::align_val_t{64})));
  std::memset(data.get(), 0, bytes);
  return data;
}

class HandAdamData {
 public:
  HandAdamData(int64_t tensors, int64_t numel, Layout layout = Layout::kSeparate)
      : numel_(numel) {
    const size_t count = static_cast<size_t>(tensors);
    const size_t n = static_cast<size_t>(numel);
    // One tensor: fill on every thread; many: one tensor is small.
    const int fill_threads = tensors == 1 ? kThreads : 1;
    if (layout == Layout::kArena) {
      for (int a = 0; a < 4; ++a) storage_.push_back(aligned_zeros(count * n));
    } else {
      for (size_t k = 0; k < count; ++k) {
        for (int a = 0; a < 4; ++a) storage_.push_back(aligned_zeros(n));
      }
    }
    for (size_t k = 0; k < count; ++k) {
      float* arrays[4];
      for (size_t a = 0; a < 4; ++a) {
        arrays[a] = layout == Layout::kArena ? storage_[a].get() + k * n
                                             : storage_[4 * k + a].get();
      }
      fill_deterministic(arrays[0], numel, static_cast<uint32_t>(2 * k), -1.0f, 1.0f,
                         fill_threads);
      fill_deterministic(arrays[1], numel, static_cast<uint32_t>(2 * k + 1), -1e-2f, 1e-2f,
                         fill_threads);
      tensors_.push_back({arrays[0], arrays[1], arrays[2], arrays[3], numel});
    }
  }
  void step() {
    ++t_;
    if (tensors_.size() == 1) {
      hand_adam_step(tensors_[0], t_, AdamHypers{}, kThreads);
    } else {
      hand_adam_step_many(tensors_, t_, AdamHypers{}, kThreads);
    }
  }
  int64_t elements() const { return numel_ * static_cast<int64_t>(tensors_.size()); }

 private:
  int64_t numel_;
  int64_t t_ = 0;
  std::vector<AlignedFloats> storage_;
  std::vector<AdamTensor> tensors_;
};

// The median step time of the hand loop over one 2^25 tensor.
double hand_ns_per_element() {
  if (!g_hand_ns_per_element) {
    HandAdamData data(1, kBig);
    for (int i = 0; i < 2; ++i) data.step();
    std::vector<double> times;
    for (int i = 0; i < 9; ++i) {
      const Clock::time_point start = Clock::now();
      data.step();
      times.push_back(seconds_since(start));
    }
    std::nth_element(times.begin(), times.begin() + 4, times.end());
    g_hand_ns_per_element = times[4] * 1e9 / static_cast<double>(kBig);
  }
  return *g_hand_ns_per_element;
}

// Items, bytes and the counters every kernel benchmark reports. `seconds` is the wall time
// of the timed loop.
void report(benchmark::State& state, int64_t elements, int64_t bytes_per_element,
            double seconds, bool compare_with_hand) {
  const int64_t items = state.iterations() * elements;
  state.SetItemsProcessed(items);
  state.SetBytesProcessed(items * bytes_per_element);
  const double ns_per_element = seconds * 1e9 / static_cast<double>(items);
  const double gb_per_s = static_cast<double>(bytes_per_element) / ns_per_element;
  state.counters["ns/elem"] = ns_per_element;
  state.counters["GB/s"] = gb_per_s;
  state.counters["B/elem"] = static_cast<double>(bytes_per_element);
  state.counters["bw_frac"] = gb_per_s / triad_gb_per_s();
  if (compare_with_hand) state.counters["vs_hand"] = hand_ns_per_element() / ns_per_element;
}

// ---- Baselines ------------------------------------------------------------------------------

// Each iteration is one measure_triad(): an untimed pass and the best of six; the reported
// time is that best pass.
void BM_Triad(benchmark::State& state) {
  TriadResult result;
  double best = 0;
  for (auto _ : state) {
    result = measure_triad(kThreads, kTriadElements);
    state.SetIterationTime(result.best_seconds);
    best = std::max(best, result.gb_per_s);
  }
  g_triad_gb_per_s = best;
  state.SetItemsProcessed(state.iterations() * kTriadElements);
  state.SetBytesProcessed(state.iterations() * kTriadElements * 16);
  state.counters["GB/s"] = best;  // 16 bytes/element: write-allocate counted
  state.counters["stream_GB/s"] = best * 12.0 / 16.0;  // STREAM's 12 bytes/element
}
BENCHMARK(BM_Triad)->UseManualTime()->Iterations(3)->Unit(benchmark::kMillisecond);

// a[i] += s * b[i]: the in-place pattern of optimizer kernels (no write-allocate).
// Each iteration is one measure_update_gb_per_s(); the reported time is its best pass.
void BM_UpdateBandwidth(benchmark::State& state) {
  constexpr double kBytes = 12.0 * static_cast<double>(kTriadElements);
  double best = 0;
  for (auto _ : state) {
    const double gb_per_s = measure_update_gb_per_s(kThreads, kTriadElements);
    state.SetIterationTime(kBytes / gb_per_s / 1e9);
    best = std::max(best, gb_per_s);
  }
  state.SetBytesProcessed(state.iterations() * kTriadElements * 12);
  state.counters["GB/s"] = best;  // 12 bytes/element, no write-allocate
}
BENCHMARK(BM_UpdateBandwidth)->UseManualTime()->Iterations(3)->Unit(benchmark::kMillisecond);

// args: tensors, elements per tensor
void BM_HandAdam(benchmark::State& state) {
  const int64_t tensors = state.range(0);
  HandAdamData data(tensors, state.range(1));
  for (int i = 0; i < 2; ++i) data.step();  // warm-up: page faults, caches
  const Clock::time_point start = Clock::now();
  for (auto _ : state) data.step();
  const double seconds = seconds_since(start);
  if (tensors == 1 && state.range(1) == kBig) {
    g_hand_ns_per_element = seconds * 1e9 / static_cast<double>(state.iterations() * kBig);
  }
  report(state, data.elements(), kAdamBytesPerElement, seconds, /*compare_with_hand=*/tensors > 1);
}
BENCHMARK(BM_HandAdam)
    ->ArgNames({"tensors", "numel"})
    ->Args({1, kBig})
    ->Args({4096, 4096})
    ->Args({65536, 256})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// ---- fuseopt --------------------------------------------------------------------------------

std::optional<double> g_fuseopt_big_ns_per_element;  // CPU backend, one tensor of 2^25

// An Optimizer over K tensors of N elements with deterministic data, two steps taken (the
// first initialises the states and touches every page). `storage` as CompileOptions::storage
// (bf16/f16 buffers are filled through write_param/write_grad, which round to nearest).
Optimizer make_adam(Backend backend, int64_t tensors, int64_t numel,
                    const std::map<std::string, std::string>& storage = {}) {
  CompileOptions options;
  options.backend = backend;
  // The schedule `fuseopt tune` chose for this size, where it tuned one (the label, the
  // kernel's name, spells the schedule).
  options.size_hint = tensors * numel;
  options.tensor_count = tensors;
  options.storage = storage;
  Optimizer optimizer = make_optimizer("adam", options, {}, kThreads);
  const bool f32 = optimizer.storage("param") == StorageType::kF32 &&
                   optimizer.storage("grad") == StorageType::kF32;
  std::vector<float> staged;
  for (int64_t k = 0; k < tensors; ++k) {
    const size_t index = optimizer.add_tensor(numel);
    const int fill_threads = tensors == 1 ? kThreads : 1;
    if (!f32) {
      staged.resize(static_cast<size_t>(numel));
      fill_deterministic(staged.data(), numel, static_cast<uint32_t>(2 * k), -1.0f, 1.0f,
                         fill_threads);
      optimizer.write_param(index, staged);
      fill_deterministic(staged.data(), numel, static_cast<uint32_t>(2 * k + 1), -1e-2f, 1e-2f,
                         fill_threads);
      optimizer.write_grad(index, staged);
      continue;
    }
    fill_deterministic(optimizer.param(index).data(), numel, static_cast<uint32_t>(2 * k),
                       -1.0f, 1.0f, fill_threads);
    fill_deterministic(optimizer.grad(index).data(), numel, static_cast<uint32_t>(2 * k + 1),
                       -1e-2f, 1e-2f, fill_threads);
  }
  for (int i = 0; i < 2; ++i) optimizer.step();
  return optimizer;
}

// The same group in caller-owned memory: one allocation per parameter and per gradient, as a
// framework's tensors are, so consecutive tensors are not adjacent and nothing coalesces
// (the states are still the optimizer's). Shows the runtime's per-tensor cost.
struct CallerAdam {
  std::vector<std::vector<float>> memory;  ///< params and grads; never resized after adding
  std::optional<Optimizer> optimizer;
  void step() { optimizer->step(); }
};

CallerAdam make_caller_adam(int64_t tensors, int64_t numel) {
  CompileOptions options;
  options.backend = Backend::kCpu;
  options.size_hint = tensors * numel;
  options.tensor_count = tensors;
  CallerAdam group;
  group.optimizer.emplace(make_optimizer("adam", options, {}, kThreads));
  group.memory.reserve(static_cast<size_t>(2 * tensors));
  for (int64_t k = 0; k < tensors; ++k) {
    std::vector<float>& param = group.memory.emplace_back(static_cast<size_t>(numel));
    std::vector<float>& grad = group.memory.emplace_back(static_cast<size_t>(numel));
    fill_deterministic(param.data(), numel, static_cast<uint32_t>(2 * k), -1.0f, 1.0f, 1);
    fill_deterministic(grad.data(), numel, static_cast<uint32_t>(2 * k + 1), -1e-2f, 1e-2f, 1);
    group.optimizer->add_tensor(param.data(), grad.data(), numel);
  }
  for (int i = 0; i < 2; ++i) group.step();
  return group;
}

double fuseopt_big_ns_per_element() {
  if (!g_fuseopt_big_ns_per_element) {
    Optimizer optimizer = make_adam(Backend::kCpu, 1, kBig);
    std::vector<double> times;
    for (int i = 0; i < 9; ++i) {
      const Clock::time_point start = Clock::now();
      optimizer.step();
      times.push_back(seconds_since(start));
    }
    std::nth_element(times.begin(), times.begin() + 4, times.end());
    g_fuseopt_big_ns_per_element = times[4] * 1e9 / static_cast<double>(kBig);
  }
  return *g_fuseopt_big_ns_per_element;
}

// args: tensors, elements per tensor.
void run_fuseopt_adam(benchmark::State& state, Backend backend) {
  const int64_t tensors = state.range(0);
  const int64_t numel = state.range(1);
  try {
    Optimizer optimizer = make_adam(backend, tensors, numel);
    const Clock::time_point start = Clock::now();
    for (auto _ : state) optimizer.step();
    const double seconds = seconds_since(start);
    const KernelTraffic traffic = kernel_traffic(optimizer.kernel().ir);
    const bool cpu = backend == Backend::kCpu;
    report(state, tensors * numel, traffic.bytes_per_element, seconds,
           /*compare_with_hand=*/cpu);
    const double ns_per_element = state.counters["ns/elem"];
    if (cpu && tensors == 1 && numel == kBig) {
      g_fuseopt_big_ns_per_element = ns_per_element;
    } else if (cpu) {
      state.counters["vs_one_big"] = fuseopt_big_ns_per_element() / ns_per_element;
    }
    state.SetLabel(optimizer.kernel().name);
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}

// Many tensors: vs_one_big divides fuseopt's time per element on one 2^25 tensor by this one's.
void BM_FuseoptAdam(benchmark::State& state) { run_fuseopt_adam(state, Backend::kCpu); }
BENCHMARK(BM_FuseoptAdam)
    ->ArgNames({"tensors", "numel"})
    ->Args({1, kBig})
    ->Args({4096, 4096})
    ->Args({65536, 256})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// The reference interpreter (chunked, on the same thread pool), for scale.
void BM_InterpreterAdam(benchmark::State& state) {
  run_fuseopt_adam(state, Backend::kInterpreter);
}
BENCHMARK(BM_InterpreterAdam)
    ->ArgNames({"tensors", "numel"})
    ->Args({1, int64_t{1} << 20})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// ---- Interleaved comparisons ------------------------------------------------------------------
// On a shared machine the load changes between benchmarks, so ratios of figures taken
// minutes apart are noisy. These alternate two contenders step by step in one benchmark and
// report the ratio of their median (and fastest) step times per element; each iteration is
// one step of each.

struct StepTimes {
  std::vector<double> seconds;
  double median_ns(int64_t elements) {
    std::vector<double> s = seconds;
    std::nth_element(s.begin(), s.begin() + static_cast<std::ptrdiff_t>(s.size() / 2), s.end());
    return s[s.size() / 2] * 1e9 / static_cast<double>(elements);
  }
  double min_ns(int64_t elements) const {
    return *std::min_element(seconds.begin(), seconds.end()) * 1e9 /
           static_cast<double>(elements);
  }
};

constexpr std::chrono::milliseconds kOpenMpSpinSettle{30};

template <typename Step>
void time_step(StepTimes& times, Step&& step) {
  const Clock::time_point start = Clock::now();
  step();
  times.seconds.push_back(seconds_since(start));
}

// fuseopt against the hand-fused loop on the same tensors shape. args: tensors, numel.
// ratio = hand / fuseopt time per element: 1 is as fast, above 1 faster.
void BM_AdamVsHand(benchmark::State& state) {
  const int64_t tensors = state.range(0);
  const int64_t numel = state.range(1);
  try {
    HandAdamData hand(tensors, numel);
    for (int i = 0; i < 2; ++i) hand.step();
    Optimizer fuseopt = make_adam(Backend::kCpu, tensors, numel);
    StepTimes hand_times;
    StepTimes fuseopt_times;
    for (auto _ : state) {
      time_step(hand_times, [&] { hand.step(); });
      // libgomp's idle threads spin for milliseconds after a parallel region (3.5 to 4 ms
      // of CPU here), which would take a core from fuseopt's pool on 2 cores.
      state.PauseTiming();
      std::this_thread::sleep_for(kOpenMpSpinSettle);
      state.ResumeTiming();
      time_step(fuseopt_times, [&] { fuseopt.step(); });
    }
    const int64_t elements = tensors * numel;
    state.counters["fuseopt_ns/elem"] = fuseopt_times.median_ns(elements);
    state.counters["hand_ns/elem"] = hand_times.median_ns(elements);
    state.counters["ratio"] = hand_times.median_ns(elements) / fuseopt_times.median_ns(elements);
    state.counters["ratio_min"] = hand_times.min_ns(elements) / fuseopt_times.min_ns(elements);
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}
BENCHMARK(BM_AdamVsHand)
    ->ArgNames({"tensors", "numel"})
    ->Args({1, kBig})
    ->Args({4096, 4096})
    ->Args({65536, 256})
    ->Iterations(30)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// fuseopt on many tensors against fuseopt on one tensor of the same total size (2^24).
// args: tensors, numel, caller (0: add_tensor(numel), the optimizer's arena, where adjacent
// tensors coalesce; 1: separately allocated caller memory, where none do). ratio = one big /
// many time per element (the target is >= 0.9).
void BM_ManyVsOneBig(benchmark::State& state) {
  const int64_t tensors = state.range(0);
  const int64_t numel = state.range(1);
  const bool caller = state.range(2) != 0;
  try {
    Optimizer big = make_adam(Backend::kCpu, 1, tensors * numel);
    std::optional<Optimizer> arena;
    std::optional<CallerAdam> separate;
    if (caller) {
      separate.emplace(make_caller_adam(tensors, numel));
    } else {
      arena.emplace(make_adam(Backend::kCpu, tensors, numel));
    }
    StepTimes big_times;
    StepTimes many_times;
    for (auto _ : state) {
      time_step(big_times, [&] { big.step(); });
      time_step(many_times, [&] {
        if (caller) {
          separate->step();
        } else {
          arena->step();
        }
      });
    }
    const int64_t elements = tensors * numel;
    state.counters["many_ns/elem"] = many_times.median_ns(elements);
    state.counters["big_ns/elem"] = big_times.median_ns(elements);
    state.counters["ratio"] = big_times.median_ns(elements) / many_times.median_ns(elements);
    state.counters["ratio_min"] = big_times.min_ns(elements) / many_times.min_ns(elements);
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}
BENCHMARK(BM_ManyVsOneBig)
    ->ArgNames({"tensors", "numel", "caller"})
    ->Args({4096, 4096, 0})
    ->Args({65536, 256, 0})
    ->Args({65536, 256, 1})
    ->Iterations(30)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// The same for the hand-fused loop: how much of the many-tensor cost is the memory system's
// (short streams in separate allocations) rather than fuseopt's per-tensor work. Also times
// the arena layout (one allocation per array for all tensors): ratio_arena.
void BM_HandManyVsOneBig(benchmark::State& state) {
  const int64_t tensors = state.range(0);
  const int64_t numel = state.range(1);
  HandAdamData big(1, tensors * numel);
  HandAdamData many(tensors, numel, Layout::kSeparate);
  HandAdamData arena(tensors, numel, Layout::kArena);
  for (int i = 0; i < 2; ++i) {
    big.step();
    many.step();
    arena.step();
  }
  StepTimes big_times;
  StepTimes many_times;
  StepTimes arena_times;
  for (auto _ : state) {
    time_step(big_times, [&] { big.step(); });
    time_step(many_times, [&] { many.step(); });
    time_step(arena_times, [&] { arena.step(); });
  }
  const int64_t elements = tensors * numel;
  state.counters["many_ns/elem"] = many_times.median_ns(elements);
  state.counters["arena_ns/elem"] = arena_times.median_ns(elements);
  state.counters["big_ns/elem"] = big_times.median_ns(elements);
  state.counters["ratio"] = big_times.median_ns(elements) / many_times.median_ns(elements);
  state.counters["ratio_min"] = big_times.min_ns(elements) / many_times.min_ns(elements);
  state.counters["ratio_arena"] = big_times.median_ns(elements) / arena_times.median_ns(elements);
}
BENCHMARK(BM_HandManyVsOneBig)
    ->ArgNames({"tensors", "numel"})
    ->Args({4096, 4096})
    ->Args({65536, 256})
    ->Iterations(30)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// Per-tensor overhead without the memory system: 2^18 elements in all (28 bytes each: 7 MiB,
// inside the 32 MiB L3), as one tensor and as 1024 tensors of 256. The difference in step
// time divided by 1024 is what one small tensor costs beyond its elements.
// args: tensors, caller (as for ManyVsOneBig: 1 keeps the small tensors from coalescing).
void BM_InCacheManyVsOne(benchmark::State& state) {
  constexpr int64_t kTotal = int64_t{1} << 18;
  const int64_t tensors = state.range(0);
  const bool caller = state.range(1) != 0;
  try {
    Optimizer one = make_adam(Backend::kCpu, 1, kTotal);
    std::optional<Optimizer> arena;
    std::optional<CallerAdam> separate;
    if (caller) {
      separate.emplace(make_caller_adam(tensors, kTotal / tensors));
    } else {
      arena.emplace(make_adam(Backend::kCpu, tensors, kTotal / tensors));
    }
    StepTimes one_times;
    StepTimes many_times;
    for (auto _ : state) {
      time_step(one_times, [&] { one.step(); });
      time_step(many_times, [&] {
        if (caller) {
          separate->step();
        } else {
          arena->step();
        }
      });
    }
    state.counters["one_ns/elem"] = one_times.median_ns(kTotal);
    state.counters["many_ns/elem"] = many_times.median_ns(kTotal);
    state.counters["ns/tensor"] = (many_times.median_ns(kTotal) - one_times.median_ns(kTotal)) *
                                  static_cast<double>(kTotal) / static_cast<double>(tensors);
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}
BENCHMARK(BM_InCacheManyVsOne)
    ->ArgNames({"tensors", "caller"})
    ->Args({1024, 0})
    ->Args({1024, 1})
    ->Iterations(200)
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

// ---- Two-byte storage ------------------------------------------------------------------------
// Adam with bf16 buffers on the CPU backend: fewer bytes per element, the same f32
// arithmetic plus a widening per load and a rounding per store. B/elem counts each buffer at
// its storage size (bench/kernel_traffic.h), so GB/s and bw_frac say how close to the memory
// system each variant runs, and ns/elem how much faster a step is than f32's 28 bytes.

struct StorageVariant {
  const char* name;
  std::map<std::string, std::string> storage;
};

const std::vector<StorageVariant>& storage_variants() {
  static const std::vector<StorageVariant> variants = {
      // Mixed precision as frameworks run it: bf16 weights and gradients, f32 moments (22 B).
      {"param_grad_bf16", {{"param", "bf16"}, {"grad", "bf16"}}},
      // Everything in bf16 (14 B).
      {"all_bf16",
       {{"param", "bf16"}, {"grad", "bf16"}, {"exp_avg", "bf16"}, {"exp_avg_sq", "bf16"}}},
      // bf16 weights rounded stochastically: a random word (two 32-bit mixes) per element (22 B).
      {"param_bf16_stochastic_grad_bf16", {{"param", "bf16 stochastic"}, {"grad", "bf16"}}},
  };
  return variants;
}

// args: tensors, elements per tensor.
void BM_FuseoptAdamStorage(benchmark::State& state, const StorageVariant& variant) {
  const int64_t tensors = state.range(0);
  const int64_t numel = state.range(1);
  try {
    Optimizer optimizer = make_adam(Backend::kCpu, tensors, numel, variant.storage);
    const Clock::time_point start = Clock::now();
    for (auto _ : state) optimizer.step();
    const double seconds = seconds_since(start);
    const KernelTraffic traffic = kernel_traffic(optimizer.kernel().ir);
    report(state, tensors * numel, traffic.bytes_per_element, seconds,
           /*compare_with_hand=*/false);
    state.SetLabel(optimizer.kernel().name);
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}

// f32 Adam and one storage variant alternating step by step on one 2^25 tensor each: the
// steadier comparison on a shared machine. ratio = f32 / variant time per element (above 1:
// the variant is faster); each side's GB/s and bw_frac in its own bytes.
void BM_AdamStorageVsF32(benchmark::State& state, const StorageVariant& variant) {
  try {
    Optimizer f32 = make_adam(Backend::kCpu, 1, kBig);
    Optimizer narrow = make_adam(Backend::kCpu, 1, kBig, variant.storage);
    StepTimes f32_times;
    StepTimes narrow_times;
    for (auto _ : state) {
      time_step(f32_times, [&] { f32.step(); });
      time_step(narrow_times, [&] { narrow.step(); });
    }
    const double f32_bytes = static_cast<double>(kernel_traffic(f32.kernel().ir).bytes_per_element);
    const double narrow_bytes =
        static_cast<double>(kernel_traffic(narrow.kernel().ir).bytes_per_element);
    const double f32_ns = f32_times.median_ns(kBig);
    const double narrow_ns = narrow_times.median_ns(kBig);
    state.counters["f32_ns/elem"] = f32_ns;
    state.counters["ns/elem"] = narrow_ns;
    state.counters["f32_B/elem"] = f32_bytes;
    state.counters["B/elem"] = narrow_bytes;
    state.counters["f32_GB/s"] = f32_bytes / f32_ns;
    state.counters["GB/s"] = narrow_bytes / narrow_ns;
    state.counters["f32_bw_frac"] = f32_bytes / f32_ns / triad_gb_per_s();
    state.counters["bw_frac"] = narrow_bytes / narrow_ns / triad_gb_per_s();
    state.counters["ratio"] = f32_ns / narrow_ns;
    state.SetLabel(narrow.kernel().name);
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}

void register_storage_benchmarks() {
  for (const StorageVariant& variant : storage_variants()) {
    benchmark::RegisterBenchmark((std::string("BM_FuseoptAdamStorage/") + variant.name).c_str(),
                                 BM_FuseoptAdamStorage, variant)
        ->ArgNames({"tensors", "numel"})
        ->Args({1, kBig})
        ->Args({4096, 4096})
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark((std::string("BM_AdamStorageVsF32/") + variant.name).c_str(),
                                 BM_AdamStorageVsF32, variant)
        ->Iterations(20)
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
  }
}

// ---- JIT compile time -----------------------------------------------------------------------

// A fresh Halide + LLVM compile of one built-in rule at its default options with the
// default schedule (compile_rule() keeps kernels in the process, so it is bypassed here).
// The first compile in a process also pays Halide's and LLVM's one-time set-up (about a
// second; `fuseopt bench` reports it in its compile time): an untimed compile before the
// first timed one keeps it out of the per-rule figures.
void BM_JitCompile(benchmark::State& state, const std::string& rule_name) {
  const frontend::Rule rule = frontend::load_rule(rule_name);
  const ir::Kernel kernel = rule.compile(rule.resolve_options());
  static bool warmed_up = false;
  if (!warmed_up) {
    warmed_up = true;
    try {
      codegen::compile_cpu_kernel(kernel, codegen::default_cpu_schedule());
    } catch (const std::exception&) {
      // reported by the timed compile below
    }
  }
  double halide_seconds = 0;
  for (auto _ : state) {
    try {
      const codegen::HalideCpuBinary binary =
          codegen::compile_cpu_kernel(kernel, codegen::default_cpu_schedule());
      halide_seconds = binary.compile_seconds;
      benchmark::DoNotOptimize(binary.shared_object.data());
    } catch (const std::exception& e) {
      state.SkipWithError(e.what());
      break;
    }
  }
  state.counters["phases"] = static_cast<double>(kernel.phases.size());
  state.counters["compile_s"] = halide_seconds;  // as HalideCpuBinary reports it
}

void register_jit_benchmarks() {
  for (const rules::BuiltinRule& rule : rules::builtin_rules()) {
    benchmark::RegisterBenchmark(("BM_JitCompile/" + rule.name).c_str(), BM_JitCompile,
                                 rule.name)
        ->Iterations(1)
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
  }
}

}  // namespace
}  // namespace fuseopt::bench

int main(int argc, char** argv) {
  fuseopt::bench::register_storage_benchmarks();
  fuseopt::bench::register_jit_benchmarks();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  // In the console header and in the JSON "context".
  benchmark::AddCustomContext("fuseopt_threads", std::to_string(fuseopt::bench::kThreads));
  benchmark::AddCustomContext(
      "fuseopt_bytes_convention",
      "per buffer read, per buffer written and per buffer written but not read "
      "(write-allocate), its element size (4 bytes f32, 2 bf16/f16): triad 16, Adam 28, "
      "Adam with bf16 param and grad 22, all-bf16 Adam 14 bytes/element");
  benchmark::AddCustomContext("fuseopt_baselines_openmp",
                              fuseopt::bench::baselines_have_openmp() ? "yes" : "no");
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

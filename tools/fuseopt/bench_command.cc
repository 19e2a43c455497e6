// `fuseopt bench RULE ...`: times steps of a rule over K tensors of N elements and compares
// the traffic with the streaming bandwidth measured in the same process (CLI.md): the CPU's
// triad, or for --backend cuda the GPU's device-to-device copy. Figures are printed, never
// judged: the exit code says only whether the run worked.
#include <sched.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "api/fuseopt.h"
#include "bench/baselines.h"
#include "bench/kernel_traffic.h"
#include "frontend/rule.h"
#include "ir/kernel.h"
#include "runtime/cuda/cuda_driver.h"
#include "runtime/optimizer.h"
#include "support/error.h"
#include "support/json.h"
#include "support/low_precision.h"
#include "tools/fuseopt/flag_values.h"
#include "tools/fuseopt/rule_setup.h"
#include "tools/fuseopt/subcommands.h"

namespace fuseopt::tools {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int64_t kDefaultSize = int64_t{1} << 25;
constexpr int64_t kMaxElements = int64_t{1} << 40;
constexpr int kWarmupSteps = 2;
constexpr int64_t kMinSteps = 3;
constexpr int64_t kMaxAutoSteps = 1000000;
constexpr double kTargetSeconds = 1.0;
/// The triad's arrays: 3 x 128 MiB, far beyond any last-level cache.
constexpr int64_t kTriadElements = int64_t{1} << 25;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// The cores this process may run on (what `nproc` says), at least 1.
int available_cores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) {
    const int count = CPU_COUNT(&set);
    if (count > 0) return count;
  }
  return std::max(1u, std::thread::hardware_concurrency());
}

/// The copy's buffers: 2 x 256 MiB, far beyond any GPU's L2 (at most an eighth of memory).
constexpr size_t kCopyBytes = size_t{1} << 28;

Backend choose_backend(const std::string& name) {
  if (name == "cuda") {
    require_cuda();  // exit 4 with the reason, before any work
    return Backend::kCuda;
  }
  if (name == "cpu") return Backend::kCpu;
  if (name == "interp") return Backend::kInterpreter;
  throw UserError("--backend must be cpu, interp or cuda, not '" + name + "'");
}

double median(std::vector<double> values) {
  const size_t middle = values.size() / 2;
  std::nth_element(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(middle),
                   values.end());
  const double upper = values[middle];
  if (values.size() % 2 == 1) return upper;
  const double lower =
      *std::max_element(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(middle));
  return (lower + upper) / 2;
}

// Everything the report prints.
struct BenchResult {
  std::string rule;
  std::vector<ir::OptionValue> options;
  std::string backend;
  /// Every buffer's storage ("f32", "bf16", "bf16-sr", ...), by name.
  std::map<std::string, std::string> storage;
  std::string kernel_name;
  int64_t tensors = 0;
  int64_t size = 0;
  int threads = 0;
  double compile_seconds = 0;
  /// Getting the kernel plus the first step (states initialised): the time to the first step.
  double first_step_seconds = 0;
  int64_t steps = 0;
  double step_seconds = 0;  // median
  double min_step_seconds = 0;
  double max_step_seconds = 0;
  bench::KernelTraffic traffic;
  bench::TriadResult triad;
  // cuda: the device, and its device-to-device copy bandwidth (read + write counted), the
  // reference instead of the triad.
  bool gpu = false;
  std::string device;
  double copy_gb_per_s = 0;

  int64_t elements() const { return tensors * size; }
  double ns_per_element() const { return step_seconds * 1e9 / static_cast<double>(elements()); }
  // GPUs write whole sectors without reading them first: no write-allocate traffic.
  int64_t bytes_per_element() const {
    return gpu ? traffic.stream_bytes_per_element : traffic.bytes_per_element;
  }
  double gb_per_s() const { return static_cast<double>(bytes_per_element()) / ns_per_element(); }
  double reference_gb_per_s() const { return gpu ? copy_gb_per_s : triad.gb_per_s; }
  double bandwidth_fraction() const { return gb_per_s() / reference_gb_per_s(); }
};

std::string format_fixed(double value, int digits) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%.*f", digits, value);
  return buffer;
}

// 3 significant digits at least, without exponents: 0.000812, 0.749, 25.1, 1234.
std::string format_figure(double value) {
  const double magnitude = std::fabs(value);
  int digits = 1;
  if (magnitude < 100) digits = 2;
  if (magnitude < 10) digits = 3;
  if (magnitude < 1 && magnitude > 0) {
    digits = 2 - static_cast<int>(std::floor(std::log10(magnitude)));
  }
  return format_fixed(value, std::min(digits, 9));
}

std::string text_report(const BenchResult& r) {
  const bench::KernelTraffic& t = r.traffic;
  std::string out;
  auto line = [&out](const std::string& label, const std::string& text) {
    std::string padded = label;
    padded.resize(12, ' ');
    out += padded + text + "\n";
  };
  line("rule", r.rule + " (" + describe_options(r.options) + ")");
  line("backend", r.backend + " (kernel " + r.kernel_name + ")");
  std::string storage;
  for (const auto& [buffer, type] : r.storage) {
    if (type != "f32") storage += (storage.empty() ? "" : ", ") + buffer + "=" + type;
  }
  line("storage", storage.empty() ? "f32" : storage + " (others f32)");
  line("tensors", std::to_string(r.tensors) + " x " + std::to_string(r.size) + " elements");
  if (r.gpu) {
    line("device", r.device);
  } else {
    line("threads", std::to_string(r.threads));
  }
  line("compile", format_figure(r.compile_seconds * 1e3) + " ms");
  line("first step", format_figure(r.first_step_seconds * 1e3) +
                         " ms to the end of the first step (the kernel, then one step; "
                         "cold with an empty cache, warm when the cache has the kernel)");
  line("steps", std::to_string(r.steps) + " timed after " + std::to_string(kWarmupSteps) +
                    " warm-up steps: median " + format_figure(r.step_seconds * 1e3) +
                    " ms per step (min " + format_figure(r.min_step_seconds * 1e3) + ", max " +
                    format_figure(r.max_step_seconds * 1e3) + ")");
  line("time", format_figure(r.ns_per_element()) + " ns/element");
  // Two-byte buffers count 2 bytes: the reads, writes and write-allocates in bytes then.
  auto counted = [&t](int count, int64_t bytes, const char* what) {
    return std::to_string(count) + " " + what +
           (t.narrow ? " (" + std::to_string(bytes) + " bytes)" : std::string());
  };
  line("traffic",
       std::to_string(r.bytes_per_element()) + " bytes/element (" +
           counted(t.buffer_reads, t.read_bytes, "buffer reads") + " + " +
           counted(t.buffer_writes, t.write_bytes, "writes") +
           (r.gpu ? std::string(", no write-allocate on the GPU")
                  : " + " + counted(t.write_allocates, t.write_allocate_bytes, "write-allocates")) +
           (t.narrow ? ", 4 bytes per f32 element and 2 per bf16 or f16, " : ", 4 bytes each, ") +
           std::to_string(t.phases) + (t.phases == 1 ? " phase)" : " phases)"));
  line("throughput", format_figure(r.gb_per_s()) + " GB/s");
  if (r.gpu) {
    line("bandwidth", format_figure(r.copy_gb_per_s) +
                          " GB/s device-to-device copy on the GPU in this process (bytes read "
                          "+ bytes written)");
    line("fraction", format_figure(r.bandwidth_fraction()) + " of the copy bandwidth");
    return out;
  }
  line("bandwidth", format_figure(r.triad.gb_per_s) + " GB/s streaming triad on " +
                        std::to_string(r.triad.threads) +
                        " threads in this process (16 bytes/element, write-allocate "
                        "counted; STREAM's 12-byte convention: " +
                        format_figure(r.triad.stream_gb_per_s) + " GB/s)");
  line("fraction", format_figure(r.bandwidth_fraction()) + " of the streaming bandwidth");
  return out;
}

std::string json_report(const BenchResult& r) {
  support::JsonWriter w(2);
  w.begin_object();
  w.key("rule").value(r.rule);
  w.key("options").begin_object();
  for (const ir::OptionValue& option : r.options) {
    w.key(option.name);
    if (option.is_bool) {
      w.value(option.value != 0);
    } else {
      w.value(option.value);
    }
  }
  w.end_object();
  w.key("backend").value(r.backend);
  w.key("storage").begin_object();
  for (const auto& [buffer, type] : r.storage) w.key(buffer).value(type);
  w.end_object();
  w.key("kernel").value(r.kernel_name);
  w.key("tensors").value(r.tensors);
  w.key("size").value(r.size);
  w.key("elements").value(r.elements());
  w.key("threads").value(r.threads);
  if (r.gpu) w.key("device").value(r.device);
  w.key("compile_ms").value(r.compile_seconds * 1e3);
  w.key("first_step_ms").value(r.first_step_seconds * 1e3);
  w.key("warmup_steps").value(kWarmupSteps);
  w.key("steps").value(r.steps);
  w.key("step_ms").value(r.step_seconds * 1e3);
  w.key("min_step_ms").value(r.min_step_seconds * 1e3);
  w.key("max_step_ms").value(r.max_step_seconds * 1e3);
  w.key("ns_per_element").value(r.ns_per_element());
  w.key("bytes_per_element").value(r.bytes_per_element());
  w.key("stream_bytes_per_element").value(r.traffic.stream_bytes_per_element);
  w.key("read_bytes_per_element").value(r.traffic.read_bytes);
  w.key("write_bytes_per_element").value(r.traffic.write_bytes);
  if (!r.gpu) w.key("write_allocate_bytes_per_element").value(r.traffic.write_allocate_bytes);
  w.key("phases").value(r.traffic.phases);
  w.key("gb_per_s").value(r.gb_per_s());
  if (r.gpu) {
    w.key("copy_gb_per_s").value(r.copy_gb_per_s);
  } else {
    w.key("triad_gb_per_s").value(r.triad.gb_per_s);
    w.key("triad_stream_gb_per_s").value(r.triad.stream_gb_per_s);
  }
  w.key("bandwidth_fraction").value(r.bandwidth_fraction());
  w.key("bytes_convention")
      .value(r.gpu ? "per buffer read and per buffer written, its element size (4 bytes f32, 2 "
                     "bf16/f16; no write-allocate on the GPU); device-to-device copy 8 "
                     "bytes/element"
                   : "per buffer read, per buffer written, and per buffer written but not read "
                     "(write-allocate), its element size (4 bytes f32, 2 bf16/f16); triad 16 "
                     "bytes/element");
  w.end_object();
  return w.str() + "\n";
}

}  // namespace

CommandSpec bench_spec() {
  return {
      .name = "bench",
      .synopsis =
          "RULE [--size N] [--tensors K] [--threads T] [--backend cpu|interp|cuda]\n"
          "           [--steps S] [--set NAME=VALUE]... [--option NAME=VALUE]...\n"
          "           [--storage BUFFER=TYPE[,BUFFER=TYPE...]]... [--json]",
      .description =
          "Compiles RULE (reporting the compile time), steps K tensors of N elements each\n"
          "(deterministic data; defaults: one tensor of 2^25) twice to warm up, then times S\n"
          "steps and takes the median step time. Then it measures the streaming bandwidth in\n"
          "this process with the same threads (a[i] = b[i] + s*c[i] over 3 x 128 MiB) and\n"
          "prints the time per step and per element, the bytes per element, GB/s and the\n"
          "fraction of the streaming bandwidth. Figures only: nothing is judged.\n"
          "\n"
          "The compile time is the time to get the kernel: a Halide compile (about a second\n"
          "for the first in a process) on a cache miss, a load from the cache database\n"
          "(milliseconds) on a hit; FUSEOPT_CACHE=$(mktemp -d) gives a cold compile.\n"
          "\n"
          "Bytes per element come from the kernel's IR: per phase, the element size (4 bytes\n"
          "for f32, 2 for bf16 and f16) of each buffer read, each buffer written, and each\n"
          "buffer written without being read (write-allocate), summed over phases (Adam: 28;\n"
          "Adam with --storage param=bf16,grad=bf16: 22). The triad, counted the same way,\n"
          "moves 16 bytes per element; STREAM's own convention (12) is printed too.\n"
          "\n"
          "--storage stores buffers (param, grad or a state) in another type: f32, bf16 or\n"
          "f16, rounded to nearest even, or bf16-sr or f16-sr, rounded stochastically (seed:\n"
          "--set rounding_seed=N). Parameters and gradients are filled with the same data,\n"
          "rounded to the type.\n"
          "\n"
          "Backends: cpu (the Halide kernels, the default), interp (the reference\n"
          "interpreter, chunked on the same threads), cuda (kernels compiled by NVRTC for\n"
          "this machine's GPU, tensors in device memory; without a GPU and driver it exits\n"
          "with code 4). With cuda each timed step ends when the GPU has finished it, bytes\n"
          "per element count no write-allocate, and the reference is the device-to-device\n"
          "copy bandwidth measured in this process (2 x 256 MiB, bytes read + written).\n",
      .positional_name = "RULE",
      .min_positionals = 1,
      .max_positionals = 1,
      .flags =
          {
              {"--size", FlagKind::kValue, "N", "elements per tensor (default 33554432 = 2^25)"},
              {"--tensors", FlagKind::kValue, "K", "number of tensors (default 1)"},
              {"--threads", FlagKind::kValue, "T", "CPU threads (default: every core)"},
              {"--backend", FlagKind::kValue, "B", "cpu, interp or cuda (default cpu)"},
              {"--steps", FlagKind::kValue, "S",
               "timed steps (default: enough for about 1 s, at least 3)"},
              {"--set", FlagKind::kRepeated, "NAME=VALUE", "set a hyper (repeatable)"},
              {"--option", FlagKind::kRepeated, "NAME=VALUE",
               "set an option: true, false or an integer (repeatable)"},
              {"--storage", FlagKind::kRepeated, "BUFFER=TYPE[,...]",
               "store buffers as f32, bf16, f16, bf16-sr or f16-sr (stochastic rounding)"},
              {"--json", FlagKind::kSwitch, "", "print one JSON object"},
          },
  };
}

int run_bench(const Args& args) {
  const int64_t size = parse_integer(args.value_or("--size", std::to_string(kDefaultSize)),
                                     "--size", 1, kMaxElements);
  const int64_t tensors =
      parse_integer(args.value_or("--tensors", "1"), "--tensors", 1, kMaxElements);
  if (size > kMaxElements / tensors) {
    throw UserError("--size times --tensors must be at most 2^40 elements");
  }
  const int threads = static_cast<int>(parse_integer(
      args.value_or("--threads", std::to_string(available_cores())), "--threads", 1, 4096));
  std::optional<int64_t> fixed_steps;
  if (auto steps = args.value("--steps")) {
    fixed_steps = parse_integer(*steps, "--steps", 1, INT64_MAX);
  }
  const Backend backend = choose_backend(args.value_or("--backend", "cpu"));

  // The rule, its options and hypers, checked with the frontend's messages.
  const std::string& rule_arg = args.positionals()[0];
  const frontend::Rule rule = frontend::load_rule(rule_arg);
  const std::map<std::string, std::string> option_flags =
      parse_assignments(args.values("--option"), "--option");
  const std::vector<ir::OptionValue> options = rule.resolve_options(option_flags);
  ir::Kernel checked = tools::compile_rule(rule, options);
  // Storage before the hypers: a stochastic buffer adds the rounding_seed hyper.
  const std::map<std::string, StorageChoice> storage = parse_storage(args.values("--storage"));
  const std::map<std::string, std::string> storage_options = apply_storage(checked, storage);
  const std::vector<double> hyper_values =
      resolve_hypers(rule, checked, parse_assignments(args.values("--set"), "--set"));
  std::map<std::string, double> hypers;
  for (size_t i = 0; i < checked.hypers.size(); ++i) {
    hypers[checked.hypers[i].name] = hyper_values[i];
  }

  CompileOptions compile_options;
  compile_options.backend = backend;
  compile_options.options = option_flags;
  compile_options.storage = storage_options;
  // The schedule `fuseopt tune` chose for this size, where it tuned one (the kernel's name
  // spells the schedule).
  compile_options.size_hint = tensors * size;
  compile_options.tensor_count = tensors;
  const Clock::time_point compile_start = Clock::now();
  std::shared_ptr<const runtime::CompiledKernel> kernel =
      fuseopt::compile_rule(rule_arg, compile_options);
  const double compile_seconds = seconds_since(compile_start);

  // cuda: the tensors live on the GPU; each is filled on the host and copied there, and
  // each timed step ends when the GPU has finished it (synchronize() does nothing for cpu).
  const bool gpu = backend == Backend::kCuda;
  int64_t steps = kMinSteps;
  std::vector<double> times;
  double first_step_seconds = 0;
  {
    Optimizer optimizer(kernel, hypers, threads);
    const int fill_threads = tensors == 1 ? threads : 1;
    // Device memory, or a two-byte parameter or gradient: filled through the host and
    // write_param/write_grad (which round to the buffer's type).
    const bool staging = gpu || optimizer.storage("param") != StorageType::kF32 ||
                         optimizer.storage("grad") != StorageType::kF32;
    std::vector<float> staged;
    for (int64_t k = 0; k < tensors; ++k) {
      const size_t index = optimizer.add_tensor(size);
      if (staging) {
        staged.resize(static_cast<size_t>(size));
        bench::fill_deterministic(staged.data(), size, static_cast<uint32_t>(2 * k), -1.0f, 1.0f,
                                  fill_threads);
        optimizer.write_param(index, staged);
        bench::fill_deterministic(staged.data(), size, static_cast<uint32_t>(2 * k + 1), -1e-2f,
                                  1e-2f, fill_threads);
        optimizer.write_grad(index, staged);
        continue;
      }
      bench::fill_deterministic(optimizer.param(index).data(), size, static_cast<uint32_t>(2 * k),
                                -1.0f, 1.0f, fill_threads);
      bench::fill_deterministic(optimizer.grad(index).data(), size,
                                static_cast<uint32_t>(2 * k + 1), -1e-2f, 1e-2f, fill_threads);
    }
    staged = {};
    optimizer.synchronize();
    auto timed_step = [&optimizer] {
      const Clock::time_point start = Clock::now();
      optimizer.step();
      optimizer.synchronize();
      return seconds_since(start);
    };

    // The first step initialises the states and touches every page.
    double last_warmup = 0;
    for (int i = 0; i < kWarmupSteps; ++i) {
      last_warmup = timed_step();
      if (i == 0) first_step_seconds = last_warmup;
    }
    if (fixed_steps) {
      steps = *fixed_steps;
    } else if (last_warmup > 0) {
      steps = std::clamp<int64_t>(static_cast<int64_t>(std::ceil(kTargetSeconds / last_warmup)),
                                  kMinSteps, kMaxAutoSteps);
    } else {
      steps = kMaxAutoSteps;
    }
    times.reserve(static_cast<size_t>(std::min<int64_t>(steps, kMaxAutoSteps)));
    for (int64_t i = 0; i < steps; ++i) times.push_back(timed_step());
  }  // the tensors are freed before the bandwidth is measured

  BenchResult result;
  result.rule = rule.name();
  result.options = options;
  result.backend = backend_name(backend);
  result.kernel_name = kernel->name;
  for (const ir::BufferDecl& buffer : kernel->ir.buffers) {
    result.storage[buffer.name] =
        std::string(storage_type_name(buffer.storage)) + (buffer.stochastic ? "-sr" : "");
  }
  result.tensors = tensors;
  result.size = size;
  result.threads = threads;
  result.compile_seconds = compile_seconds;
  result.first_step_seconds = compile_seconds + first_step_seconds;
  result.steps = steps;
  result.step_seconds = median(times);
  result.min_step_seconds = *std::min_element(times.begin(), times.end());
  result.max_step_seconds = *std::max_element(times.begin(), times.end());
  result.traffic = bench::kernel_traffic(kernel->ir);
  if (gpu) {
    // The same GPU, in the same process, right after the steps.
    const runtime::CudaDriver& driver = runtime::CudaDriver::get();
    result.gpu = true;
    result.device = kernel->device != nullptr ? kernel->device->name() : driver.device().name;
    const size_t bytes =
        std::max<size_t>(std::min<size_t>(kCopyBytes, driver.device().total_memory / 8), 1 << 20);
    result.copy_gb_per_s = runtime::measure_copy_bandwidth(driver, bytes) / 1e9;
  } else {
    // After the steps, so the OpenMP threads of the probe never compete with them.
    result.triad = bench::measure_triad(threads, kTriadElements);
  }

  std::cout << (args.has("--json") ? json_report(result) : text_report(result));
  return 0;
}

}  // namespace fuseopt::tools

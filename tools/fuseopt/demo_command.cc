// `fuseopt demo`: the project's main job, as a list of named sections run in order: check
// every built-in rule, print AdaMomentum's IR, run it on the reference interpreter over a
// small quadratic problem whose loss must go down, compile it for this CPU and check it
// against the interpreter, and time it against the memory bandwidth measured here.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <iterator>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <chrono>

#include "api/fuseopt.h"
#include "autotune/config.h"
#include "autotune/kernel_store.h"
#include "bench/baselines.h"
#include "bench/kernel_traffic.h"
#include "frontend/rule.h"
#include "ir/printer.h"
#include "rules/builtin_rules.h"
#include "support/diagnostics.h"
#include "support/error.h"
#include "tools/fuseopt/flag_values.h"
#include "tools/fuseopt/rule_setup.h"
#include "tools/fuseopt/subcommands.h"
#include "tools/fuseopt/tensor_stepper.h"

namespace fuseopt::tools {
namespace {

constexpr const char* kDemoRule = "adamomentum";
constexpr int kDemoSteps = 5;
constexpr int kDemoElements = 8;
constexpr double kDemoLr = 0.02;
constexpr size_t kShownElements = 2;  // per tensor in the table

// What the sections found; the demo fails when any section did not go as it must.
struct DemoResult {
  std::vector<std::string> failures;
  int64_t timed_elements = int64_t{1} << 24;  ///< --size
  double tune_budget_seconds = 15;            ///< --tune-budget
};

struct DemoSection {
  const char* title;
  void (*run)(DemoResult& result);
};

std::string format(const char* spec, double value) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, spec, value);
  return buffer;
}

// Four rules to a line: "adam ok  (4)" with the number of option combinations checked.
void check_builtin_rules(DemoResult& result) {
  constexpr size_t kPerLine = 4;
  constexpr size_t kCellWidth = 20;
  std::string line;
  size_t in_line = 0;
  for (const rules::BuiltinRule& builtin : rules::builtin_rules()) {
    const auto file = frontend::load_rule_source(builtin.name);
    support::Diagnostics diags(*file);
    const auto rule = frontend::Rule::check(file, diags, /*every_option_combination=*/true);
    std::string cell = builtin.name + " ";
    if (rule) {
      cell += "ok (" + std::to_string(rule->option_combinations().size()) + ")";
    } else {
      cell += "FAILED";
      std::cerr << diags.render();
      result.failures.push_back("the built-in rule '" + builtin.name + "' does not check");
    }
    cell.resize(std::max(cell.size() + 1, kCellWidth), ' ');
    line += cell;
    if (++in_line == kPerLine) {
      std::cout << "  " << line.substr(0, line.find_last_not_of(' ') + 1) << "\n";
      line.clear();
      in_line = 0;
    }
  }
  if (!line.empty()) std::cout << "  " << line.substr(0, line.find_last_not_of(' ') + 1) << "\n";
  std::cout << "  (N: the option combinations checked)\n";
}

// The kernel without its declarations, which the kernel's name and the table below show.
void print_demo_ir(DemoResult&) {
  const frontend::Rule rule = load_builtin_rule(kDemoRule);
  const std::string text = ir::print_kernel(compile_rule(rule, rule.resolve_options()));
  size_t begin = 0;
  while (begin < text.size()) {
    size_t end = text.find('\n', begin);
    if (end == std::string::npos) end = text.size();
    const std::string_view line(text.data() + begin, end - begin);
    const bool is_declaration = line.starts_with("rule ") || line.starts_with("option ") ||
                                line.starts_with("hyper ") || line.starts_with("buffer ");
    if (!is_declaration) std::cout << "  " << line << "\n";
    begin = end + 1;
  }
}

// "[ 0.9     -0.4    ...]": the first few elements of a tensor.
std::string show(std::span<const float> values) {
  std::string out = "[";
  for (size_t i = 0; i < kShownElements && i < values.size(); ++i) {
    out += format(i == 0 ? "%9.3g" : " %9.3g", values[i]);
  }
  if (values.size() > kShownElements) out += " ...";
  return out + "]";
}

std::string column(std::string text, size_t width) {
  if (text.size() < width) text.resize(width, ' ');
  return text + " ";
}

std::string without_trailing_spaces(std::string text) {
  while (!text.empty() && text.back() == ' ') text.pop_back();
  return text;
}

// Minimises loss = 0.5 * ||param - target||^2, whose gradient is param - target: a
// different gradient every step, and a loss that must go down.
void run_demo_rule(DemoResult& result) {
  const frontend::Rule rule = load_builtin_rule(kDemoRule);
  const ir::Kernel kernel = compile_rule(rule, rule.resolve_options());
  const std::vector<double> hypers =
      resolve_hypers(rule, kernel, {{"lr", format_number(kDemoLr)}});

  std::vector<float> param(kDemoElements), target(kDemoElements);
  for (int i = 0; i < kDemoElements; ++i) {
    param[static_cast<size_t>(i)] = static_cast<float>(std::sin(1.0 + i));
    target[static_cast<size_t>(i)] = static_cast<float>(0.25 * (i % 3) - 0.25);
  }
  auto loss_and_grad = [&](std::span<const float> p, std::vector<float>& grad) {
    double loss = 0;
    for (size_t i = 0; i < p.size(); ++i) {
      grad[i] = p[i] - target[i];
      loss += 0.5 * double(grad[i]) * double(grad[i]);
    }
    return loss;
  };

  std::cout << "  loss = 0.5 * ||param - target||^2 over " << kDemoElements
            << " elements, grad = param - target, lr = " << format_number(kDemoLr) << "\n";
  constexpr size_t kTensorWidth = 1 + kShownElements * 10 + 4;
  std::string header = column("  step", 6) + column("loss", 8) + column("param", kTensorWidth);
  for (const ir::BufferDecl& buffer : kernel.buffers) {
    if (buffer.role == ir::BufferRole::kState) header += column(buffer.name, kTensorWidth);
  }
  std::cout << without_trailing_spaces(header) << "\n";

  TensorStepper stepper(kernel, param);
  std::vector<float> grad(kDemoElements);
  std::vector<double> losses;
  for (int step = 0; step <= kDemoSteps; ++step) {
    losses.push_back(loss_and_grad(stepper.param(), grad));
    std::string line = column(format("  %4.0f", step), 6) + column(format("%.4f", losses.back()), 8) +
                       column(show(stepper.param()), kTensorWidth);
    for (size_t i = 0; i < kernel.buffers.size() && step > 0; ++i) {
      if (kernel.buffers[i].role == ir::BufferRole::kState) {
        line += column(show(stepper.buffer(i)), kTensorWidth);
      }
    }
    std::cout << without_trailing_spaces(line) << "\n";
    if (step < kDemoSteps) stepper.step(grad, hypers);
  }
  const bool decreased = losses.back() < losses.front();
  std::cout << "  loss " << format("%.4f", losses.front()) << " -> "
            << format("%.4f", losses.back())
            << (decreased ? ": it went down" : ": it did NOT go down") << "\n";
  if (!decreased) result.failures.push_back("the loss of the demo run did not go down");
}

// A group of mixed sizes, odd and around the chunk and vector widths, stepped on the CPU
// backend and on the interpreter backend from the same data: they must agree.
void check_cpu_against_interpreter(DemoResult& result) {
  const std::vector<int64_t> sizes = {1, 17, 16384, 16385, 1000003};
  auto run = [&](Backend backend, std::vector<std::vector<float>>& params) {
    CompileOptions options;
    options.backend = backend;
    Optimizer optimizer = make_optimizer(kDemoRule, options, {{"lr", kDemoLr}});
    for (int64_t n : sizes) optimizer.add_tensor(n);
    for (size_t t = 0; t < sizes.size(); ++t) {
      auto p = optimizer.param(t);
      for (size_t i = 0; i < p.size(); ++i) p[i] = static_cast<float>(std::sin(0.001 * double(i) + double(t)));
    }
    for (int step = 1; step <= kDemoSteps; ++step) {
      for (size_t t = 0; t < sizes.size(); ++t) {
        auto g = optimizer.grad(t);
        for (size_t i = 0; i < g.size(); ++i) g[i] = static_cast<float>(std::cos(0.37 * double(i) * step));
      }
      optimizer.step();
    }
    for (size_t t = 0; t < sizes.size(); ++t) params.emplace_back(optimizer.param(t).begin(), optimizer.param(t).end());
    return optimizer.kernel().name;
  };
  std::vector<std::vector<float>> cpu, interp;
  const auto start = std::chrono::steady_clock::now();
  const std::string name = run(Backend::kCpu, cpu);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  run(Backend::kInterpreter, interp);
  int64_t differing = 0, total = 0;
  for (size_t t = 0; t < cpu.size(); ++t) {
    for (size_t i = 0; i < cpu[t].size(); ++i) differing += cpu[t][i] != interp[t][i];
    total += static_cast<int64_t>(cpu[t].size());
  }
  std::cout << "  compiled " << name << " (with " << kDemoSteps << " steps: " << format("%.2f", seconds) << " s)\n"
            << "  " << kDemoSteps << " steps over tensors of 1, 17, 16384, 16385 and 1000003 elements: "
            << differing << " of " << total << " elements differ from the interpreter\n";
  if (differing != 0) result.failures.push_back("the cpu backend does not match the interpreter");
}

// Tunes adamomentum's CPU schedule for this machine at the size the next section times,
// recording the winner in the cache (`fuseopt cache ls`); a second demo finds it there.
void tune_for_this_machine(DemoResult& result) {
  const frontend::Rule rule = load_builtin_rule(kDemoRule);
  const ir::Kernel kernel = compile_rule(rule, rule.resolve_options());
  autotune::TuneSettings settings;
  settings.sizes = {result.timed_elements};
  settings.budget_seconds = result.tune_budget_seconds;
  for (const autotune::KeyReport& report : autotune::default_kernel_store().tune_cpu(kernel, settings)) {
    std::cout << "  " << report.size << " elements: ";
    switch (report.outcome) {
      case autotune::KeyReport::Outcome::kAlreadyTuned:
        std::cout << "already tuned on this machine (cached); 'fuseopt tune --force' tunes again\n";
        continue;
      case autotune::KeyReport::Outcome::kTunedElsewhere:
        std::cout << "tuned meanwhile by another process\n";
        continue;
      case autotune::KeyReport::Outcome::kNoValidConfig:
        std::cout << "no configuration passed its check: " << report.message << "\n";
        continue;
      case autotune::KeyReport::Outcome::kTuned:
        break;
    }
    std::cout << report.configs_measured << " configurations measured in " << format("%.1f", report.seconds)
              << " s; winner " << autotune::cpu_spelling(report.winner) << " against the default "
              << autotune::cpu_spelling(report.default_config);
    if (report.gain > 0) std::cout << ": " << format("%.2f", report.gain) << "x faster";
    std::cout << (report.saved ? " (saved in the cache)" : " (not saved: no cache)") << "\n";
  }
}

// One large tensor, with the tuned schedule: the time per step against the streaming
// bandwidth of this machine.
void time_against_bandwidth(DemoResult& result) {
  const int64_t kElements = result.timed_elements;
  CompileOptions options;
  options.backend = Backend::kCpu;
  options.size_hint = kElements;  // picks the tuned schedule of this size's bucket
  Optimizer optimizer = make_optimizer(kDemoRule, options);
  optimizer.add_tensor(kElements);
  for (int i = 0; i < 2; ++i) optimizer.step();  // warm-up: pages touched, states initialised
  std::vector<double> times;
  for (int i = 0; i < 7; ++i) {
    const auto start = std::chrono::steady_clock::now();
    optimizer.step();
    times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  std::sort(times.begin(), times.end());
  const double step_seconds = times[times.size() / 2];
  const int64_t bytes = bench::kernel_traffic(optimizer.kernel().ir).bytes_per_element;
  const double gb_per_s = double(bytes) * double(kElements) / step_seconds / 1e9;
  const double triad = bench::measure_triad(optimizer.threads()).gb_per_s;
  std::cout << "  " << optimizer.kernel().name << "\n  on " << kElements << " elements, " << optimizer.threads() << " threads: "
            << format("%.2f", step_seconds * 1e3) << " ms per step, "
            << format("%.2f", step_seconds * 1e9 / double(kElements)) << " ns/element\n"
            << "  " << bytes << " bytes/element moved: " << format("%.1f", gb_per_s) << " GB/s, "
            << format("%.2f", gb_per_s / triad) << " of the streaming bandwidth measured here ("
            << format("%.1f", triad) << " GB/s, triad)\n";
}

// The main job, in order.
constexpr DemoSection kSections[] = {
    {"check every built-in rule", check_builtin_rules},
    {"the IR of adamomentum (default options)", print_demo_ir},
    {"run adamomentum on the reference interpreter", run_demo_rule},
    {"compile adamomentum for this CPU and check it against the interpreter",
     check_cpu_against_interpreter},
    {"tune adamomentum for this machine", tune_for_this_machine},
    {"adamomentum's speed against the memory bandwidth", time_against_bandwidth},
};

}  // namespace

CommandSpec demo_spec() {
  return {
      .name = "demo",
      .synopsis = "[--size N] [--tune-budget SECONDS]",
      .description =
          "The main job of fuseopt, in sections: checks every built-in rule, prints the IR\n"
          "of adamomentum, runs it for 5 steps on the reference interpreter over a small\n"
          "quadratic problem (loss, parameter and states), compiles it for this CPU and\n"
          "checks it against the interpreter on tensors of mixed sizes, tunes its schedule\n"
          "for this machine (kept in the cache: a second run finds it), and times it on\n"
          "N elements against the streaming bandwidth measured in the same process.\n"
          "Exits 0 when every rule checks, the loss goes down and the backends agree.\n",
      .flags =
          {
              {"--size", FlagKind::kValue, "N", "elements to tune for and time (default 2^24)"},
              {"--tune-budget", FlagKind::kValue, "SECONDS", "time for tuning (default 15)"},
          },
  };
}

int run_demo(const Args& args) {
  DemoResult result;
  result.timed_elements = parse_integer(args.value_or("--size", "16777216"), "--size", 1, int64_t{1} << 32);
  result.tune_budget_seconds = static_cast<double>(
      parse_integer(args.value_or("--tune-budget", "15"), "--tune-budget", 1, 3600));
  for (size_t i = 0; i < std::size(kSections); ++i) {
    if (i) std::cout << "\n";
    std::cout << "== " << kSections[i].title << "\n";
    kSections[i].run(result);
  }
  std::cout << "\n";
  if (!result.failures.empty()) {
    for (const std::string& failure : result.failures) std::cout << "demo: FAILED: " << failure << "\n";
    std::cout.flush();
    throw InternalError("the demo failed (" + std::to_string(result.failures.size()) +
                        " problem" + (result.failures.size() == 1 ? "" : "s") + " above)");
  }
  std::cout << "demo: ok\n";
  return 0;
}

}  // namespace fuseopt::tools

// `fuseopt demo`: the project's main job, as a list of named sections run in order. For
// now: check every built-in rule, print AdaMomentum's IR, and run AdaMomentum on the
// reference interpreter over a small quadratic problem whose loss must go down.
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

// The main job, in order. Later sections (CPU compilation, tuning) go here.
constexpr DemoSection kSections[] = {
    {"check every built-in rule", check_builtin_rules},
    {"the IR of adamomentum (default options)", print_demo_ir},
    {"run adamomentum on the reference interpreter", run_demo_rule},
};

}  // namespace

CommandSpec demo_spec() {
  return {
      .name = "demo",
      .synopsis = "",
      .description =
          "The main job of fuseopt so far, in sections: checks every built-in rule, prints\n"
          "the IR of adamomentum, and runs it for 5 steps on the reference interpreter over\n"
          "a small quadratic problem, printing the loss, the parameter and the states.\n"
          "Exits 0 when every rule checks and the loss goes down.\n",
  };
}

int run_demo(const Args&) {
  DemoResult result;
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

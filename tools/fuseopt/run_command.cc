// `fuseopt run RULE --param P.npy --grad G.npy --out DIR ...`: runs N steps of a rule on one
// tensor and writes the parameter, every state and the scalars into DIR (CLI.md), on the
// reference interpreter or on a compiled backend (cpu, or cuda with the tensor copied to the
// GPU and back) through fuseopt::Optimizer.
#include <algorithm>
#include <iostream>
#include <map>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "api/fuseopt.h"
#include "frontend/rule.h"
#include "ir/kernel.h"
#include "support/edit_distance.h"
#include "support/error.h"
#include "support/json.h"
#include "support/npy.h"
#include "tools/fuseopt/flag_values.h"
#include "tools/fuseopt/output_directory.h"
#include "tools/fuseopt/rule_setup.h"
#include "tools/fuseopt/subcommands.h"
#include "tools/fuseopt/tensor_stepper.h"

namespace fuseopt::tools {
namespace {

constexpr int64_t kMaxSteps = INT64_MAX;

// The backend that runs the steps. `auto` means the fastest this machine has: cuda where a
// GPU, its driver and NVRTC work, else cpu.
enum class Backend { kInterp, kCpu, kCuda };

Backend choose_backend(const std::string& name, bool verbose) {
  if (name == "interp") return Backend::kInterp;
  if (name == "cpu") return Backend::kCpu;
  if (name == "cuda") {
    require_cuda();  // exit 4 with the reason, before any work
    return Backend::kCuda;
  }
  if (name == "auto") {
    const std::string reason = cuda_unavailable_reason();
    if (reason.empty()) {
      if (verbose) std::cerr << "fuseopt: --backend auto: running on the cuda backend\n";
      return Backend::kCuda;
    }
    if (verbose) {
      std::cerr << "fuseopt: --backend auto: running on the cpu backend (cuda: " << reason << ")\n";
    }
    return Backend::kCpu;
  }
  throw UserError("--backend must be interp, cpu, cuda or auto, not '" + name + "'");
}

const char* describe(Backend backend) {
  switch (backend) {
    case Backend::kInterp:
      return "interpreter";
    case Backend::kCpu:
      return "cpu backend";
    case Backend::kCuda:
      return "cuda backend";
  }
  return "?";
}

// What a run leaves behind, whichever backend ran it.
struct RunResult {
  std::vector<std::vector<float>> buffers;  // per Kernel::buffers entry (grad left empty)
  std::vector<double> scalars;              // per Kernel::scalars entry
  int64_t steps_done = 0;
};

// The gradient of every step: G has P's shape (the same every step) or one more leading
// axis of length `steps` (row k is step k+1's gradient).
std::span<const float> gradient_of_step(const support::NpyArray& grad, int64_t numel, bool per_step,
                                        int64_t step) {
  const size_t offset = per_step ? static_cast<size_t>(step * numel) : 0;
  return std::span<const float>(grad.data.data() + offset, static_cast<size_t>(numel));
}

bool is_per_step(const support::NpyArray& grad, const support::NpyArray& param,
                 const std::string& grad_path, int64_t steps) {
  if (grad.shape == param.shape) return false;
  std::vector<int64_t> per_step_shape{steps};
  per_step_shape.insert(per_step_shape.end(), param.shape.begin(), param.shape.end());
  if (grad.shape == per_step_shape) return true;

  const std::string p = support::shape_to_string(param.shape);
  std::string message = "the gradient " + grad_path + " has shape " +
                        support::shape_to_string(grad.shape) + ", which fits neither the " +
                        "parameter's shape " + p + " nor " +
                        support::shape_to_string(per_step_shape) + " (one gradient for each of " +
                        "the " + std::to_string(steps) + " steps)";
  const bool same_tail = grad.shape.size() == param.shape.size() + 1 &&
                         std::equal(param.shape.begin(), param.shape.end(), grad.shape.begin() + 1);
  if (same_tail) {
    message += "; it holds " + std::to_string(grad.shape[0]) + " gradients: use --steps " +
               std::to_string(grad.shape[0]);
  }
  throw UserError(message);
}

// Checks the --state NAME=FILE flags against the kernel and the parameter, and loads them.
std::map<std::string, support::NpyArray> load_states(const frontend::Rule& rule,
                                                     const ir::Kernel& kernel,
                                                     const support::NpyArray& param,
                                                     const std::vector<std::string>& flags) {
  std::map<std::string, support::NpyArray> states;
  for (const auto& [name, path] : parse_assignments(flags, "--state")) {
    const ir::BufferDecl* buffer = kernel.find_buffer(name);
    if (!buffer || buffer->role != ir::BufferRole::kState) {
      std::vector<std::string> names;
      for (const frontend::Rule::State& state : rule.states()) {
        if (state.name != name) continue;
        throw UserError("--state " + name + ": state '" + name + "' of rule '" + rule.name() +
                        (state.when.empty()
                             ? "' is not used with " + describe_options(kernel.options)
                             : "' exists only when option '" + state.when + "' is true"));
      }
      for (const frontend::Rule::State& state : rule.states()) names.push_back(state.name);
      std::string message =
          "--state " + name + ": rule '" + rule.name() + "' has no state '" + name + "'";
      if (auto suggestion = support::closest_match(name, names)) {
        message += "; did you mean '" + *suggestion + "'?";
      } else if (names.empty()) {
        message += " (it has no states)";
      } else {
        message += " (its states are " + join_names(names) + ")";
      }
      throw UserError(message);
    }
    support::NpyArray array = support::read_npy_f32(path);
    if (array.shape != param.shape) {
      throw UserError("--state " + name + ": " + path + " has shape " +
                      support::shape_to_string(array.shape) + ", but the parameter has shape " +
                      support::shape_to_string(param.shape));
    }
    states.emplace(name, std::move(array));
  }
  return states;
}

std::string scalars_json(const ir::Kernel& kernel, const RunResult& result) {
  support::JsonWriter w(2);
  w.begin_object().key("t").value(result.steps_done);
  for (size_t i = 0; i < kernel.scalars.size(); ++i) {
    w.key(kernel.scalars[i].name).value(result.scalars[i]);
  }
  w.end_object();
  return w.str() + "\n";
}

}  // namespace

CommandSpec run_spec() {
  return {
      .name = "run",
      .synopsis =
          "RULE --param P.npy --grad G.npy --out DIR [--steps N] [--set NAME=VALUE]...\n"
          "           [--option NAME=VALUE]... [--state NAME=S.npy]...\n"
          "           [--storage BUFFER=TYPE[,BUFFER=TYPE...]]...\n"
          "           [--backend interp|cpu|cuda|auto] [--threads T] [--verbose]",
      .description =
          "Runs N steps of RULE on one tensor. P.npy is a float32 array of any shape; G.npy\n"
          "has the same shape (the same gradient every step) or one more leading axis of\n"
          "length N (row k is the gradient of step k+1). States not given by --state start\n"
          "as the rule's INIT says. Writes DIR/param.npy, DIR/NAME.npy for every state\n"
          "(float32, the parameter's shape) and DIR/scalars.json (every scalar state and\n"
          "\"t\"), creating DIR if needed; the files appear only once all are written.\n"
          "\n"
          "Backends: interp is the reference interpreter; cpu runs fused kernels compiled\n"
          "through Halide on --threads threads (default: every core); cuda compiles them with\n"
          "NVRTC for this machine's GPU, copies the tensor and its states there, steps it\n"
          "and copies the results back (without a GPU and driver it exits with code 4);\n"
          "auto (the default) picks cuda where it works, else cpu.\n"
          "\n"
          "--storage keeps buffers (param, grad or a state) in bf16 or f16 (f32 by default;\n"
          "bf16-sr and f16-sr round stochastically, seeded by --set rounding_seed=N). Inputs\n"
          "are rounded to nearest even into those types; the results are written as float32\n"
          "holding the stored values exactly. Every backend gives the same bits.\n",
      .positional_name = "RULE",
      .min_positionals = 1,
      .max_positionals = 1,
      .flags =
          {
              {"--param", FlagKind::kValue, "P.npy", "the starting parameter (float32)", true},
              {"--grad", FlagKind::kValue, "G.npy", "the gradient(s) (float32)", true},
              {"--out", FlagKind::kValue, "DIR", "the folder for the results", true},
              {"--steps", FlagKind::kValue, "N", "the number of steps (default 1)"},
              {"--set", FlagKind::kRepeated, "NAME=VALUE", "set a hyper (repeatable)"},
              {"--option", FlagKind::kRepeated, "NAME=VALUE",
               "set an option: true, false or an integer (repeatable)"},
              {"--state", FlagKind::kRepeated, "NAME=S.npy",
               "a starting state, float32 in the parameter's shape (repeatable)"},
              {"--storage", FlagKind::kRepeated, "BUFFER=TYPE[,...]",
               "store a buffer as f32, bf16, f16, bf16-sr or f16-sr (repeatable)"},
              {"--backend", FlagKind::kValue, "B", "interp, cpu, cuda or auto (default auto)"},
              {"--threads", FlagKind::kValue, "T",
               "CPU threads for the cpu backend (default: all)"},
              {"--verbose", FlagKind::kSwitch, "", "say on stderr what runs where"},
          },
  };
}

int run_run(const Args& args) {
  const bool verbose = args.has("--verbose");
  const int64_t steps = parse_integer(args.value_or("--steps", "1"), "--steps", 1, kMaxSteps);
  int threads = 0;
  if (auto value = args.value("--threads")) {
    threads = static_cast<int>(parse_integer(*value, "--threads", 1, 4096));
  }
  Backend backend = choose_backend(args.value_or("--backend", "auto"), verbose);

  const std::string rule_name = args.positionals()[0];
  const frontend::Rule rule = frontend::load_rule(rule_name);
  const auto option_flags = parse_assignments(args.values("--option"), "--option");
  const auto options = rule.resolve_options(option_flags);
  ir::Kernel kernel = compile_rule(rule, options);
  // Storage before the hypers: a stochastic buffer adds the rounding_seed hyper.
  const std::map<std::string, std::string> storage =
      apply_storage(kernel, parse_storage(args.values("--storage")));
  const std::vector<double> hypers =
      resolve_hypers(rule, kernel, parse_assignments(args.values("--set"), "--set"));

  const std::string param_path = *args.value("--param");
  const std::string grad_path = *args.value("--grad");
  const support::NpyArray param = support::read_npy_f32(param_path);
  const support::NpyArray grad = support::read_npy_f32(grad_path);
  const bool per_step = is_per_step(grad, param, grad_path, steps);
  const auto states = load_states(rule, kernel, param, args.values("--state"));
  // Created only once every input is known to be good.
  OutputDirectory out(*args.value("--out"));

  const int64_t numel = static_cast<int64_t>(param.data.size());
  // An empty tensor has nothing to compute: the interpreter handles it without a kernel.
  if (numel == 0) backend = Backend::kInterp;
  if (verbose) {
    std::cerr << "fuseopt: running " << kernel.config_name() << " (" << describe_options(options)
              << ") for " << steps << " step" << (steps == 1 ? "" : "s") << " on "
              << support::shape_to_string(param.shape) << " with the " << describe(backend) << "\n";
  }

  RunResult result;
  result.buffers.resize(kernel.buffers.size());
  if (backend == Backend::kInterp) {
    TensorStepper stepper(kernel, param.data);
    for (const auto& [name, array] : states) stepper.set_state(name, array.data);
    for (int64_t step = 0; step < steps; ++step) {
      stepper.step(gradient_of_step(grad, numel, per_step, step), hypers);
    }
    for (size_t i = 0; i < kernel.buffers.size(); ++i) {
      const auto values = stepper.buffer(i);
      result.buffers[i].assign(values.begin(), values.end());
    }
    result.scalars = stepper.scalars();
    result.steps_done = stepper.steps_done();
  } else {
    // The Optimizer owns the tensor: host memory for cpu, device memory for cuda, which the
    // copies below reach either way.
    CompileOptions compile;
    compile.backend = backend == Backend::kCuda ? fuseopt::Backend::kCuda : fuseopt::Backend::kCpu;
    compile.options = option_flags;
    compile.storage = storage;
    Optimizer optimizer(fuseopt::compile_rule(rule_name, compile), {}, threads);
    if (verbose && optimizer.kernel().device != nullptr) {
      std::cerr << "fuseopt: kernel " << optimizer.kernel().name << " on "
                << optimizer.kernel().device->name() << "\n";
    }
    for (size_t h = 0; h < kernel.hypers.size(); ++h)
      optimizer.set_hyper(kernel.hypers[h].name, hypers[h]);
    optimizer.add_tensor(numel);
    optimizer.write_param(0, param.data);
    for (const auto& [name, array] : states) optimizer.write_state(0, name, array.data);
    for (int64_t step = 0; step < steps; ++step) {
      // A gradient that is the same every step is copied once.
      if (step == 0 || per_step) {
        optimizer.write_grad(0, gradient_of_step(grad, numel, per_step, step));
      }
      optimizer.step();
    }
    for (size_t i = 0; i < kernel.buffers.size(); ++i) {
      const ir::BufferDecl& buffer = kernel.buffers[i];
      if (buffer.role == ir::BufferRole::kGrad) continue;
      result.buffers[i] = buffer.role == ir::BufferRole::kParam
                              ? optimizer.read_param(0)
                              : optimizer.read_state(0, buffer.name);
    }
    for (const ir::ScalarStateDecl& scalar : kernel.scalars) {
      result.scalars.push_back(optimizer.scalar(0, scalar.name));
    }
    result.steps_done = optimizer.step_count(0);
  }

  for (size_t i = 0; i < kernel.buffers.size(); ++i) {
    const ir::BufferDecl& buffer = kernel.buffers[i];
    if (buffer.role == ir::BufferRole::kGrad) continue;
    out.add_npy(buffer.name + ".npy", param.shape, result.buffers[i]);
  }
  out.add_text("scalars.json", scalars_json(kernel, result));
  out.commit();
  if (verbose) std::cerr << "fuseopt: wrote " << out.path() << "\n";
  return 0;
}

}  // namespace fuseopt::tools

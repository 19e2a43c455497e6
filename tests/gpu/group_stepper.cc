#include "tests/gpu/group_stepper.h"

#include <algorithm>
#include <unordered_map>

#include "ir/eval.h"
#include "ir/grad_transform.h"
#include "ir/interpreter.h"
#include "support/error.h"
#include "support/low_precision.h"

namespace fuseopt::gpu_testing {

// Host expressions compiled to instructions over f64 slots (booleans as 0 or 1), as the
// interpreter does; `varying` marks slots that differ between tensors (numel, scalar
// states, reductions and what depends on them).
struct GroupStepper::Program {
  struct Instr {
    ir::NodeKind kind = ir::NodeKind::kUnary;
    ir::UnaryOp unary_op = ir::UnaryOp::kNeg;
    ir::BinaryOp binary_op = ir::BinaryOp::kAdd;
    int a = -1, b = -1, c = -1, out = -1;
  };
  struct PhaseCode {
    std::vector<Instr> prologue;
    std::vector<int> inputs;      // slots of ir::phase_scalar_inputs()
    std::vector<int> reductions;  // where each result goes
  };
  std::vector<double> initial;
  std::vector<bool> varying;
  std::unordered_map<std::string, int> names;
  std::unordered_map<const ir::ExprNode*, int> done;
  std::vector<ir::Expr> keep_alive;
  int t_slot = -1, numel_slot = -1, first_scalar = -1;
  std::vector<PhaseCode> phases;
  std::vector<Instr> after;
  std::vector<std::pair<int, int>> scalar_stores;  // (scalar index, slot)
  bool uniform = true;  // no slot varies: one evaluation serves every tensor

  int slot(double value, bool varies) {
    initial.push_back(value);
    varying.push_back(varies);
    return static_cast<int>(initial.size()) - 1;
  }

  int compile(const ir::Expr& e, std::vector<Instr>& code) {
    auto found = done.find(e.get());
    if (found != done.end()) return found->second;
    int result = -1;
    switch (e->kind) {
      case ir::NodeKind::kConst:
        result = slot(e->value, false);
        break;
      case ir::NodeKind::kVar: {
        auto name = names.find(e->name);
        FUSEOPT_CHECK(name != names.end(), "group stepper: unbound '" + e->name + "'");
        result = name->second;
        break;
      }
      case ir::NodeKind::kLoad:
      case ir::NodeKind::kCast:
        FUSEOPT_UNREACHABLE("group stepper: element node in host code");
        break;
      case ir::NodeKind::kUnary:
      case ir::NodeKind::kBinary:
      case ir::NodeKind::kSelect: {
        Instr instr;
        instr.kind = e->kind;
        instr.unary_op = e->unary_op;
        instr.binary_op = e->binary_op;
        int* operands[] = {&instr.a, &instr.b, &instr.c};
        bool varies = false;
        for (size_t i = 0; i < e->operands.size(); ++i) {
          *operands[i] = compile(e->operands[i], code);
          varies = varies || varying[static_cast<size_t>(*operands[i])];
        }
        instr.out = result = slot(0, varies);
        code.push_back(instr);
        break;
      }
    }
    done.emplace(e.get(), result);
    keep_alive.push_back(e);
    return result;
  }

  static void run(const std::vector<Instr>& code, double* slots) {
    for (const Instr& instr : code) {
      double value = 0;
      switch (instr.kind) {
        case ir::NodeKind::kUnary:
          value = ir::eval_unary(instr.unary_op, slots[instr.a]);
          break;
        case ir::NodeKind::kBinary:
          value = ir::eval_binary(instr.binary_op, slots[instr.a], slots[instr.b]);
          break;
        case ir::NodeKind::kSelect:
          value = slots[instr.a] != 0 ? slots[instr.b] : slots[instr.c];
          break;
        case ir::NodeKind::kConst:
        case ir::NodeKind::kVar:
        case ir::NodeKind::kLoad:
        case ir::NodeKind::kCast:
          FUSEOPT_UNREACHABLE("group stepper: bad instruction");
          break;
      }
      slots[instr.out] = value;
    }
  }
};

GroupStepper::GroupStepper(const ir::Kernel& kernel, std::vector<int64_t> numels)
    : program_(std::make_unique<Program>()), numels_(std::move(numels)) {
  Program& p = *program_;
  for (const ir::HyperDecl& hyper : kernel.hypers) {
    p.names[hyper.name] = p.slot(hyper.default_value, false);
    hypers_.push_back(hyper.default_value);
  }
  p.t_slot = p.slot(0, false);
  p.names["t"] = p.t_slot;
  p.numel_slot = p.slot(0, true);
  p.names["numel"] = p.numel_slot;
  p.first_scalar = static_cast<int>(p.initial.size());
  for (const ir::ScalarStateDecl& scalar : kernel.scalars)
    p.names[scalar.name] = p.slot(scalar.init, true);
  for (const ir::Phase& phase : kernel.phases) {
    Program::PhaseCode& code = p.phases.emplace_back();
    for (const ir::ScalarDef& def : phase.prologue)
      p.names[def.name] = p.compile(def.value, code.prologue);
    for (const std::string& name : ir::phase_scalar_inputs(phase)) {
      auto found = p.names.find(name);
      FUSEOPT_CHECK(found != p.names.end(), "group stepper: unbound scalar input '" + name + "'");
      code.inputs.push_back(found->second);
    }
    for (size_t r = 0; r < phase.reductions.size(); ++r) code.reductions.push_back(p.slot(0, true));
    for (size_t r = 0; r < phase.reductions.size(); ++r) {
      p.names[phase.reductions[r].name] = code.reductions[r];
    }
  }
  for (const ir::Store& store : kernel.scalar_stores) {
    p.scalar_stores.emplace_back(kernel.scalar_index(store.target),
                                 p.compile(store.value, p.after));
  }
  // Uniform when no phase input or scalar store depends on anything per tensor.
  for (const Program::PhaseCode& code : p.phases) {
    for (int input : code.inputs) p.uniform = p.uniform && !p.varying[static_cast<size_t>(input)];
    p.uniform = p.uniform && code.reductions.empty();
  }
  p.uniform = p.uniform && p.scalar_stores.empty();
  scalars_.resize(numels_.size());
  for (std::vector<double>& s : scalars_) {
    for (const ir::ScalarStateDecl& scalar : kernel.scalars) s.push_back(scalar.init);
  }
  reductions_.resize(kernel.phases.size());
}

GroupStepper::~GroupStepper() = default;

void GroupStepper::step(const runtime::CompiledKernel& compiled, std::span<void* const> buffers,
                        uint64_t group_version, int64_t t) {
  const Program& p = *program_;
  const size_t tensors = numels_.size();
  FUSEOPT_CHECK(compiled.group_phases.size() == p.phases.size(), "group stepper: phase count");
  FUSEOPT_CHECK(buffers.size() == tensors * compiled.ir.buffers.size(), "group stepper: buffers");
  // One slot vector per tensor (one in all when uniform).
  const size_t evaluated = p.uniform ? std::min<size_t>(tensors, 1) : tensors;
  std::vector<std::vector<double>> slots(evaluated, p.initial);
  // A gradient transform (ir/grad_transform.h), as the runtime's optimizer does it: the
  // unscale factor before the step, the clip factor from phase 0's group statistics.
  const ir::Kernel& kernel = compiled.ir;
  std::vector<double> hypers = hypers_;
  if (kernel.grad_transform.any()) {
    hypers[static_cast<size_t>(kernel.hyper_index(ir::kGradUnscaleInput))] =
        ir::grad_unscale_factor(kernel, hypers);
  }
  for (size_t i = 0; i < evaluated; ++i) {
    std::copy(hypers.begin(), hypers.end(), slots[i].begin());
    slots[i][static_cast<size_t>(p.t_slot)] = static_cast<double>(t);
    slots[i][static_cast<size_t>(p.numel_slot)] = static_cast<double>(numels_[i]);
    std::copy(scalars_[i].begin(), scalars_[i].end(), slots[i].begin() + p.first_scalar);
  }
  // Stochastic stores: the Optimizer's keys (the interpreter's definition), per tensor and
  // buffer for this step.
  std::vector<uint32_t> keys;
  if (kernel.has_stochastic_store()) {
    const uint64_t seed = ir::rounding_seed(kernel, hypers);
    const size_t buffer_count = kernel.buffers.size();
    keys.resize(tensors * buffer_count);
    for (size_t i = 0; i < tensors; ++i) {
      for (size_t b = 0; b < buffer_count; ++b) {
        keys[i * buffer_count + b] = rounding_stream_key(seed, t, ir::rounding_stream(i, b));
      }
    }
  }
  for (size_t phase = 0; phase < p.phases.size(); ++phase) {
    const Program::PhaseCode& code = p.phases[phase];
    const size_t inputs = code.inputs.size();
    scalar_rows_.assign(tensors * inputs, 0.0f);
    for (size_t i = 0; i < evaluated; ++i) {
      Program::run(code.prologue, slots[i].data());
      for (size_t k = 0; k < inputs; ++k) {
        scalar_rows_[i * inputs + k] =
            static_cast<float>(slots[i][static_cast<size_t>(code.inputs[k])]);
      }
    }
    for (size_t i = evaluated; i < tensors; ++i) {  // uniform: copies of the first row
      std::copy(scalar_rows_.begin(), scalar_rows_.begin() + static_cast<std::ptrdiff_t>(inputs),
                scalar_rows_.begin() + static_cast<std::ptrdiff_t>(i * inputs));
    }
    std::vector<double>& results = reductions_[phase];
    results.assign(tensors * code.reductions.size(), 0.0);
    runtime::GroupArgs args;
    args.tensor_count = tensors;
    args.numels = numels_.data();
    args.buffers = buffers.data();
    args.scalars = scalar_rows_.data();
    args.partials = results.data();
    args.group_version = group_version;
    if (!keys.empty()) args.rounding_keys = keys.data();
    compiled.group_phases[phase]->run_group(args);
    for (size_t i = 0; i < evaluated; ++i) {
      for (size_t r = 0; r < code.reductions.size(); ++r) {
        slots[i][static_cast<size_t>(code.reductions[r])] = results[i * code.reductions.size() + r];
      }
    }
    if (phase == 0 && kernel.grad_transform.any()) {
      ir::GradStatistics statistics;
      for (size_t i = 0; i < tensors; ++i) statistics.add(results[2 * i], results[2 * i + 1]);
      const ir::GradFactors factors = ir::grad_factors(kernel, hypers, statistics);
      if (factors.skip) return;  // nothing stored, scalar states unchanged
      const auto clip = static_cast<size_t>(kernel.hyper_index(ir::kGradClipInput));
      for (auto& s : slots) s[clip] = factors.clip;
    }
  }
  for (size_t i = 0; i < evaluated; ++i) {
    Program::run(p.after, slots[i].data());
    for (const auto& [scalar, slot] : p.scalar_stores) {
      scalars_[i][static_cast<size_t>(scalar)] = slots[i][static_cast<size_t>(slot)];
    }
  }
}

runtime::CudaBinaryView view_of(const codegen::CudaBinary& binary) {
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
  return view;
}

}  // namespace fuseopt::gpu_testing

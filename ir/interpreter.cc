// The reference interpreter. The kernel is compiled once into flat instruction lists: host
// code over f64 slots, and per phase the element DAG in topological order over registers of
// one block of elements, so each node costs one tight loop per block and shared nodes are
// computed once. The arithmetic itself is eval.h's, shared with constant folding.
#include "ir/interpreter.h"

#include <algorithm>
#include <cmath>
#include <unordered_map>

#include "ir/eval.h"
#include "ir/verifier.h"
#include "support/error.h"

namespace fuseopt::ir {
namespace {

// Elements per block: the registers of a typical phase stay in the L1 cache.
constexpr int64_t kBlock = 256;

// One host operation over f64 slots (bools as 0/1).
struct HostInstr {
  NodeKind kind = NodeKind::kUnary;  // kUnary, kBinary or kSelect
  UnaryOp unary_op = UnaryOp::kNeg;
  BinaryOp binary_op = BinaryOp::kAdd;
  int a = -1, b = -1, c = -1;  // operand slots; kSelect: a is the condition
  int out = -1;
};

// One element operation; its result is the register with the instruction's index.
struct ElementInstr {
  enum class Kind : uint8_t {
    kLoad,          // the register points into buffer `buffer`
    kBroadcast,     // a host value (f32 rounding, or a bool as 0/1) in every lane
    kUnary,
    kBinary,
    kSelect,        // per element: a is the mask
    kSelectScalar,  // one host condition (slot `slot`) picks register b or c
  } kind = Kind::kLoad;
  UnaryOp unary_op = UnaryOp::kNeg;
  BinaryOp binary_op = BinaryOp::kAdd;
  int buffer = -1;
  StorageType storage = StorageType::kF32;  // kLoad: values not f32 are widened into a register
  int slot = -1;
  int a = -1, b = -1, c = -1;
};

struct ReductionSlot {
  ReduceOp op = ReduceOp::kSum;
  int reg = -1;   // the body's register
  int slot = -1;  // where the result goes
};

struct StoreSlot {
  int buffer = -1;
  int reg = -1;
  StorageType storage = StorageType::kF32;
  bool stochastic = false;
};

// Where a run of elements sits in its tensor, and the rounding stream keys of its buffers
// (indexed like Kernel::buffers; read only for stochastic stores).
struct ElementPosition {
  int64_t first_index = 0;
  const uint32_t* keys = nullptr;
};

struct CompiledPhase {
  std::vector<HostInstr> host;  // the prologue, then host operands of the element code
  size_t prologue_size = 0;     // host[0, prologue_size) is the prologue
  std::vector<ElementInstr> elements;
  std::vector<ReductionSlot> reductions;
  std::vector<StoreSlot> stores;
  std::vector<int> input_slots;  // the slots of phase_scalar_inputs(), in that order
};

// Per-thread working memory of the element code: registers of one block per instruction.
struct Scratch {
  std::vector<float> registers;
  std::vector<const float*> values;
  std::vector<float> staged;

  void reserve(size_t instructions, size_t stores) {
    if (registers.size() < instructions * kBlock) registers.resize(instructions * kBlock);
    if (values.size() < instructions) values.resize(instructions);
    if (staged.size() < stores * kBlock) staged.resize(stores * kBlock);
  }
};

}  // namespace

struct Interpreter::Program {
  std::vector<double> initial_slots;  // constants filled in, symbols set per tensor
  int t_slot = -1;
  int numel_slot = -1;
  int first_scalar_slot = -1;  // hypers occupy slots [0, hypers), then t, numel, scalars
  std::vector<CompiledPhase> phases;
  std::vector<HostInstr> after;
  std::vector<std::pair<int, int>> scalar_stores;  // (scalar index, value slot)
};

namespace {

class Compiler {
 public:
  Compiler(const Kernel& kernel, std::vector<double>& slots) : kernel_(kernel), slots_(slots) {}

  int new_slot(double initial = 0) {
    slots_.push_back(initial);
    return static_cast<int>(slots_.size()) - 1;
  }

  void bind(const std::string& name, int slot) { symbols_[name] = slot; }

  int slot_of(const std::string& name) const {
    auto symbol = symbols_.find(name);
    FUSEOPT_CHECK(symbol != symbols_.end(), "interpreter: unbound name '" + name + "'");
    return symbol->second;
  }

  // Host expressions share slots across the whole kernel: a node first compiled in an
  // earlier host segment has been computed by the time a later segment reads it.
  int host(const Expr& e, std::vector<HostInstr>& code) {
    auto found = host_done_.find(e.get());
    if (found != host_done_.end()) return found->second;
    int slot = -1;
    switch (e->kind) {
      case NodeKind::kConst:
        slot = new_slot(e->value);
        break;
      case NodeKind::kVar: {
        auto symbol = symbols_.find(e->name);
        FUSEOPT_CHECK(symbol != symbols_.end(), "interpreter: unbound name '" + e->name + "'");
        slot = symbol->second;
        break;
      }
      case NodeKind::kLoad:
      case NodeKind::kCast:
        FUSEOPT_UNREACHABLE("interpreter: element node in host code");
        break;
      case NodeKind::kUnary:
      case NodeKind::kBinary:
      case NodeKind::kSelect: {
        HostInstr instr;
        instr.kind = e->kind;
        instr.unary_op = e->unary_op;
        instr.binary_op = e->binary_op;
        int* operand_slots[] = {&instr.a, &instr.b, &instr.c};
        for (size_t i = 0; i < e->operands.size(); ++i) {
          *operand_slots[i] = host(e->operands[i], code);
        }
        instr.out = slot = new_slot();
        code.push_back(instr);
        break;
      }
    }
    keep_alive_.push_back(e);
    host_done_.emplace(e.get(), slot);
    return slot;
  }

  // Post-order over the element DAG: an instruction's operands always come before it.
  int element(const Expr& e, CompiledPhase& phase,
              std::unordered_map<const ExprNode*, int>& done) {
    auto found = done.find(e.get());
    if (found != done.end()) return found->second;
    ElementInstr instr;
    instr.unary_op = e->unary_op;
    instr.binary_op = e->binary_op;
    switch (e->kind) {
      case NodeKind::kConst:
      case NodeKind::kVar:
        FUSEOPT_UNREACHABLE("interpreter: host value used as an element");
        break;
      case NodeKind::kLoad:
        instr.kind = ElementInstr::Kind::kLoad;
        instr.buffer = kernel_.buffer_index(e->name);
        FUSEOPT_CHECK(instr.buffer >= 0, "interpreter: unknown buffer '" + e->name + "'");
        instr.storage = kernel_.buffers[static_cast<size_t>(instr.buffer)].storage;
        break;
      case NodeKind::kCast:
        instr.kind = ElementInstr::Kind::kBroadcast;
        instr.slot = host(e->operands[0], phase.host);
        break;
      case NodeKind::kUnary:
        instr.kind = ElementInstr::Kind::kUnary;
        instr.a = element(e->operands[0], phase, done);
        break;
      case NodeKind::kBinary:
        instr.kind = ElementInstr::Kind::kBinary;
        instr.a = element(e->operands[0], phase, done);
        instr.b = element(e->operands[1], phase, done);
        break;
      case NodeKind::kSelect:
        if (is_scalar(e->operands[0])) {
          instr.kind = ElementInstr::Kind::kSelectScalar;
          instr.slot = host(e->operands[0], phase.host);
        } else {
          instr.kind = ElementInstr::Kind::kSelect;
          instr.a = element(e->operands[0], phase, done);
        }
        instr.b = element(e->operands[1], phase, done);
        instr.c = element(e->operands[2], phase, done);
        break;
    }
    int reg = static_cast<int>(phase.elements.size());
    phase.elements.push_back(instr);
    done.emplace(e.get(), reg);
    return reg;
  }

 private:
  const Kernel& kernel_;
  std::vector<double>& slots_;
  std::unordered_map<std::string, int> symbols_;
  std::unordered_map<const ExprNode*, int> host_done_;
  std::vector<Expr> keep_alive_;
};

void run_host(const std::vector<HostInstr>& code, std::vector<double>& slots) {
  for (const HostInstr& instr : code) {
    double result = 0;
    switch (instr.kind) {
      case NodeKind::kUnary:
        result = eval_unary(instr.unary_op, slots[instr.a]);
        break;
      case NodeKind::kBinary:
        result = eval_binary(instr.binary_op, slots[instr.a], slots[instr.b]);
        break;
      case NodeKind::kSelect:
        result = slots[instr.a] != 0 ? slots[instr.b] : slots[instr.c];
        break;
      case NodeKind::kConst:
      case NodeKind::kVar:
      case NodeKind::kLoad:
      case NodeKind::kCast:
        FUSEOPT_UNREACHABLE("interpreter: bad host instruction");
        break;
    }
    slots[instr.out] = result;
  }
}

// Runs a phase's element code over `count` elements of `buffers` (pointers at the first
// element), accumulating each reduction into `accumulators` in element order.
// Buffers stored as bf16 or f16 hold, in this float memory, values of that type: loads round
// them to it (a no-op for values the type holds), stores round the result to it.
void run_elements(const CompiledPhase& phase, const std::vector<double>& slots, int64_t count,
                  float* const* buffers, double* accumulators, Scratch& scratch,
                  const ElementPosition& position) {
  const size_t instructions = phase.elements.size();
  scratch.reserve(instructions, phase.stores.size());
  float* registers = scratch.registers.data();
  const float** values = scratch.values.data();
  float* staged = scratch.staged.data();
  for (size_t i = 0; i < instructions; ++i) {
    const ElementInstr& instr = phase.elements[i];
    if (instr.kind != ElementInstr::Kind::kBroadcast) continue;
    float* out = registers + i * kBlock;
    std::fill(out, out + kBlock, static_cast<float>(slots[static_cast<size_t>(instr.slot)]));
    values[i] = out;
  }

  for (int64_t start = 0; start < count; start += kBlock) {
    const int64_t n = std::min(kBlock, count - start);
    for (size_t i = 0; i < instructions; ++i) {
      const ElementInstr& instr = phase.elements[i];
      float* out = registers + i * kBlock;
      switch (instr.kind) {
        case ElementInstr::Kind::kLoad: {
          const float* in = buffers[static_cast<size_t>(instr.buffer)] + start;
          if (instr.storage == StorageType::kF32) {
            values[i] = in;
            break;
          }
          for (int64_t j = 0; j < n; ++j) out[j] = round_to_storage(in[j], instr.storage);
          values[i] = out;
          break;
        }
        case ElementInstr::Kind::kBroadcast:
          break;
        case ElementInstr::Kind::kUnary:
          eval_unary_block(instr.unary_op, values[instr.a], out, n);
          values[i] = out;
          break;
        case ElementInstr::Kind::kBinary:
          eval_binary_block(instr.binary_op, values[instr.a], values[instr.b], out, n);
          values[i] = out;
          break;
        case ElementInstr::Kind::kSelect: {
          const float* mask = values[instr.a];
          const float* a = values[instr.b];
          const float* b = values[instr.c];
          for (int64_t j = 0; j < n; ++j) out[j] = mask[j] != 0.0f ? a[j] : b[j];
          values[i] = out;
          break;
        }
        case ElementInstr::Kind::kSelectScalar:
          values[i] = slots[static_cast<size_t>(instr.slot)] != 0 ? values[instr.b]
                                                                  : values[instr.c];
          break;
      }
    }
    for (size_t r = 0; r < phase.reductions.size(); ++r) {
      const ReductionSlot& reduction = phase.reductions[r];
      const float* body = values[static_cast<size_t>(reduction.reg)];
      double accumulated = accumulators[r];
      for (int64_t j = 0; j < n; ++j) {
        accumulated = reduce_combine(reduction.op, accumulated, static_cast<double>(body[j]));
      }
      accumulators[r] = accumulated;
    }
    // Every store of the block is computed before any is written: a value may still be
    // a view of a buffer that another store overwrites.
    for (size_t s = 0; s < phase.stores.size(); ++s) {
      const StoreSlot& store = phase.stores[s];
      const float* value = values[static_cast<size_t>(store.reg)];
      float* out = staged + s * kBlock;
      if (store.storage == StorageType::kF32) {
        std::copy(value, value + n, out);
      } else if (!store.stochastic) {
        for (int64_t j = 0; j < n; ++j) out[j] = round_to_storage(value[j], store.storage);
      } else {
        const uint32_t key = position.keys[store.buffer];
        const auto first = static_cast<uint64_t>(position.first_index + start);
        for (int64_t j = 0; j < n; ++j) {
          const uint32_t random = rounding_random(key, first + static_cast<uint64_t>(j));
          out[j] = round_to_storage(value[j], store.storage, true, random);
        }
      }
    }
    for (size_t s = 0; s < phase.stores.size(); ++s) {
      std::copy(staged + s * kBlock, staged + s * kBlock + n,
                buffers[static_cast<size_t>(phase.stores[s].buffer)] + start);
    }
  }
}

}  // namespace

uint64_t rounding_seed(const Kernel& kernel, std::span<const double> hypers) {
  const int index = kernel.hyper_index(kRoundingSeedHyper);
  FUSEOPT_CHECK(index >= 0 && static_cast<size_t>(index) < hypers.size(),
                "rounding_seed: the kernel has no rounding_seed hyper");
  const double value = hypers[static_cast<size_t>(index)];
  if (!(value >= 0 && value < 0x1p53 && value == std::floor(value))) {
    throw UserError(std::string("the hyper ") + kRoundingSeedHyper +
                    " must be an integer in [0, 2^53), got " + std::to_string(value));
  }
  return static_cast<uint64_t>(value);
}

Interpreter::Interpreter(Kernel kernel) : kernel_(std::move(kernel)) {
  verify(kernel_);
  FUSEOPT_CHECK(kernel_.is_split, "the interpreter needs a kernel split into phases");
  auto program = std::make_shared<Program>();
  Compiler compiler(kernel_, program->initial_slots);
  for (const HyperDecl& hyper : kernel_.hypers) compiler.bind(hyper.name, compiler.new_slot());
  program->t_slot = compiler.new_slot();
  compiler.bind("t", program->t_slot);
  program->numel_slot = compiler.new_slot();
  compiler.bind("numel", program->numel_slot);
  program->first_scalar_slot = static_cast<int>(program->initial_slots.size());
  for (const ScalarStateDecl& scalar : kernel_.scalars) {
    compiler.bind(scalar.name, compiler.new_slot());
  }
  for (const Phase& phase : kernel_.phases) {
    CompiledPhase& compiled = program->phases.emplace_back();
    for (const ScalarDef& def : phase.prologue) {
      compiler.bind(def.name, compiler.host(def.value, compiled.host));
    }
    compiled.prologue_size = compiled.host.size();
    for (const std::string& name : phase_scalar_inputs(phase)) {
      compiled.input_slots.push_back(compiler.slot_of(name));
    }
    std::unordered_map<const ExprNode*, int> done;
    for (const Reduction& reduction : phase.reductions) {
      int reg = compiler.element(reduction.body, compiled, done);
      int slot = compiler.new_slot();
      compiled.reductions.push_back({reduction.op, reg, slot});
    }
    for (const Store& store : phase.stores) {
      const int buffer = kernel_.buffer_index(store.target);
      const BufferDecl& decl = kernel_.buffers[static_cast<size_t>(buffer)];
      compiled.stores.push_back({buffer, compiler.element(store.value, compiled, done),
                                 decl.storage, decl.stochastic});
    }
    // Results are bound after the phase's element code: only later phases may read them.
    for (size_t i = 0; i < phase.reductions.size(); ++i) {
      compiler.bind(phase.reductions[i].name, compiled.reductions[i].slot);
    }
  }
  for (const Store& store : kernel_.scalar_stores) {
    program->scalar_stores.emplace_back(kernel_.scalar_index(store.target),
                                        compiler.host(store.value, program->after));
  }
  program_ = std::move(program);
}

void Interpreter::initialize(TensorArgs& tensor, std::span<const double> hypers,
                             const std::vector<bool>& already_filled) const {
  FUSEOPT_CHECK(tensor.buffers.size() == kernel_.buffers.size(),
                "initialize: expected " + std::to_string(kernel_.buffers.size()) +
                    " buffers, got " + std::to_string(tensor.buffers.size()));
  FUSEOPT_CHECK(hypers.size() == kernel_.hypers.size(), "initialize: wrong number of hypers");
  FUSEOPT_CHECK(tensor.numel >= 0, "initialize: negative numel");
  size_t n = static_cast<size_t>(tensor.numel);
  for (size_t i = 0; i < kernel_.buffers.size(); ++i) {
    const BufferDecl& buffer = kernel_.buffers[i];
    if (buffer.role != BufferRole::kState) continue;
    if (i < already_filled.size() && already_filled[i]) continue;
    float* data = tensor.buffers[i];
    FUSEOPT_CHECK(data != nullptr || n == 0, "initialize: state '" + buffer.name + "' is null");
    switch (buffer.init.kind) {
      case StateInit::Kind::kNumber:
        std::fill(data, data + n, static_cast<float>(buffer.init.number));
        break;
      case StateInit::Kind::kParam:
        std::copy(tensor.buffers[0], tensor.buffers[0] + n, data);
        break;
      case StateInit::Kind::kGrad:
        std::copy(tensor.buffers[1], tensor.buffers[1] + n, data);
        break;
      case StateInit::Kind::kHyper: {
        int hyper = kernel_.hyper_index(buffer.init.hyper);
        FUSEOPT_CHECK(hyper >= 0, "initialize: unknown hyper '" + buffer.init.hyper + "'");
        std::fill(data, data + n, static_cast<float>(hypers[static_cast<size_t>(hyper)]));
        break;
      }
    }
    // A state starts as the nearest value its storage type holds (never stochastically:
    // the first value does not depend on a seed).
    if (buffer.storage != StorageType::kF32) {
      for (size_t k = 0; k < n; ++k) data[k] = round_to_storage(data[k], buffer.storage);
    }
  }
  tensor.scalars.resize(kernel_.scalars.size());
  for (size_t i = 0; i < kernel_.scalars.size(); ++i) tensor.scalars[i] = kernel_.scalars[i].init;
}

// One tensor's part of a step: its slots, and its rounding stream keys.
struct Interpreter::TensorStep {
  std::vector<double> slots;
  std::vector<uint32_t> keys;
};

void Interpreter::start_tensor(TensorStep& state, const TensorArgs& tensor, size_t tensor_index,
                               std::span<const double> hypers, int64_t t, uint64_t seed) const {
  const Program& program = *program_;
  FUSEOPT_CHECK(tensor.buffers.size() == kernel_.buffers.size(), "step: wrong buffer count");
  FUSEOPT_CHECK(tensor.scalars.size() == kernel_.scalars.size(),
                "step: wrong scalar-state count (was initialize() called?)");
  FUSEOPT_CHECK(tensor.numel >= 0, "step: negative numel");
  for (size_t i = 0; i < tensor.buffers.size(); ++i) {
    FUSEOPT_CHECK(tensor.buffers[i] != nullptr || tensor.numel == 0,
                  "step: buffer '" + kernel_.buffers[i].name + "' is null");
  }
  state.keys.resize(kernel_.buffers.size());
  for (size_t b = 0; b < state.keys.size(); ++b) {
    state.keys[b] = rounding_stream_key(seed, t, rounding_stream(tensor_index, b));
  }
  state.slots = program.initial_slots;
  std::copy(hypers.begin(), hypers.end(), state.slots.begin());
  state.slots[static_cast<size_t>(program.t_slot)] = static_cast<double>(t);
  state.slots[static_cast<size_t>(program.numel_slot)] = static_cast<double>(tensor.numel);
  std::copy(tensor.scalars.begin(), tensor.scalars.end(),
            state.slots.begin() + program.first_scalar_slot);
}

void Interpreter::run_tensor_phase(TensorStep& state, TensorArgs& tensor, size_t phase) const {
  const CompiledPhase& compiled = program_->phases[phase];
  thread_local Scratch scratch;
  run_host(compiled.host, state.slots);
  std::vector<double> accumulators(compiled.reductions.size());
  for (size_t r = 0; r < compiled.reductions.size(); ++r) {
    accumulators[r] = reduce_identity(compiled.reductions[r].op);
  }
  run_elements(compiled, state.slots, tensor.numel, tensor.buffers.data(), accumulators.data(),
               scratch, {0, state.keys.data()});
  for (size_t r = 0; r < compiled.reductions.size(); ++r) {
    state.slots[static_cast<size_t>(compiled.reductions[r].slot)] = accumulators[r];
  }
}

void Interpreter::finish_tensor(TensorStep& state, TensorArgs& tensor) const {
  // Every scalar store reads the values of the step's start, then all are assigned.
  run_host(program_->after, state.slots);
  for (const auto& [scalar, slot] : program_->scalar_stores) {
    tensor.scalars[static_cast<size_t>(scalar)] = state.slots[static_cast<size_t>(slot)];
  }
}

bool Interpreter::step(std::span<TensorArgs> tensors, std::span<const double> given_hypers,
                       int64_t t) const {
  FUSEOPT_CHECK(t >= 1, "step: t must be at least 1");
  FUSEOPT_CHECK(given_hypers.size() == kernel_.hypers.size(),
                "step: expected " + std::to_string(kernel_.hypers.size()) + " hypers, got " +
                    std::to_string(given_hypers.size()));
  std::vector<double> hypers(given_hypers.begin(), given_hypers.end());
  const uint64_t seed = kernel_.has_stochastic_store() ? rounding_seed(kernel_, hypers) : 0;
  const size_t phase_count = program_->phases.size();

  if (!kernel_.grad_transform.any()) {
    TensorStep state;
    for (size_t i = 0; i < tensors.size(); ++i) {
      start_tensor(state, tensors[i], i, hypers, t, seed);
      for (size_t phase = 0; phase < phase_count; ++phase) run_tensor_phase(state, tensors[i], phase);
      finish_tensor(state, tensors[i]);
    }
    return true;
  }
  // A gradient transform (ir/grad_transform.h): phase 0, the statistics, for every tensor
  // (it stores nothing), the group's factors, then the other phases with the clip factor.
  std::vector<TensorStep> states(tensors.size());
  const GradFactors factors = run_statistics(tensors, hypers, t, seed, states);
  if (factors.skip) return false;
  const auto clip = static_cast<size_t>(kernel_.hyper_index(kGradClipInput));
  for (size_t i = 0; i < tensors.size(); ++i) {
    states[i].slots[clip] = factors.clip;  // hypers occupy the first slots
    for (size_t phase = 1; phase < phase_count; ++phase) run_tensor_phase(states[i], tensors[i], phase);
    finish_tensor(states[i], tensors[i]);
  }
  return true;
}

GradFactors Interpreter::run_statistics(std::span<TensorArgs> tensors,
                                        std::vector<double>& hypers, int64_t t, uint64_t seed,
                                        std::vector<TensorStep>& states) const {
  hypers[static_cast<size_t>(kernel_.hyper_index(kGradUnscaleInput))] =
      grad_unscale_factor(kernel_, hypers);
  const int sum_slot = program_->phases[0].reductions[0].slot;
  const int nonfinite_slot = program_->phases[0].reductions[1].slot;
  GradStatistics statistics;
  for (size_t i = 0; i < tensors.size(); ++i) {
    start_tensor(states[i], tensors[i], i, hypers, t, seed);
    run_tensor_phase(states[i], tensors[i], 0);
    statistics.add(states[i].slots[static_cast<size_t>(sum_slot)],
                   states[i].slots[static_cast<size_t>(nonfinite_slot)]);
  }
  return grad_factors(kernel_, hypers, statistics);
}

GradFactors Interpreter::grad_factors_for(std::span<TensorArgs> tensors,
                                          std::span<const double> given_hypers) const {
  FUSEOPT_CHECK(kernel_.grad_transform.any(),
                "grad_factors_for: the kernel has no gradient transform");
  std::vector<double> hypers(given_hypers.begin(), given_hypers.end());
  std::vector<TensorStep> states(tensors.size());
  const uint64_t seed = kernel_.has_stochastic_store() ? rounding_seed(kernel_, hypers) : 0;
  return run_statistics(tensors, hypers, 1, seed, states);
}

void Interpreter::run_phase_chunk(size_t phase, int64_t count, float* const* buffers,
                                  std::span<const double> scalar_inputs,
                                  double* partials) const {
  if (kernel_.has_stochastic_store()) {
    // Reachable from a user's rule through a runtime that does not pass positions yet.
    throw UserError("rule '" + kernel_.rule + "' rounds stochastically, which needs each "
                    "chunk's position in its tensor; this runtime path does not pass it");
  }
  run_phase_chunk(phase, count, buffers, scalar_inputs, partials, 0, {});
}

void Interpreter::run_phase_chunk(size_t phase, int64_t count, float* const* buffers,
                                  std::span<const double> scalar_inputs, double* partials,
                                  int64_t first_index, std::span<const uint32_t> keys) const {
  const Program& program = *program_;
  FUSEOPT_CHECK(phase < program.phases.size(), "run_phase_chunk: no phase " +
                                                   std::to_string(phase));
  const CompiledPhase& compiled = program.phases[phase];
  FUSEOPT_CHECK(compiled.host.size() == compiled.prologue_size,
                "run_phase_chunk: the element code of phase " + std::to_string(phase) +
                    " computes host values; it must read only names and constants "
                    "(run ir::optimize)");
  FUSEOPT_CHECK(scalar_inputs.size() == compiled.input_slots.size(),
                "run_phase_chunk: expected " + std::to_string(compiled.input_slots.size()) +
                    " scalar inputs, got " + std::to_string(scalar_inputs.size()));
  FUSEOPT_CHECK(count >= 0, "run_phase_chunk: negative count");
  FUSEOPT_CHECK(partials != nullptr || compiled.reductions.empty(),
                "run_phase_chunk: partials is null");
  thread_local Scratch scratch;
  thread_local std::vector<double> slots;
  slots = program.initial_slots;
  for (size_t i = 0; i < scalar_inputs.size(); ++i) {
    slots[static_cast<size_t>(compiled.input_slots[i])] = scalar_inputs[i];
  }
  for (size_t r = 0; r < compiled.reductions.size(); ++r) {
    partials[r] = reduce_identity(compiled.reductions[r].op);
  }
  FUSEOPT_CHECK(!kernel_.has_stochastic_store() || keys.size() == kernel_.buffers.size(),
                "run_phase_chunk: expected one rounding key per buffer");
  run_elements(compiled, slots, count, buffers, partials, scratch, {first_index, keys.data()});
}

Interpreter::HostStep::HostStep(const Interpreter& interpreter)
    : program_(interpreter.program_) {}

void Interpreter::HostStep::set_hyper(size_t index, double value) {
  FUSEOPT_CHECK(static_cast<int>(index) < program_->t_slot, "HostStep: no hyper " + std::to_string(index));
  slots_[index] = value;
}

void Interpreter::HostStep::start(std::span<const double> hypers, int64_t t, int64_t numel,
                                  std::span<const double> scalars) {
  const Program& program = *program_;
  FUSEOPT_CHECK(static_cast<int>(hypers.size()) == program.t_slot,
                "HostStep: wrong number of hypers");
  FUSEOPT_CHECK(program.first_scalar_slot + scalars.size() <= program.initial_slots.size(),
                "HostStep: wrong number of scalar states");
  slots_ = program.initial_slots;
  std::copy(hypers.begin(), hypers.end(), slots_.begin());
  slots_[static_cast<size_t>(program.t_slot)] = static_cast<double>(t);
  slots_[static_cast<size_t>(program.numel_slot)] = static_cast<double>(numel);
  std::copy(scalars.begin(), scalars.end(), slots_.begin() + program.first_scalar_slot);
}

void Interpreter::HostStep::run_prologue(size_t phase) {
  FUSEOPT_CHECK(phase < program_->phases.size(), "HostStep: no such phase");
  FUSEOPT_CHECK(!slots_.empty(), "HostStep: start() was not called");
  run_host(program_->phases[phase].host, slots_);
}

void Interpreter::HostStep::scalar_inputs(size_t phase, std::span<double> out) const {
  FUSEOPT_CHECK(phase < program_->phases.size(), "HostStep: no such phase");
  const std::vector<int>& inputs = program_->phases[phase].input_slots;
  FUSEOPT_CHECK(out.size() == inputs.size(), "HostStep: wrong number of scalar inputs");
  for (size_t i = 0; i < inputs.size(); ++i) out[i] = slots_[static_cast<size_t>(inputs[i])];
}

void Interpreter::HostStep::set_reductions(size_t phase, std::span<const double> results) {
  FUSEOPT_CHECK(phase < program_->phases.size(), "HostStep: no such phase");
  const std::vector<ReductionSlot>& reductions = program_->phases[phase].reductions;
  FUSEOPT_CHECK(results.size() == reductions.size(), "HostStep: wrong number of reductions");
  for (size_t r = 0; r < reductions.size(); ++r) {
    slots_[static_cast<size_t>(reductions[r].slot)] = results[r];
  }
}

void Interpreter::HostStep::finish(std::span<double> scalars) {
  const Program& program = *program_;
  run_host(program.after, slots_);
  for (const auto& [scalar, slot] : program.scalar_stores) {
    FUSEOPT_CHECK(static_cast<size_t>(scalar) < scalars.size(),
                  "HostStep: wrong number of scalar states");
    scalars[static_cast<size_t>(scalar)] = slots_[static_cast<size_t>(slot)];
  }
}

double evaluate_host(const Expr& e, const std::function<double(const std::string&)>& lookup) {
  FUSEOPT_CHECK(e != nullptr && is_scalar(e), "evaluate_host: not a host expression");
  // Post-order with an explicit stack: a node is pushed again after its operands, and its
  // value is computed once all of them are known.
  std::unordered_map<const ExprNode*, double> values;
  std::vector<std::pair<const ExprNode*, bool>> stack;  // (node, operands pushed)
  stack.emplace_back(e.get(), false);
  while (!stack.empty()) {
    const ExprNode* node = stack.back().first;
    const bool expanded = stack.back().second;
    stack.pop_back();
    if (values.count(node) != 0) continue;
    if (!expanded) {
      stack.emplace_back(node, true);
      for (const Expr& operand : node->operands) {
        if (values.count(operand.get()) == 0) stack.emplace_back(operand.get(), false);
      }
      continue;
    }
    auto operand = [&](size_t i) { return values.at(node->operands[i].get()); };
    double result = 0;
    switch (node->kind) {
      case NodeKind::kConst:
        result = node->value;
        break;
      case NodeKind::kVar:
        result = lookup(node->name);
        break;
      case NodeKind::kLoad:
      case NodeKind::kCast:
        FUSEOPT_UNREACHABLE("evaluate_host: element node in a host expression");
        break;
      case NodeKind::kUnary:
        result = eval_unary(node->unary_op, operand(0));
        break;
      case NodeKind::kBinary:
        result = eval_binary(node->binary_op, operand(0), operand(1));
        break;
      case NodeKind::kSelect:
        result = operand(0) != 0 ? operand(1) : operand(2);
        break;
    }
    values.emplace(node, result);
  }
  return values.at(e.get());
}

}  // namespace fuseopt::ir

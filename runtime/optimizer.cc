// The Optimizer: one step is, per phase, a host pass over the tensors (combine the previous
// phase's chunk partials in chunk order, evaluate the prologue in f64, round the phase's
// scalar inputs to f32) and an element pass over the chunk tasks on the thread pool; a
// last host pass evaluates the scalar stores. Host work is per tensor, so it is spread over
// the pool too when the group has many tensors. With a device kernel the element passes are
// one GroupPhaseKernel call each, and all tensor memory goes through runtime::DeviceMemory:
// the host passes never touch it.
#include "runtime/optimizer.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <limits>
#include <new>
#include <unordered_set>
#include <utility>

#include "ir/eval.h"
#include "ir/interpreter.h"
#include "runtime/chunking.h"
#include "runtime/state_file.h"
#include "runtime/thread_pool.h"
#include "support/edit_distance.h"
#include "support/error.h"

namespace fuseopt {
namespace {

// Tensors per task of a host pass: enough to outweigh waking a worker.
constexpr size_t kHostBatch = 64;

// Group versions are unique in the process: kernels (and their device-side tensor tables)
// are shared between optimizers.
std::atomic<uint64_t> g_next_group_version{1};
constexpr size_t kAlignment = 64;

// Frees host memory (64-byte aligned) or, with a device, device memory.
struct FloatsDeleter {
  const runtime::DeviceMemory* device = nullptr;
  void operator()(float* p) const {
    if (device != nullptr) {
      device->free(p);
    } else {
      ::operator delete[](p, std::align_val_t{kAlignment});
    }
  }
};
using OwnedFloats = std::unique_ptr<float[], FloatsDeleter>;

// numel floats, zeroed: 64-byte aligned host memory, or device memory when `device` is set.
OwnedFloats allocate_floats(int64_t numel, const runtime::DeviceMemory* device) {
  const size_t count = static_cast<size_t>(numel);
  if (device != nullptr) {
    OwnedFloats data(static_cast<float*>(device->allocate(count * sizeof(float))),
                     FloatsDeleter{device});
    FUSEOPT_CHECK(data != nullptr, "DeviceMemory::allocate returned null");
    device->fill(data.get(), 0.0f, count);
    return data;
  }
  const size_t bytes = (count * sizeof(float) + kAlignment - 1) / kAlignment * kAlignment;
  auto* data = static_cast<float*>(::operator new[](bytes, std::align_val_t{kAlignment}));
  std::memset(data, 0, bytes);
  return OwnedFloats(data, FloatsDeleter{});
}

struct Tensor {
  int64_t numel = 0;
  bool owns_memory = false;
  float* param = nullptr;
  const float* grad = nullptr;
  OwnedFloats owned_param;
  OwnedFloats owned_grad;
  std::vector<OwnedFloats> states;  ///< indexed like Kernel::buffers; null for param, grad
  std::vector<bool> filled;           ///< states the user wrote before the first step
  std::vector<double> scalars;
  int64_t t = 0;
};

[[noreturn]] void throw_unknown(const std::string& what, const std::string& name,
                                const std::vector<std::string>& candidates) {
  std::string message = "unknown " + what + " '" + name + "'";
  if (auto match = support::closest_match(name, candidates)) {
    message += "; did you mean '" + *match + "'?";
  } else if (candidates.empty()) {
    message += " (this kernel has none)";
  } else {
    message += " (this kernel has:";
    for (const std::string& c : candidates) message += " " + c;
    message += ")";
  }
  throw UserError(message);
}

// Element code must read host values only as names and constants: the runtime passes the
// names' values, and nothing else reaches the kernels. Shared nodes are visited once.
void check_element_code(const ir::Expr& root, std::unordered_set<const ir::ExprNode*>& seen) {
  std::vector<const ir::ExprNode*> pending = {root.get()};
  while (!pending.empty()) {
    const ir::ExprNode* e = pending.back();
    pending.pop_back();
    if (!seen.insert(e).second) continue;
    if (ir::is_scalar(e->type)) {
      FUSEOPT_CHECK(e->kind == ir::NodeKind::kVar || e->kind == ir::NodeKind::kConst,
                    "element code computes a host value; the kernel was not optimized");
      continue;
    }
    for (const ir::Expr& operand : e->operands) pending.push_back(operand.get());
  }
}

}  // namespace

struct Optimizer::Impl {
  std::shared_ptr<const runtime::CompiledKernel> kernel;
  const ir::Kernel* ir = nullptr;
  /// The kernel's device memory (kept alive by `kernel`), or null for host memory.
  const runtime::DeviceMemory* device = nullptr;
  std::unique_ptr<ir::Interpreter> host;  ///< only its host programs are used
  std::vector<double> hypers;             ///< Kernel::hypers order
  std::vector<Tensor> tensors;
  std::unique_ptr<runtime::ThreadPool> pool;

  // Per phase: its scalar inputs and reductions.
  std::vector<size_t> input_counts;
  std::vector<std::vector<ir::ReduceOp>> reduce_ops;
  size_t max_inputs = 0;
  size_t max_reductions = 0;

  /// The kernel steps the whole group per call (GroupPhaseKernel) instead of chunks.
  bool grouped = false;
  /// Changes whenever tensors are added or re-pointed (GroupArgs::group_version).
  uint64_t group_version = 0;

  // Reused between steps.
  bool work_stale = true;
  runtime::WorkList work;
  std::vector<ir::Interpreter::HostStep> host_steps;
  std::vector<int64_t> numels;
  std::vector<float*> bases;          ///< tensor-major, one pointer per buffer
  /// Phase scalar inputs, tensor-major: rows of input_counts[phase] floats, packed as
  /// GroupArgs wants (sized for the phase with the most).
  std::vector<float> scalar_inputs;
  /// Per tensor, the tensor whose phase-0 scalar row it shares (itself when it has its own).
  std::vector<size_t> representative;
  /// Chunk-major, max_reductions each (grouped: tensor-major, combined by the kernel).
  std::vector<double> partials;

  Tensor& tensor(size_t index) {
    check_index(index);
    return tensors[index];
  }
  const Tensor& tensor(size_t index) const {
    check_index(index);
    return tensors[index];
  }
  void check_index(size_t index) const {
    if (index >= tensors.size()) {
      throw UserError("tensor index " + std::to_string(index) + " is out of range: the group has " +
                      std::to_string(tensors.size()) + " tensor" +
                      (tensors.size() == 1 ? "" : "s"));
    }
  }

  std::vector<std::string> names_of_states() const {
    std::vector<std::string> names;
    for (const ir::BufferDecl& b : ir->buffers) {
      if (b.role == ir::BufferRole::kState) names.push_back(b.name);
    }
    return names;
  }

  size_t state_index(const std::string& name) const {
    const int index = ir->buffer_index(name);
    if (index >= 0 && ir->buffers[static_cast<size_t>(index)].role == ir::BufferRole::kState) {
      return static_cast<size_t>(index);
    }
    if (name == "param" || name == "grad") {
      throw UserError("'" + name + "' is not a state; use " + name + "(tensor)");
    }
    throw_unknown("state", name, names_of_states());
  }

  size_t hyper_index(const std::string& name) const {
    const int index = ir->hyper_index(name);
    if (index >= 0) return static_cast<size_t>(index);
    std::vector<std::string> names;
    for (const ir::HyperDecl& h : ir->hypers) names.push_back(h.name);
    throw_unknown("hyperparameter", name, names);
  }

  size_t scalar_index(const std::string& name) const {
    const int index = ir->scalar_index(name);
    if (index >= 0) return static_cast<size_t>(index);
    std::vector<std::string> names;
    for (const ir::ScalarStateDecl& s : ir->scalars) names.push_back(s.name);
    throw_unknown("scalar state", name, names);
  }

  size_t add(Tensor tensor) {
    tensor.states.resize(ir->buffers.size());
    tensor.filled.assign(ir->buffers.size(), false);
    for (size_t i = 0; i < ir->buffers.size(); ++i) {
      if (ir->buffers[i].role == ir::BufferRole::kState) {
        tensor.states[i] = allocate_floats(tensor.numel, device);
      }
    }
    for (const ir::ScalarStateDecl& s : ir->scalars) tensor.scalars.push_back(s.init);
    tensors.push_back(std::move(tensor));
    work_stale = true;
    group_version = g_next_group_version.fetch_add(1);
    return tensors.size() - 1;
  }

  float* buffer(Tensor& tensor, size_t index) {
    switch (ir->buffers[index].role) {
      case ir::BufferRole::kParam:
        return tensor.param;
      case ir::BufferRole::kGrad:
        return const_cast<float*>(tensor.grad);  // kernels only read it
      case ir::BufferRole::kState:
        return tensor.states[index].get();
    }
    return nullptr;
  }

  // Tensor memory to and from the host, wherever it lives. `count` floats.
  void copy_out(float* host, const float* memory, size_t count) const {
    if (count == 0) return;
    if (device != nullptr) {
      device->copy_to_host(host, memory, count * sizeof(float));
    } else {
      std::memmove(host, memory, count * sizeof(float));
    }
  }
  void copy_in(float* memory, const void* host, size_t count) const {
    if (count == 0) return;
    if (device != nullptr) {
      device->copy_to_device(memory, host, count * sizeof(float));
    } else {
      std::memmove(memory, host, count * sizeof(float));
    }
  }
  void fill(float* memory, float value, size_t count) const {
    if (device != nullptr) {
      device->fill(memory, value, count);
    } else {
      std::fill(memory, memory + count, value);
    }
  }
  // Between two buffers of the group (a state from the parameter or gradient).
  void copy_within(float* to, const float* from, size_t count) const {
    if (device != nullptr) {
      device->copy_on_device(to, from, count * sizeof(float));
    } else {
      std::copy(from, from + count, to);
    }
  }

  // The span accessors reach memory directly: host kernels only.
  void require_host(const char* accessor, const char* instead) const {
    if (device == nullptr) return;
    throw UserError(std::string(accessor) + ": the tensor memory of kernel '" + kernel->name +
                    "' lives on " + device->name() + ", not on the host; use " + instead +
                    " to copy it");
  }

  void check_size(const char* what, size_t tensor_index, const Tensor& tensor,
                  size_t got) const {
    if (got == static_cast<size_t>(tensor.numel)) return;
    throw UserError(std::string(what) + ": tensor " + std::to_string(tensor_index) + " has " +
                    std::to_string(tensor.numel) + " elements; got " + std::to_string(got) +
                    " values");
  }

  void initialize(Tensor& tensor) {
    const size_t n = static_cast<size_t>(tensor.numel);
    for (size_t i = 0; i < ir->buffers.size(); ++i) {
      const ir::BufferDecl& decl = ir->buffers[i];
      if (decl.role != ir::BufferRole::kState || tensor.filled[i]) continue;
      float* data = tensor.states[i].get();
      switch (decl.init.kind) {
        case ir::StateInit::Kind::kNumber:
          fill(data, static_cast<float>(decl.init.number), n);
          break;
        case ir::StateInit::Kind::kParam:
          copy_within(data, tensor.param, n);
          break;
        case ir::StateInit::Kind::kGrad:
          copy_within(data, tensor.grad, n);
          break;
        case ir::StateInit::Kind::kHyper: {
          const int hyper = ir->hyper_index(decl.init.hyper);
          FUSEOPT_CHECK(hyper >= 0, "state '" + decl.name + "' starts from unknown hyper '" +
                                        decl.init.hyper + "'");
          fill(data, static_cast<float>(hypers[static_cast<size_t>(hyper)]), n);
          break;
        }
      }
    }
  }

  void plan() {
    if (!work_stale) return;
    numels.clear();
    for (const Tensor& t : tensors) numels.push_back(t.numel);
    if (!grouped) work = runtime::plan_work(numels, kernel->chunk_elements);
    while (host_steps.size() < tensors.size()) host_steps.emplace_back(*host);
    bases.resize(tensors.size() * ir->buffers.size());
    scalar_inputs.resize(tensors.size() * max_inputs);
    partials.resize((grouped ? tensors.size() : work.chunks.size()) * max_reductions);
    work_stale = false;
  }

  // Runs `body(tensor index)` for every tensor, batched over the pool.
  template <typename Body>
  void for_each_tensor(const Body& body) {
    const size_t batches = (tensors.size() + kHostBatch - 1) / kHostBatch;
    pool->parallel_for(batches, [&](size_t batch) {
      const size_t end = std::min(tensors.size(), (batch + 1) * kHostBatch);
      for (size_t i = batch * kHostBatch; i < end; ++i) body(i);
    });
  }

  // Combines tensor i's chunk partials of `phase` in chunk order into its host step.
  void combine(size_t phase, size_t i) {
    const std::vector<ir::ReduceOp>& ops = reduce_ops[phase];
    if (ops.empty()) return;
    if (grouped) {  // combined by the kernel
      host_steps[i].set_reductions(phase, std::span<const double>(&partials[i * ops.size()],
                                                                  ops.size()));
      return;
    }
    double results[16];
    std::vector<double> more;
    double* combined = results;
    if (ops.size() > std::size(results)) {
      more.resize(ops.size());
      combined = more.data();
    }
    for (size_t r = 0; r < ops.size(); ++r) combined[r] = ir::reduce_identity(ops[r]);
    for (size_t c = work.tensor_begin[i]; c < work.tensor_begin[i + 1]; ++c) {
      const double* chunk = &partials[c * max_reductions];
      for (size_t r = 0; r < ops.size(); ++r) {
        combined[r] = ir::reduce_combine(ops[r], combined[r], chunk[r]);
      }
    }
    host_steps[i].set_reductions(phase, std::span<const double>(combined, ops.size()));
  }

  void prepare_phase(size_t phase, size_t i) {
    ir::Interpreter::HostStep& step = host_steps[i];
    step.run_prologue(phase);
    const size_t n = input_counts[phase];
    double values[32];
    std::vector<double> more;
    double* inputs = values;
    if (n > std::size(values)) {
      more.resize(n);
      inputs = more.data();
    }
    step.scalar_inputs(phase, std::span<double>(inputs, n));
    float* out = scalar_inputs.data() + i * n;
    for (size_t k = 0; k < n; ++k) out[k] = static_cast<float>(inputs[k]);
  }

  void run_phase(size_t phase) {
    const runtime::PhaseKernel& code = *kernel->phases[phase];
    const size_t buffer_count = ir->buffers.size();
    const bool has_reductions = !reduce_ops[phase].empty();
    pool->parallel_for(work.task_count(), [&](size_t task) {
      float* pointers[16];
      std::vector<float*> more;
      float** chunk_buffers = pointers;
      if (buffer_count > std::size(pointers)) {
        more.resize(buffer_count);
        chunk_buffers = more.data();
      }
      for (size_t c = work.task_begin[task]; c < work.task_begin[task + 1]; ++c) {
        const runtime::Chunk& chunk = work.chunks[c];
        float* const* base = &bases[chunk.tensor * buffer_count];
        for (size_t b = 0; b < buffer_count; ++b) chunk_buffers[b] = base[b] + chunk.offset;
        runtime::ChunkArgs args;
        args.count = chunk.count;
        args.buffers = chunk_buffers;
        args.scalars = scalar_inputs.data() + chunk.tensor * input_counts[phase];
        args.partials = has_reductions ? &partials[c * max_reductions] : nullptr;
        code.run(args);
      }
    });
  }

  void run_group_phase(size_t phase) {
    runtime::GroupArgs args;
    args.tensor_count = tensors.size();
    args.numels = numels.data();
    args.buffers = bases.data();
    args.scalars = scalar_inputs.data();
    args.partials = partials.data();
    args.group_version = group_version;
    kernel->group_phases[phase]->run_group(args);
  }

  void step() {
    if (tensors.empty()) {
      throw UserError("step() on an empty group: add tensors with add_tensor() first");
    }
    plan();
    const size_t phase_count = ir->phases.size();
    for (Tensor& tensor : tensors) {
      if (tensor.t == 0) initialize(tensor);
    }
    // A one-phase kernel without scalar stores needs its host state only for the scalar row
    // of phase 0, which depends on nothing but t, numel and the scalar states: a tensor equal
    // in those to the one before it shares that tensor's row. A group of thousands of
    // equal-sized tensors then evaluates its prologue once per step, not once per tensor.
    const bool share_rows = phase_count == 1 && ir->scalar_stores.empty();
    representative.resize(tensors.size());
    for (size_t i = 0; i < tensors.size(); ++i) {
      representative[i] = i;
      if (share_rows && i > 0) {
        const Tensor& a = tensors[i - 1];
        const Tensor& b = tensors[i];
        if (a.t == b.t && a.numel == b.numel && a.scalars == b.scalars) {
          representative[i] = representative[i - 1];
        }
      }
    }
    for_each_tensor([&](size_t i) {
      Tensor& tensor = tensors[i];
      for (size_t b = 0; b < ir->buffers.size(); ++b) {
        bases[i * ir->buffers.size() + b] = buffer(tensor, b);
      }
      if (representative[i] != i) return;
      host_steps[i].start(hypers, tensor.t + 1, tensor.numel, tensor.scalars);
      prepare_phase(0, i);
    });
    if (share_rows) {
      const size_t n = input_counts[0];
      for (size_t i = 0; i < tensors.size(); ++i) {
        if (representative[i] == i || n == 0) continue;
        std::copy_n(scalar_inputs.data() + representative[i] * n, n, scalar_inputs.data() + i * n);
      }
    }
    for (size_t phase = 0; phase < phase_count; ++phase) {
      if (grouped) {
        run_group_phase(phase);
      } else {
        run_phase(phase);
      }
      const bool last = phase + 1 == phase_count;
      if (last && ir->scalar_stores.empty()) break;
      for_each_tensor([&](size_t i) {
        combine(phase, i);
        if (last) {
          host_steps[i].finish(tensors[i].scalars);
        } else {
          prepare_phase(phase + 1, i);
        }
      });
    }
    for (Tensor& tensor : tensors) ++tensor.t;
  }
};

Optimizer::Optimizer(std::shared_ptr<const runtime::CompiledKernel> kernel,
                     const std::map<std::string, double>& hypers, int threads)
    : impl_(std::make_unique<Impl>()) {
  if (kernel == nullptr) throw UserError("Optimizer: the kernel is null; compile one first");
  const ir::Kernel& ir = kernel->ir;
  FUSEOPT_CHECK(ir.is_split, "Optimizer: the kernel is not split into phases");
  if (kernel->device_memory) {
    if (kernel->device == nullptr) {
      throw UserError("kernel '" + kernel->name + "' keeps its tensors in device memory but "
                      "has no DeviceMemory (CompiledKernel::device) to allocate them with");
    }
    if (kernel->group_phases.empty()) {
      throw UserError("kernel '" + kernel->name + "' keeps its tensors in device memory but "
                      "has no group phases: chunk phases run on the host");
    }
  }
  const bool grouped = !kernel->group_phases.empty();
  const size_t compiled = grouped ? kernel->group_phases.size() : kernel->phases.size();
  FUSEOPT_CHECK(compiled == ir.phases.size(),
                "Optimizer: the kernel has " + std::to_string(compiled) +
                    " compiled phases for " + std::to_string(ir.phases.size()) + " IR phases");
  for (const auto& phase : kernel->phases) {
    FUSEOPT_CHECK(phase != nullptr, "Optimizer: a compiled phase is null");
  }
  for (const auto& phase : kernel->group_phases) {
    FUSEOPT_CHECK(phase != nullptr, "Optimizer: a compiled group phase is null");
  }
  FUSEOPT_CHECK(kernel->chunk_elements > 0 &&
                    kernel->chunk_elements <= std::numeric_limits<int32_t>::max(),
                "Optimizer: bad chunk size " + std::to_string(kernel->chunk_elements));
  FUSEOPT_CHECK(ir.buffers.size() >= 2 && ir.buffers[0].role == ir::BufferRole::kParam &&
                    ir.buffers[1].role == ir::BufferRole::kGrad,
                "Optimizer: the kernel's first buffers are not param and grad");
  Impl& impl = *impl_;
  impl.grouped = grouped;
  impl.kernel = std::move(kernel);
  impl.ir = &impl.kernel->ir;
  impl.device = impl.kernel->device_memory ? impl.kernel->device.get() : nullptr;
  impl.host = std::make_unique<ir::Interpreter>(*impl.ir);
  for (const ir::Phase& phase : impl.ir->phases) {
    std::unordered_set<const ir::ExprNode*> seen;
    for (const ir::Reduction& r : phase.reductions) check_element_code(r.body, seen);
    for (const ir::Store& s : phase.stores) check_element_code(s.value, seen);
    impl.input_counts.push_back(ir::phase_scalar_inputs(phase).size());
    std::vector<ir::ReduceOp>& ops = impl.reduce_ops.emplace_back();
    for (const ir::Reduction& r : phase.reductions) ops.push_back(r.op);
    impl.max_inputs = std::max(impl.max_inputs, impl.input_counts.back());
    impl.max_reductions = std::max(impl.max_reductions, ops.size());
  }
  for (const ir::HyperDecl& h : impl.ir->hypers) impl.hypers.push_back(h.default_value);
  for (const auto& [name, value] : hypers) impl.hypers[impl.hyper_index(name)] = value;
  set_threads(threads);
}

Optimizer::~Optimizer() = default;
Optimizer::Optimizer(Optimizer&&) noexcept = default;
Optimizer& Optimizer::operator=(Optimizer&&) noexcept = default;

size_t Optimizer::add_tensor(float* param, const float* grad, int64_t numel) {
  if (param == nullptr || grad == nullptr) {
    throw UserError(std::string("add_tensor: the ") + (param == nullptr ? "parameter" : "gradient") +
                    " pointer is null; pass memory of numel floats, or call add_tensor(numel) "
                    "to let the optimizer allocate it");
  }
  if (numel <= 0) {
    throw UserError("add_tensor: numel must be positive, not " + std::to_string(numel) +
                    ": a tensor without elements has nothing to update, leave it out of the "
                    "group");
  }
  Tensor tensor;
  tensor.numel = numel;
  tensor.param = param;
  tensor.grad = grad;
  return impl_->add(std::move(tensor));
}

size_t Optimizer::add_tensor(int64_t numel) {
  if (numel <= 0) {
    throw UserError("add_tensor: numel must be positive, not " + std::to_string(numel) +
                    ": a tensor without elements has nothing to update, leave it out of the "
                    "group");
  }
  Tensor tensor;
  tensor.numel = numel;
  tensor.owns_memory = true;
  tensor.owned_param = allocate_floats(numel, impl_->device);
  tensor.owned_grad = allocate_floats(numel, impl_->device);
  tensor.param = tensor.owned_param.get();
  tensor.grad = tensor.owned_grad.get();
  return impl_->add(std::move(tensor));
}

void Optimizer::set_buffers(size_t index, float* param, const float* grad) {
  Tensor& tensor = impl_->tensor(index);
  if (tensor.owns_memory) {
    throw UserError("set_buffers: tensor " + std::to_string(index) +
                    " uses memory the optimizer owns; write through param() and grad() instead");
  }
  if (param == nullptr || grad == nullptr) {
    throw UserError(std::string("set_buffers: the ") + (param == nullptr ? "parameter" : "gradient") +
                    " pointer is null");
  }
  tensor.param = param;
  tensor.grad = grad;
  impl_->group_version = g_next_group_version.fetch_add(1);
}

size_t Optimizer::tensor_count() const { return impl_->tensors.size(); }
int64_t Optimizer::numel(size_t index) const { return impl_->tensor(index).numel; }

std::span<float> Optimizer::param(size_t index) {
  Tensor& tensor = impl_->tensor(index);
  impl_->require_host("param()", "read_param() and write_param()");
  return {tensor.param, static_cast<size_t>(tensor.numel)};
}

namespace {

void require_owned_grad(const Tensor& tensor, size_t index, const char* accessor) {
  if (!tensor.owns_memory) {
    throw UserError(std::string(accessor) + ": tensor " + std::to_string(index) +
                    "'s gradient is memory the caller owns; write it through your own pointer");
  }
}

}  // namespace

std::span<float> Optimizer::grad(size_t index) {
  Tensor& tensor = impl_->tensor(index);
  require_owned_grad(tensor, index, "grad");
  impl_->require_host("grad()", "write_grad() and read_grad()");
  return {tensor.owned_grad.get(), static_cast<size_t>(tensor.numel)};
}

float* Optimizer::param_data(size_t index) { return impl_->tensor(index).param; }

const float* Optimizer::grad_data(size_t index) const { return impl_->tensor(index).grad; }

std::vector<float> Optimizer::read_param(size_t index) const {
  const Tensor& tensor = impl_->tensor(index);
  std::vector<float> values(static_cast<size_t>(tensor.numel));
  impl_->copy_out(values.data(), tensor.param, values.size());
  return values;
}

void Optimizer::write_param(size_t index, std::span<const float> values) {
  Tensor& tensor = impl_->tensor(index);
  impl_->check_size("write_param", index, tensor, values.size());
  impl_->copy_in(tensor.param, values.data(), values.size());
}

std::vector<float> Optimizer::read_grad(size_t index) const {
  const Tensor& tensor = impl_->tensor(index);
  std::vector<float> values(static_cast<size_t>(tensor.numel));
  impl_->copy_out(values.data(), tensor.grad, values.size());
  return values;
}

void Optimizer::write_grad(size_t index, std::span<const float> values) {
  Tensor& tensor = impl_->tensor(index);
  require_owned_grad(tensor, index, "write_grad");
  impl_->check_size("write_grad", index, tensor, values.size());
  impl_->copy_in(tensor.owned_grad.get(), values.data(), values.size());
}

void Optimizer::step() { impl_->step(); }

void Optimizer::synchronize() const {
  if (impl_->device != nullptr) impl_->device->synchronize();
}

int64_t Optimizer::step_count(size_t index) const { return impl_->tensor(index).t; }

void Optimizer::set_hyper(const std::string& name, double value) {
  impl_->hypers[impl_->hyper_index(name)] = value;
}

double Optimizer::hyper(const std::string& name) const {
  return impl_->hypers[impl_->hyper_index(name)];
}

std::vector<std::string> Optimizer::hyper_names() const {
  std::vector<std::string> names;
  for (const ir::HyperDecl& h : impl_->ir->hypers) names.push_back(h.name);
  return names;
}

std::vector<std::string> Optimizer::state_names() const { return impl_->names_of_states(); }

std::vector<std::string> Optimizer::scalar_names() const {
  std::vector<std::string> names;
  for (const ir::ScalarStateDecl& s : impl_->ir->scalars) names.push_back(s.name);
  return names;
}

std::span<float> Optimizer::state(size_t index, const std::string& name) {
  Tensor& tensor = impl_->tensor(index);
  const size_t state = impl_->state_index(name);
  impl_->require_host("state()", "read_state() and write_state()");
  // Writable access before the first step counts as a write: the rule's initial value no
  // longer replaces it.
  if (tensor.t == 0) tensor.filled[state] = true;
  return {tensor.states[state].get(), static_cast<size_t>(tensor.numel)};
}

std::span<const float> Optimizer::state(size_t index, const std::string& name) const {
  const Tensor& tensor = impl_->tensor(index);
  const size_t state = impl_->state_index(name);
  impl_->require_host("state()", "read_state() and write_state()");
  return {tensor.states[state].get(), static_cast<size_t>(tensor.numel)};
}

std::vector<float> Optimizer::read_state(size_t index, const std::string& name) const {
  const Tensor& tensor = impl_->tensor(index);
  const size_t state = impl_->state_index(name);
  std::vector<float> values(static_cast<size_t>(tensor.numel));
  impl_->copy_out(values.data(), tensor.states[state].get(), values.size());
  return values;
}

void Optimizer::write_state(size_t index, const std::string& name,
                            std::span<const float> values) {
  Tensor& tensor = impl_->tensor(index);
  const size_t state = impl_->state_index(name);
  if (values.size() != static_cast<size_t>(tensor.numel)) {
    throw UserError("write_state: state '" + name + "' of tensor " + std::to_string(index) +
                    " has " + std::to_string(tensor.numel) + " elements; got " +
                    std::to_string(values.size()) + " values");
  }
  impl_->copy_in(tensor.states[state].get(), values.data(), values.size());
  if (tensor.t == 0) tensor.filled[state] = true;
}

void Optimizer::set_state(size_t index, const std::string& name, std::span<const float> values) {
  write_state(index, name, values);
}

double Optimizer::scalar(size_t index, const std::string& name) const {
  const Tensor& tensor = impl_->tensor(index);
  return tensor.scalars[impl_->scalar_index(name)];
}

void Optimizer::set_scalar(size_t index, const std::string& name, double value) {
  Tensor& tensor = impl_->tensor(index);
  tensor.scalars[impl_->scalar_index(name)] = value;
}

// The file: magic, version, the kernel's configuration name, the names of its hypers,
// states and scalars (so a file of a same-named but different rule is refused), the hyper
// values, then per tensor its size, step count, scalars and, per state, whether the user
// filled it before the first step and its values; then the checksum.
void Optimizer::save(const std::string& path) const {
  const Impl& impl = *impl_;
  const ir::Kernel& ir = *impl.ir;
  runtime::StateWriter out(path);
  out.bytes(runtime::kStateMagic.data(), runtime::kStateMagic.size());
  out.u32(runtime::kStateFormatVersion);
  out.string(ir.config_name());
  out.u32(static_cast<uint32_t>(ir.hypers.size()));
  for (size_t h = 0; h < ir.hypers.size(); ++h) {
    out.string(ir.hypers[h].name);
    out.f64(impl.hypers[h]);
  }
  const std::vector<std::string> states = impl.names_of_states();
  out.u32(static_cast<uint32_t>(states.size()));
  for (const std::string& name : states) out.string(name);
  out.u32(static_cast<uint32_t>(ir.scalars.size()));
  for (const ir::ScalarStateDecl& s : ir.scalars) out.string(s.name);
  out.u64(impl.tensors.size());
  std::vector<float> staged;  // device states, copied to the host one at a time
  for (const Tensor& tensor : impl.tensors) {
    out.i64(tensor.numel);
    out.i64(tensor.t);
    for (double v : tensor.scalars) out.f64(v);
    const size_t n = static_cast<size_t>(tensor.numel);
    for (size_t b = 0; b < ir.buffers.size(); ++b) {
      if (ir.buffers[b].role != ir::BufferRole::kState) continue;
      out.u8(tensor.filled[b] ? 1 : 0);
      const float* values = tensor.states[b].get();
      if (impl.device != nullptr) {
        staged.resize(n);
        impl.copy_out(staged.data(), values, n);
        values = staged.data();
      }
      out.bytes(values, n * sizeof(float));
    }
  }
  out.commit();
}

void Optimizer::load(const std::string& path) {
  Impl& impl = *impl_;
  const ir::Kernel& ir = *impl.ir;
  runtime::StateReader in(path);
  const std::string quoted = "'" + path + "'";

  // Everything is read and checked first; the optimizer changes only after that.
  const std::string config = in.string();
  if (config != ir.config_name()) {
    throw UserError(quoted + " holds the state of kernel '" + config + "', not of '" +
                    ir.config_name() + "'");
  }
  auto expect_names = [&](const char* what, const std::vector<std::string>& expected) {
    const uint32_t count = in.u32();
    std::vector<std::string> names;
    for (uint32_t i = 0; i < count; ++i) names.push_back(in.string());
    if (names != expected) {
      auto join = [](const std::vector<std::string>& v) {
        std::string s;
        for (const std::string& n : v) s += (s.empty() ? "" : ", ") + n;
        return "(" + s + ")";
      };
      throw UserError(quoted + " was saved by a different rule: its " + what + " are " +
                      join(names) + ", this kernel's " + join(expected));
    }
  };
  std::vector<std::string> hyper_names;
  std::vector<double> hypers;
  {
    const uint32_t count = in.u32();
    for (uint32_t i = 0; i < count; ++i) {
      hyper_names.push_back(in.string());
      hypers.push_back(in.f64());
    }
    std::vector<std::string> expected;
    for (const ir::HyperDecl& h : ir.hypers) expected.push_back(h.name);
    if (hyper_names != expected) {
      throw UserError(quoted + " was saved by a different rule: its hyperparameters differ");
    }
  }
  expect_names("states", impl.names_of_states());
  expect_names("scalar states", scalar_names());
  const uint64_t tensor_count = in.u64();
  if (tensor_count != impl.tensors.size()) {
    throw UserError(quoted + " holds " + std::to_string(tensor_count) +
                    " tensors; this optimizer has " + std::to_string(impl.tensors.size()));
  }
  struct Staged {
    int64_t t = 0;
    std::vector<double> scalars;
    std::vector<std::pair<bool, const char*>> states;  ///< (filled, bytes), per state
  };
  std::vector<Staged> staged(impl.tensors.size());
  for (size_t i = 0; i < impl.tensors.size(); ++i) {
    const Tensor& tensor = impl.tensors[i];
    const int64_t numel = in.i64();
    if (numel != tensor.numel) {
      throw UserError(quoted + " holds " + std::to_string(numel) + " elements for tensor " +
                      std::to_string(i) + "; this optimizer's has " +
                      std::to_string(tensor.numel));
    }
    Staged& s = staged[i];
    s.t = in.i64();
    if (s.t < 0) in.damaged("tensor " + std::to_string(i) + " has a negative step count");
    for (size_t k = 0; k < ir.scalars.size(); ++k) s.scalars.push_back(in.f64());
    for (size_t b = 0; b < ir.buffers.size(); ++b) {
      if (ir.buffers[b].role != ir::BufferRole::kState) continue;
      const uint8_t filled = in.u8();
      if (filled > 1) in.damaged("a state flag is neither 0 nor 1");
      s.states.emplace_back(filled == 1,
                            in.take(static_cast<size_t>(numel) * sizeof(float)));
    }
  }
  if (!in.at_end()) in.damaged("it has bytes after the last tensor");

  impl.hypers = std::move(hypers);
  for (size_t i = 0; i < impl.tensors.size(); ++i) {
    Tensor& tensor = impl.tensors[i];
    Staged& s = staged[i];
    tensor.t = s.t;
    tensor.scalars = std::move(s.scalars);
    size_t k = 0;
    for (size_t b = 0; b < ir.buffers.size(); ++b) {
      if (ir.buffers[b].role != ir::BufferRole::kState) continue;
      tensor.filled[b] = s.states[k].first;
      impl.copy_in(tensor.states[b].get(), s.states[k].second,
                   static_cast<size_t>(tensor.numel));
      ++k;
    }
  }
}

const runtime::CompiledKernel& Optimizer::kernel() const { return *impl_->kernel; }

int Optimizer::threads() const { return impl_->pool->threads(); }

void Optimizer::set_threads(int threads) {
  if (threads < 0) {
    throw UserError("threads must be 0 (every core) or positive, not " + std::to_string(threads));
  }
  const int wanted = threads == 0 ? runtime::ThreadPool::hardware_threads() : threads;
  if (impl_->pool != nullptr && impl_->pool->threads() == wanted) return;
  impl_->pool = std::make_unique<runtime::ThreadPool>(wanted);
}

}  // namespace fuseopt

// The Optimizer: one step is, per phase, a host pass over the tensors (combine the previous
// phase's chunk partials in chunk order, evaluate the prologue in f64, round the phase's
// scalar inputs to f32) and an element pass over the chunk tasks on the thread pool; a
// last host pass evaluates the scalar stores. Host work is per tensor, so it is spread over
// the pool too when the group has many tensors. With a device kernel the element passes are
// one GroupPhaseKernel call each, and all tensor memory goes through runtime::DeviceMemory:
// the host passes never touch it.
//
// Memory the optimizer allocates (every state, and param and grad of add_tensor(numel)) comes
// from an arena: one stream of large blocks per buffer, handed out in tensor order without
// padding, so consecutive tensors lie next to each other in every buffer. An element pass
// then runs such a run of tensors as one virtual tensor when the phase has no reductions and
// the tensors' scalar rows are bitwise equal: the kernel sees the same values for every
// element as it would tensor by tensor (element code reads no index), so only the number of
// calls changes, and with it the prefetcher-friendly length of each stream.
#include "runtime/optimizer.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <limits>
#include <new>
#include <unordered_set>
#include <utility>

#include "ir/eval.h"
#include "ir/grad_transform.h"
#include "ir/interpreter.h"
#include "runtime/chunking.h"
#include "runtime/state_file.h"
#include "runtime/thread_pool.h"
#include "support/edit_distance.h"
#include "support/error.h"
#include "support/low_precision.h"

namespace fuseopt {
namespace {

// Tensors per task of a host pass: enough to outweigh waking a worker.
constexpr size_t kHostBatch = 64;

// Group versions are unique in the process: kernels (and their device-side tensor tables)
// are shared between optimizers.
std::atomic<uint64_t> g_next_group_version{1};
constexpr size_t kAlignment = 64;

// Arena blocks: the first of a stream holds 64 KiB, each next one twice as much up to 64 MiB,
// so a small group wastes little and a large one needs few blocks (each block boundary ends a
// run of coalesced tensors). A tensor at least as large as the next block gets a block of its
// own. Streams hold elements of one size (their buffer's storage type), so bumping by whole
// tensors keeps every element aligned to its size.
constexpr size_t kFirstBlockBytes = size_t{1} << 16;
constexpr size_t kLargestBlockBytes = size_t{1} << 26;

// Frees host memory (64-byte aligned) or, with a device, device memory.
struct BlockDeleter {
  const runtime::DeviceMemory* device = nullptr;
  void operator()(std::byte* p) const {
    if (device != nullptr) {
      device->free(p);
    } else {
      ::operator delete[](p, std::align_val_t{kAlignment});
    }
  }
};
using OwnedBlock = std::unique_ptr<std::byte[], BlockDeleter>;

// `bytes` bytes, contents unspecified: 64-byte aligned host memory, or device memory when
// `device` is set.
OwnedBlock allocate_block(size_t bytes, const runtime::DeviceMemory* device) {
  if (device != nullptr) {
    OwnedBlock data(static_cast<std::byte*>(device->allocate(bytes)), BlockDeleter{device});
    FUSEOPT_CHECK(data != nullptr, "DeviceMemory::allocate returned null");
    return data;
  }
  const size_t rounded = (bytes + kAlignment - 1) / kAlignment * kAlignment;
  return OwnedBlock(
      static_cast<std::byte*>(::operator new[](rounded, std::align_val_t{kAlignment})),
      BlockDeleter{});
}

// The optimizer's tensor memory: per stream (one per buffer of the kernel) a bump allocator
// over blocks, so that consecutive allocations of a stream are adjacent until a block is
// full. Memory is handed out zeroed (all bits zero: +0 in every storage type) and freed with
// the arena.
class Arena {
 public:
  explicit Arena(const runtime::DeviceMemory* device = nullptr) : device_(device) {}

  void* allocate(size_t stream, int64_t numel, size_t element_bytes) {
    if (stream >= streams_.size()) streams_.resize(stream + 1);
    Stream& s = streams_[stream];
    const size_t n = static_cast<size_t>(numel) * element_bytes;
    std::byte* data = nullptr;
    if (s.capacity - s.used >= n) {
      data = s.block + s.used;
      s.used += n;
    } else if (n >= s.next_capacity) {
      data = blocks_.emplace_back(allocate_block(n, device_)).get();
    } else {
      s.block = blocks_.emplace_back(allocate_block(s.next_capacity, device_)).get();
      s.capacity = s.next_capacity;
      s.used = n;
      s.next_capacity = std::min(2 * s.next_capacity, kLargestBlockBytes);
      data = s.block;
    }
    if (device_ != nullptr) {
      device_->fill(data, 0, static_cast<int>(element_bytes), static_cast<size_t>(numel));
    } else {
      std::memset(data, 0, n);
    }
    return data;
  }

 private:
  struct Stream {
    std::byte* block = nullptr;  ///< the block being filled
    size_t used = 0;             ///< bytes
    size_t capacity = 0;
    size_t next_capacity = kFirstBlockBytes;
  };
  const runtime::DeviceMemory* device_;
  std::vector<Stream> streams_;
  std::vector<OwnedBlock> blocks_;
};

struct Tensor {
  int64_t numel = 0;
  bool owns_memory = false;
  bool enabled = true;
  /// The states have been initialised (on the first step taken, or by load()).
  bool initialized = false;
  /// Elements of the buffers' storage types (Optimizer::storage()).
  void* param = nullptr;
  const void* grad = nullptr;
  std::vector<void*> states;  ///< arena memory, indexed like Kernel::buffers; null for param, grad
  std::vector<bool> filled;   ///< states the user wrote before the first step
  std::vector<double> scalars;
  // The step count lives in Optimizer::Impl::steps: a step reads and bumps it for every
  // tensor, and a compact array keeps that pass from walking these structures.
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

// How one phase's element pass cuts the enabled tensors: runs of consecutive tensors (one
// run per tensor when the phase has reductions or nothing coalesces) and their chunks.
struct PhasePlan {
  /// Per enabled tensor: 1 when a run starts there. What the plan was built for.
  std::vector<uint8_t> starts;
  /// Run r covers enabled tensors [run_first[r], run_first[r + 1]).
  std::vector<size_t> run_first;
  /// Chunks of the runs (Chunk::tensor is a run index).
  runtime::WorkList work;
  bool built = false;
};

}  // namespace

struct Optimizer::Impl {
  std::shared_ptr<const runtime::CompiledKernel> kernel;
  const ir::Kernel* ir = nullptr;
  /// The kernel's device memory (kept alive by `kernel`), or null for host memory.
  const runtime::DeviceMemory* device = nullptr;
  std::unique_ptr<ir::Interpreter> host;  ///< only its host programs are used
  std::vector<double> hypers;             ///< Kernel::hypers order
  /// Per buffer (Kernel::buffers order): how it is stored, and the bytes of one element.
  std::vector<StorageType> storage;
  std::vector<size_t> element_bytes;
  std::unique_ptr<Arena> arena;  ///< outlives nothing that points into it but `tensors`
  std::vector<Tensor> tensors;
  std::vector<int64_t> steps;  ///< per tensor: the steps it has taken (its t of the last step)
  /// Some enabled tensor may still need its states initialised (cleared by a step).
  bool maybe_uninitialized = true;
  std::unique_ptr<runtime::ThreadPool> pool;

  // Per phase: its scalar inputs and reductions.
  std::vector<size_t> input_counts;
  std::vector<std::vector<ir::ReduceOp>> reduce_ops;
  size_t max_inputs = 0;
  size_t max_reductions = 0;

  /// The kernel steps the whole group per call (GroupPhaseKernel) instead of chunks.
  bool grouped = false;
  /// Changes whenever tensors are added, re-pointed, enabled or disabled
  /// (GroupArgs::group_version).
  uint64_t group_version = 0;

  // Reused between steps. Everything below is indexed by the enabled tensors' positions in
  // `active` ("slots"), not by tensor index.
  bool layout_stale = true;
  std::vector<size_t> active;  ///< the enabled tensors, in tensor order
  std::vector<ir::Interpreter::HostStep> host_steps;
  std::vector<int64_t> numels;
  std::vector<void*> bases;  ///< slot-major, one pointer per buffer
  /// Per slot: every buffer starts where the previous slot's ends.
  std::vector<uint8_t> adjacent;
  /// Phase scalar inputs, slot-major: rows of input_counts[phase] floats, packed as
  /// GroupArgs wants (sized for the phase with the most).
  std::vector<float> scalar_inputs;
  /// Per slot, the slot whose phase-0 scalar row it shares (itself when it has its own).
  std::vector<size_t> representative;
  std::vector<size_t> representatives;  ///< the slots that have their own row, in order
  std::vector<PhasePlan> plans;         ///< per phase (host kernels only)
  std::vector<uint8_t> starts;          ///< scratch: the run starts of the phase being planned
  /// Chunk-major, max_reductions each (grouped: slot-major, combined by the kernel).
  std::vector<double> partials;
  /// With stochastic stores: each slot's rounding stream keys, one per buffer, for this step.
  std::vector<uint32_t> rounding_keys;
  /// With a gradient transform: phase 0's two results per slot, then the step's factors.
  std::vector<double> grad_statistics;
  ir::GradFactors last_grad_factors;
  bool last_step_taken = true;

  // Deciding on the device (set_decide_on_device): the gate the kernels write, where its
  // bytes come back, and the step whose decision the host has not read yet (its tensors'
  // step counts were advanced; a skip rolls them back when it is read).
  bool decide_on_device = false;
  const void* device_grad_scale = nullptr;
  void* device_found_inf = nullptr;
  OwnedBlock gate;
  std::unique_ptr<runtime::DeviceMemory::Readback> gate_readback;
  bool decision_pending = false;
  std::vector<size_t> pending_tensors;

  // Reads the pending step's decision (waiting, if needed, for that step's kernels only):
  // a skipped step's step counts go back. Called before anything that depends on them.
  void resolve_decision() {
    if (!decision_pending) return;
    decision_pending = false;
    runtime::DeviceGate decision;
    std::memcpy(&decision, gate_readback->wait(), sizeof(decision));
    last_grad_factors.skip = decision.skip != 0;
    last_grad_factors.clip = decision.clip;
    last_grad_factors.total_norm = decision.total_norm;
    last_step_taken = !last_grad_factors.skip;
    if (last_grad_factors.skip) {
      for (size_t tensor : pending_tensors) --steps[tensor];
    }
    if (decision.bad_scale != 0) {
      throw UserError(std::string("the device ") + ir::kGradScaleHyper +
                      " of the last step was not positive and finite: the step was skipped");
    }
  }

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

  // The hypers users read and set; the hidden gradient factors are the step's own.
  size_t hyper_index(const std::string& name) const {
    const int index = ir->hyper_index(name);
    if (index >= 0 && ir::is_user_hyper(name)) return static_cast<size_t>(index);
    throw_unknown("hyperparameter", name, user_hyper_names());
  }
  std::vector<std::string> user_hyper_names() const {
    std::vector<std::string> names;
    for (const ir::HyperDecl& h : ir->hypers) {
      if (ir::is_user_hyper(h.name)) names.push_back(h.name);
    }
    return names;
  }

  size_t scalar_index(const std::string& name) const {
    const int index = ir->scalar_index(name);
    if (index >= 0) return static_cast<size_t>(index);
    std::vector<std::string> names;
    for (const ir::ScalarStateDecl& s : ir->scalars) names.push_back(s.name);
    throw_unknown("scalar state", name, names);
  }

  // The group changed in a way a device-side tensor table or the host plan depends on.
  void group_changed() {
    layout_stale = true;
    maybe_uninitialized = true;
    group_version = g_next_group_version.fetch_add(1);
  }

  size_t add(Tensor tensor) {
    tensor.states.assign(ir->buffers.size(), nullptr);
    tensor.filled.assign(ir->buffers.size(), false);
    for (size_t i = 0; i < ir->buffers.size(); ++i) {
      if (ir->buffers[i].role == ir::BufferRole::kState) {
        tensor.states[i] = arena->allocate(i, tensor.numel, element_bytes[i]);
      }
    }
    for (const ir::ScalarStateDecl& s : ir->scalars) tensor.scalars.push_back(s.init);
    tensors.push_back(std::move(tensor));
    steps.push_back(0);
    group_changed();
    return tensors.size() - 1;
  }

  void* buffer(Tensor& tensor, size_t index) {
    switch (ir->buffers[index].role) {
      case ir::BufferRole::kParam:
        return tensor.param;
      case ir::BufferRole::kGrad:
        return const_cast<void*>(tensor.grad);  // kernels only read it
      case ir::BufferRole::kState:
        return tensor.states[index];
    }
    return nullptr;
  }

  // Tensor memory to and from the host, wherever it lives, in bytes.
  void copy_bytes_out(void* host, const void* memory, size_t bytes) const {
    if (bytes == 0) return;
    if (device != nullptr) {
      device->copy_to_host(host, memory, bytes);
    } else {
      std::memmove(host, memory, bytes);
    }
  }
  void copy_bytes_in(void* memory, const void* host, size_t bytes) const {
    if (bytes == 0) return;
    if (device != nullptr) {
      device->copy_to_device(memory, host, bytes);
    } else {
      std::memmove(memory, host, bytes);
    }
  }

  // `count` values of buffer `b` (stored as storage[b]) to and from float32 on the host:
  // loads widen exactly, stores round to nearest even (support/low_precision.h).
  void read_values(size_t b, const void* memory, float* values, size_t count) const {
    if (storage[b] == StorageType::kF32) {
      copy_bytes_out(values, memory, count * sizeof(float));
      return;
    }
    std::vector<uint16_t> bits(count);
    copy_bytes_out(bits.data(), memory, count * sizeof(uint16_t));
    for (size_t k = 0; k < count; ++k) values[k] = load_bits(bits[k], storage[b]);
  }
  void write_values(size_t b, void* memory, const float* values, size_t count) const {
    if (storage[b] == StorageType::kF32) {
      copy_bytes_in(memory, values, count * sizeof(float));
      return;
    }
    std::vector<uint16_t> bits(count);
    for (size_t k = 0; k < count; ++k) {
      bits[k] = static_cast<uint16_t>(store_bits(values[k], storage[b]));
    }
    copy_bytes_in(memory, bits.data(), count * sizeof(uint16_t));
  }
  std::vector<float> read_buffer(size_t b, const void* memory, int64_t numel) const {
    std::vector<float> values(static_cast<size_t>(numel));
    read_values(b, memory, values.data(), values.size());
    return values;
  }

  // Sets `count` elements of buffer `b` to `value` rounded to nearest in its type.
  void fill(size_t b, void* memory, float value, size_t count) const {
    const uint32_t bits = store_bits(value, storage[b]);
    if (device != nullptr) {
      device->fill(memory, bits, static_cast<int>(element_bytes[b]), count);
    } else if (storage[b] == StorageType::kF32) {
      std::fill_n(static_cast<float*>(memory), count, value);
    } else {
      std::fill_n(static_cast<uint16_t*>(memory), count, static_cast<uint16_t>(bits));
    }
  }
  // Buffer `to` from buffer `from` of the same tensor (a state that starts as the parameter
  // or gradient): a copy when both are stored alike, else each value widened or rounded to
  // nearest (through the host for device memory: this happens once per tensor).
  void copy_within(size_t to, void* to_memory, size_t from, const void* from_memory,
                   size_t count) const {
    if (storage[to] == storage[from]) {
      const size_t bytes = count * element_bytes[to];
      if (device != nullptr) {
        device->copy_on_device(to_memory, from_memory, bytes);
      } else {
        std::memcpy(to_memory, from_memory, bytes);
      }
      return;
    }
    std::vector<float> values(count);
    read_values(from, from_memory, values.data(), count);
    write_values(to, to_memory, values.data(), count);
  }

  // The span accessors hand out float32 memory: buffers stored otherwise go through the
  // converting read_*() and write_*() or data().
  void require_f32(const char* accessor, size_t b, const char* instead) const {
    if (storage[b] == StorageType::kF32) return;
    throw UserError(std::string(accessor) + ": '" + ir->buffers[b].name + "' of kernel '" +
                    kernel->name + "' is stored as " + storage_type_name(storage[b]) +
                    ", not f32; use " + instead);
  }

  // The span accessors reach memory directly: host kernels only.
  void require_host(const char* accessor, const char* instead) const {
    if (device == nullptr) return;
    throw UserError(std::string(accessor) + ": the tensor memory of kernel '" + kernel->name +
                    "' lives on " + device->name() + ", not on the host; use " + instead +
                    " to copy it");
  }

  void check_size(const char* what, size_t tensor_index, const Tensor& tensor, size_t got) const {
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
      void* data = tensor.states[i];
      switch (decl.init.kind) {
        case ir::StateInit::Kind::kNumber:
          fill(i, data, static_cast<float>(decl.init.number), n);
          break;
        case ir::StateInit::Kind::kParam:
          copy_within(i, data, 0, tensor.param, n);
          break;
        case ir::StateInit::Kind::kGrad:
          copy_within(i, data, 1, tensor.grad, n);
          break;
        case ir::StateInit::Kind::kHyper: {
          const int hyper = ir->hyper_index(decl.init.hyper);
          FUSEOPT_CHECK(hyper >= 0, "state '" + decl.name + "' starts from unknown hyper '" +
                                        decl.init.hyper + "'");
          fill(i, data, static_cast<float>(hypers[static_cast<size_t>(hyper)]), n);
          break;
        }
      }
    }
    tensor.initialized = true;
  }

  // The enabled tensors, their buffer addresses and adjacency: rebuilt only when the group
  // changes (add, set_buffers, set_enabled), not every step.
  void plan_layout() {
    if (!layout_stale) return;
    const size_t buffer_count = ir->buffers.size();
    active.clear();
    for (size_t i = 0; i < tensors.size(); ++i) {
      if (tensors[i].enabled) active.push_back(i);
    }
    const size_t slots = active.size();
    numels.resize(slots);
    bases.resize(slots * buffer_count);
    adjacent.assign(slots, 0);
    for (size_t s = 0; s < slots; ++s) {
      Tensor& tensor = tensors[active[s]];
      numels[s] = tensor.numel;
      void** base = &bases[s * buffer_count];
      for (size_t b = 0; b < buffer_count; ++b) base[b] = buffer(tensor, b);
      if (s == 0) continue;
      // Addresses compared as integers: the buffers of two tensors may be separate objects.
      void* const* previous = base - buffer_count;
      bool next_to = true;
      for (size_t b = 0; b < buffer_count && next_to; ++b) {
        next_to = reinterpret_cast<uintptr_t>(previous[b]) +
                      static_cast<uintptr_t>(numels[s - 1]) * element_bytes[b] ==
                  reinterpret_cast<uintptr_t>(base[b]);
      }
      adjacent[s] = next_to ? 1 : 0;
    }
    while (host_steps.size() < slots) host_steps.emplace_back(*host);
    scalar_inputs.resize(slots * max_inputs);
    representative.resize(slots);
    plans.assign(ir->phases.size(), PhasePlan{});
    size_t chunks = 0;
    if (!grouped) {
      for (int64_t n : numels) {
        chunks += static_cast<size_t>((n + kernel->chunk_elements - 1) / kernel->chunk_elements);
      }
    }
    partials.resize((grouped ? slots : chunks) * max_reductions);
    layout_stale = false;
  }

  // The runs of `phase` for this step's scalar rows: a tensor joins the run of the one
  // before it when the phase has no reductions (they are per tensor), every buffer is
  // adjacent and the scalar rows are bitwise equal. The chunk list is rebuilt only when the
  // runs differ from the last step's.
  const PhasePlan& plan_phase(size_t phase, bool rows_shared) {
    PhasePlan& plan = plans[phase];
    const size_t slots = active.size();
    const size_t n = input_counts[phase];
    // Stochastic stores draw from per-tensor streams indexed from each tensor's start: a run
    // must be one tensor.
    const bool may_coalesce = reduce_ops[phase].empty() && !ir->has_stochastic_store();
    if (!may_coalesce && plan.built) return plan;  // one run per tensor, always
    starts.assign(slots, 1);
    if (may_coalesce) {
      const float* rows = scalar_inputs.data();
      for (size_t s = 1; s < slots; ++s) {
        if (!adjacent[s]) continue;
        const bool same_row = (rows_shared && representative[s] == representative[s - 1]) ||
                              std::memcmp(rows + s * n, rows + (s - 1) * n, n * sizeof(float)) == 0;
        starts[s] = same_row ? 0 : 1;
      }
    }
    if (plan.built && plan.starts == starts) return plan;
    plan.starts.swap(starts);
    plan.run_first.clear();
    std::vector<int64_t> run_numels;
    for (size_t s = 0; s < slots; ++s) {
      if (plan.starts[s]) {
        plan.run_first.push_back(s);
        run_numels.push_back(0);
      }
      run_numels.back() += numels[s];
    }
    plan.run_first.push_back(slots);
    plan.work = runtime::plan_work(run_numels, kernel->chunk_elements);
    plan.built = true;
    return plan;
  }

  // Runs `body(i)` for every i in [0, count), batched over the pool; inline when it is one
  // batch (waking a worker would cost more than the work).
  template <typename Body>
  void for_each_index(size_t count, const Body& body) {
    if (count <= kHostBatch) {
      for (size_t i = 0; i < count; ++i) body(i);
      return;
    }
    const size_t batches = (count + kHostBatch - 1) / kHostBatch;
    pool->parallel_for(batches, [&](size_t batch) {
      const size_t end = std::min(count, (batch + 1) * kHostBatch);
      for (size_t i = batch * kHostBatch; i < end; ++i) body(i);
    });
  }

  // Runs `body(slot)` for every enabled tensor.
  template <typename Body>
  void for_each_slot(const Body& body) {
    for_each_index(active.size(), body);
  }

  // Combines slot s's chunk partials of `phase` in chunk order into its host step (and,
  // for phase 0 of a kernel with a gradient transform, into grad_statistics).
  void combine(size_t phase, size_t s) {
    const std::vector<ir::ReduceOp>& ops = reduce_ops[phase];
    if (ops.empty()) return;
    const bool statistics = phase == 0 && ir->grad_transform.any();
    if (grouped) {  // combined by the kernel
      const double* results = &partials[s * ops.size()];
      host_steps[s].set_reductions(phase, std::span<const double>(results, ops.size()));
      if (statistics) std::copy_n(results, 2, &grad_statistics[2 * s]);
      return;
    }
    // A phase with reductions has one run per tensor: run s is slot s.
    const runtime::WorkList& work = plans[phase].work;
    double results[16];
    std::vector<double> more;
    double* combined = results;
    if (ops.size() > std::size(results)) {
      more.resize(ops.size());
      combined = more.data();
    }
    for (size_t r = 0; r < ops.size(); ++r) combined[r] = ir::reduce_identity(ops[r]);
    for (size_t c = work.tensor_begin[s]; c < work.tensor_begin[s + 1]; ++c) {
      const double* chunk = &partials[c * max_reductions];
      for (size_t r = 0; r < ops.size(); ++r) {
        combined[r] = ir::reduce_combine(ops[r], combined[r], chunk[r]);
      }
    }
    host_steps[s].set_reductions(phase, std::span<const double>(combined, ops.size()));
    if (statistics) std::copy_n(combined, 2, &grad_statistics[2 * s]);
  }

  void prepare_phase(size_t phase, size_t s) {
    ir::Interpreter::HostStep& step = host_steps[s];
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
    float* out = scalar_inputs.data() + s * n;
    for (size_t k = 0; k < n; ++k) out[k] = static_cast<float>(inputs[k]);
  }

  void run_phase(size_t phase, const PhasePlan& plan) {
    const runtime::PhaseKernel& code = *kernel->phases[phase];
    const size_t buffer_count = ir->buffers.size();
    const bool has_reductions = !reduce_ops[phase].empty();
    const size_t n = input_counts[phase];
    const runtime::WorkList& work = plan.work;
    pool->parallel_for(work.task_count(), [&](size_t task) {
      void* pointers[16];
      std::vector<void*> more;
      void** chunk_buffers = pointers;
      if (buffer_count > std::size(pointers)) {
        more.resize(buffer_count);
        chunk_buffers = more.data();
      }
      runtime::ChunkArgs args;
      args.buffers = chunk_buffers;
      for (size_t c = work.task_begin[task]; c < work.task_begin[task + 1]; ++c) {
        const runtime::Chunk& chunk = work.chunks[c];
        const size_t first = plan.run_first[chunk.tensor];  // the run's first slot
        void* const* base = &bases[first * buffer_count];
        for (size_t b = 0; b < buffer_count; ++b) {
          chunk_buffers[b] = static_cast<std::byte*>(base[b]) +
                             static_cast<size_t>(chunk.offset) * element_bytes[b];
        }
        args.count = chunk.count;
        args.scalars = scalar_inputs.data() + first * n;
        args.partials = has_reductions ? &partials[c * max_reductions] : nullptr;
        if (!rounding_keys.empty()) {
          args.first_index = chunk.offset;  // runs are single tensors here (plan_phase)
          args.rounding_keys = &rounding_keys[first * buffer_count];
        }
        code.run(args);
      }
    });
  }

  void run_group_phase(size_t phase, void* device_gate = nullptr) {
    runtime::GroupArgs args;
    if (device_gate != nullptr) {
      args.gate = device_gate;
      args.grad_scale = device_grad_scale;
      args.found_inf = device_found_inf;
      args.max_grad_norm = ir::max_grad_norm(*ir, hypers);
    }
    args.tensor_count = active.size();
    args.numels = numels.data();
    args.buffers = bases.data();
    args.scalars = scalar_inputs.data();
    args.partials = partials.data();
    args.group_version = group_version;
    if (!rounding_keys.empty()) args.rounding_keys = rounding_keys.data();
    kernel->group_phases[phase]->run_group(args);
  }

  // `check_only`: with a decision on the device, only phase 0 and the decision, to report a
  // non-finite gradient in the device found_inf (check_gradients_on_device()).
  bool step(bool check_only = false) {
    if (tensors.empty()) {
      throw UserError("step() on an empty group: add tensors with add_tensor() first");
    }
    resolve_decision();
    plan_layout();
    const size_t slots = active.size();
    if (slots == 0) return true;  // every tensor is disabled
    const bool transform = ir->grad_transform.any();
    rounding_keys.clear();
    if (ir->has_stochastic_store()) {
      // The streams of the interpreter's definition: keyed by the seed, the tensor's step and
      // its index in the group (not its slot, so disabling another tensor changes nothing).
      const uint64_t seed = ir::rounding_seed(*ir, hypers);
      const size_t buffer_count = ir->buffers.size();
      rounding_keys.resize(slots * buffer_count);
      for (size_t s = 0; s < slots; ++s) {
        for (size_t b = 0; b < buffer_count; ++b) {
          rounding_keys[s * buffer_count + b] =
              rounding_stream_key(seed, steps[active[s]] + 1, ir::rounding_stream(active[s], b));
        }
      }
    }
    // A nonzero found_inf hyper is a decision the host already has (the device does not
    // read it): such a step is decided on the host, as without set_decide_on_device.
    const bool on_device = transform && decide_on_device &&
                           !(ir->grad_transform.unscale &&
                             hypers[static_cast<size_t>(ir->hyper_index(ir::kFoundInfHyper))] != 0);
    if (check_only && !on_device) return true;  // the found_inf hyper already skips
    if (transform) {
      // The unscale factor is known before the step; the clip factor after phase 0.
      hypers[static_cast<size_t>(ir->hyper_index(ir::kGradUnscaleInput))] =
          ir::grad_unscale_factor(*ir, hypers);
      grad_statistics.assign(2 * slots, 0.0);
    }
    const size_t phase_count = ir->phases.size();
    if (maybe_uninitialized && !check_only) {
      for (size_t tensor : active) {
        if (!tensors[tensor].initialized) initialize(tensors[tensor]);
      }
      maybe_uninitialized = false;
    }
    // A one-phase kernel without scalar stores needs its host state only for the scalar row
    // of phase 0, which depends on nothing but t, numel and the scalar states: a tensor equal
    // in those to the one before it shares that tensor's row. A group of thousands of
    // equal-sized tensors then evaluates its prologue once per step, not once per tensor.
    // Only compact arrays are read per tensor here (steps, numels), and the scalar states
    // only when the kernel has some: at 65536 tensors, a walk over the Tensor structures
    // would cost more than the rest of the host work.
    const bool share_rows = phase_count == 1 && ir->scalar_stores.empty();
    const bool has_scalars = !ir->scalars.empty();
    representatives.clear();
    for (size_t s = 0; s < slots; ++s) {
      representative[s] = s;
      if (share_rows && s > 0 && steps[active[s - 1]] == steps[active[s]] &&
          numels[s - 1] == numels[s] &&
          (!has_scalars || tensors[active[s - 1]].scalars == tensors[active[s]].scalars)) {
        representative[s] = representative[s - 1];
      } else {
        representatives.push_back(s);
      }
    }
    for_each_index(representatives.size(), [&](size_t k) {
      const size_t s = representatives[k];
      const Tensor& tensor = tensors[active[s]];
      host_steps[s].start(hypers, steps[active[s]] + 1, tensor.numel, tensor.scalars);
      prepare_phase(0, s);
    });
    if (share_rows) {
      const size_t n = input_counts[0];
      for (size_t s = 0; s < slots; ++s) {
        if (representative[s] == s || n == 0) continue;
        std::copy_n(scalar_inputs.data() + representative[s] * n, n, scalar_inputs.data() + s * n);
      }
    }
    for (size_t phase = 0; phase < phase_count; ++phase) {
      if (on_device) {
        run_group_phase(phase, gate.get());
      } else if (grouped) {
        run_group_phase(phase);
      } else {
        run_phase(phase, plan_phase(phase, share_rows && phase == 0));
      }
      if (check_only) return true;  // phase 0 and the decision are queued
      const bool last = phase + 1 == phase_count;
      if (last && ir->scalar_stores.empty()) break;
      if (on_device && phase == 0) {
        // The device combined the statistics and decided; its clip factor replaces this
        // placeholder in the kernels, and a skip makes them store nothing.
        const auto clip = static_cast<size_t>(ir->hyper_index(ir::kGradClipInput));
        hypers[clip] = 1.0;
        for_each_slot([&](size_t s) {
          host_steps[s].set_hyper(clip, 1.0);
          prepare_phase(1, s);
        });
        continue;
      }
      if (transform && phase == 0) {
        // The group's statistics, combined in slot (tensor) order; nothing is stored before
        // the last phase, so a skipped step leaves everything as it was.
        for_each_slot([&](size_t s) { combine(0, s); });
        ir::GradStatistics statistics;
        for (size_t s = 0; s < slots; ++s) {
          statistics.add(grad_statistics[2 * s], grad_statistics[2 * s + 1]);
        }
        last_grad_factors = ir::grad_factors(*ir, hypers, statistics);
        if (last_grad_factors.skip) return last_step_taken = false;
        const auto clip = static_cast<size_t>(ir->hyper_index(ir::kGradClipInput));
        hypers[clip] = last_grad_factors.clip;
        for_each_slot([&](size_t s) {
          host_steps[s].set_hyper(clip, last_grad_factors.clip);
          prepare_phase(1, s);
        });
        continue;
      }
      for_each_slot([&](size_t s) {
        combine(phase, s);
        if (last) {
          host_steps[s].finish(tensors[active[s]].scalars);
        } else {
          prepare_phase(phase + 1, s);
        }
      });
    }
    for (size_t tensor : active) ++steps[tensor];
    if (on_device) {
      // The outcome comes back without the host waiting; resolve_decision() reads it.
      gate_readback->start(gate.get());
      pending_tensors = active;
      decision_pending = true;
    }
    return last_step_taken = true;
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
      throw UserError("kernel '" + kernel->name +
                      "' keeps its tensors in device memory but "
                      "has no DeviceMemory (CompiledKernel::device) to allocate them with");
    }
    if (kernel->group_phases.empty()) {
      throw UserError("kernel '" + kernel->name +
                      "' keeps its tensors in device memory but "
                      "has no group phases: chunk phases run on the host");
    }
  }
  const bool grouped = !kernel->group_phases.empty();
  const size_t compiled = grouped ? kernel->group_phases.size() : kernel->phases.size();
  FUSEOPT_CHECK(compiled == ir.phases.size(),
                "Optimizer: the kernel has " + std::to_string(compiled) + " compiled phases for " +
                    std::to_string(ir.phases.size()) + " IR phases");
  for (const auto& phase : kernel->phases) {
    FUSEOPT_CHECK(phase != nullptr, "Optimizer: a compiled phase is null");
  }
  for (const auto& phase : kernel->group_phases) {
    FUSEOPT_CHECK(phase != nullptr, "Optimizer: a compiled group phase is null");
  }
  FUSEOPT_CHECK(
      kernel->chunk_elements > 0 && kernel->chunk_elements <= std::numeric_limits<int32_t>::max(),
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
  impl.arena = std::make_unique<Arena>(impl.device);
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
  for (const ir::BufferDecl& b : impl.ir->buffers) {
    impl.storage.push_back(b.storage);
    impl.element_bytes.push_back(static_cast<size_t>(storage_type_bytes(b.storage)));
  }
  for (const ir::HyperDecl& h : impl.ir->hypers) impl.hypers.push_back(h.default_value);
  for (const auto& [name, value] : hypers) impl.hypers[impl.hyper_index(name)] = value;
  set_threads(threads);
}

Optimizer::~Optimizer() = default;
Optimizer::Optimizer(Optimizer&&) noexcept = default;
Optimizer& Optimizer::operator=(Optimizer&&) noexcept = default;

namespace {

void check_numel(int64_t numel) {
  if (numel <= 0) {
    throw UserError("add_tensor: numel must be positive, not " + std::to_string(numel) +
                    ": a tensor without elements has nothing to update, leave it out of the "
                    "group");
  }
}

}  // namespace

size_t Optimizer::add_tensor(float* param, const float* grad, int64_t numel) {
  impl_->require_f32("add_tensor", 0, "add_tensor_raw() with memory of that type");
  impl_->require_f32("add_tensor", 1, "add_tensor_raw() with memory of that type");
  return add_tensor_raw(param, grad, numel);
}

size_t Optimizer::add_tensor_raw(void* param, const void* grad, int64_t numel) {
  if (param == nullptr || grad == nullptr) {
    throw UserError(std::string("add_tensor: the ") +
                    (param == nullptr ? "parameter" : "gradient") +
                    " pointer is null; pass memory of numel elements, or call add_tensor(numel) "
                    "to let the optimizer allocate it");
  }
  check_numel(numel);
  for (size_t b = 0; b < 2; ++b) {
    const void* memory = b == 0 ? param : grad;
    if (reinterpret_cast<uintptr_t>(memory) % impl_->element_bytes[b] != 0) {
      throw UserError("add_tensor: the " + std::string(b == 0 ? "parameter" : "gradient") +
                      " memory is not aligned to its element size (" +
                      std::to_string(impl_->element_bytes[b]) + " bytes, " +
                      storage_type_name(impl_->storage[b]) + ")");
    }
  }
  Tensor tensor;
  tensor.numel = numel;
  tensor.param = param;
  tensor.grad = grad;
  return impl_->add(std::move(tensor));
}

size_t Optimizer::add_tensor(int64_t numel) {
  check_numel(numel);
  Tensor tensor;
  tensor.numel = numel;
  tensor.owns_memory = true;
  // Streams 0 and 1 are the param and grad buffers' (Kernel::buffers order).
  tensor.param = impl_->arena->allocate(0, numel, impl_->element_bytes[0]);
  tensor.grad = impl_->arena->allocate(1, numel, impl_->element_bytes[1]);
  return impl_->add(std::move(tensor));
}

void Optimizer::set_buffers(size_t index, float* param, const float* grad) {
  impl_->require_f32("set_buffers", 0, "set_buffers_raw() with memory of that type");
  impl_->require_f32("set_buffers", 1, "set_buffers_raw() with memory of that type");
  set_buffers_raw(index, param, grad);
}

void Optimizer::set_buffers_raw(size_t index, void* param, const void* grad) {
  Tensor& tensor = impl_->tensor(index);
  if (tensor.owns_memory) {
    throw UserError("set_buffers: tensor " + std::to_string(index) +
                    " uses memory the optimizer owns; write through param() and grad() instead");
  }
  if (param == nullptr || grad == nullptr) {
    throw UserError(std::string("set_buffers: the ") +
                    (param == nullptr ? "parameter" : "gradient") + " pointer is null");
  }
  if (tensor.param == param && tensor.grad == grad) return;
  tensor.param = param;
  tensor.grad = grad;
  impl_->group_changed();  // adjacency is checked again on the next step
}

StorageType Optimizer::storage(const std::string& buffer) const {
  const int index = impl_->ir->buffer_index(buffer);
  if (index < 0) {
    std::vector<std::string> names;
    for (const ir::BufferDecl& b : impl_->ir->buffers) names.push_back(b.name);
    throw_unknown("buffer", buffer, names);
  }
  return impl_->storage[static_cast<size_t>(index)];
}

void* Optimizer::data(size_t index, const std::string& buffer) {
  Tensor& tensor = impl_->tensor(index);
  const int b = impl_->ir->buffer_index(buffer);
  if (b < 0) storage(buffer);  // throws the unknown-buffer error
  return impl_->buffer(tensor, static_cast<size_t>(b));
}

size_t Optimizer::tensor_count() const { return impl_->tensors.size(); }
int64_t Optimizer::numel(size_t index) const { return impl_->tensor(index).numel; }

std::span<float> Optimizer::param(size_t index) {
  Tensor& tensor = impl_->tensor(index);
  impl_->require_host("param()", "read_param() and write_param()");
  impl_->require_f32("param()", 0, "read_param() and write_param() (converting) or data()");
  return {static_cast<float*>(tensor.param), static_cast<size_t>(tensor.numel)};
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
  impl_->require_f32("grad()", 1, "read_grad() and write_grad() (converting) or data()");
  return {static_cast<float*>(const_cast<void*>(tensor.grad)), static_cast<size_t>(tensor.numel)};
}

float* Optimizer::param_data(size_t index) {
  Tensor& tensor = impl_->tensor(index);
  impl_->require_f32("param_data()", 0, "data(tensor, \"param\")");
  return static_cast<float*>(tensor.param);
}

const float* Optimizer::grad_data(size_t index) const {
  const Tensor& tensor = impl_->tensor(index);
  impl_->require_f32("grad_data()", 1, "data(tensor, \"grad\")");
  return static_cast<const float*>(tensor.grad);
}

std::vector<float> Optimizer::read_param(size_t index) const {
  const Tensor& tensor = impl_->tensor(index);
  return impl_->read_buffer(0, tensor.param, tensor.numel);
}

void Optimizer::write_param(size_t index, std::span<const float> values) {
  Tensor& tensor = impl_->tensor(index);
  impl_->check_size("write_param", index, tensor, values.size());
  impl_->write_values(0, tensor.param, values.data(), values.size());
}

std::vector<float> Optimizer::read_grad(size_t index) const {
  const Tensor& tensor = impl_->tensor(index);
  return impl_->read_buffer(1, tensor.grad, tensor.numel);
}

void Optimizer::write_grad(size_t index, std::span<const float> values) {
  Tensor& tensor = impl_->tensor(index);
  require_owned_grad(tensor, index, "write_grad");
  impl_->check_size("write_grad", index, tensor, values.size());
  impl_->write_values(1, const_cast<void*>(tensor.grad), values.data(), values.size());
}

bool Optimizer::step() { return impl_->step(); }

double Optimizer::last_grad_norm() const {
  if (!impl_->ir->grad_transform.any()) {
    throw UserError(
        "last_grad_norm(): the kernel has no gradient transform (compile it with "
        "loss scaling or max_grad_norm clipping)");
  }
  impl_->resolve_decision();
  return impl_->last_grad_factors.total_norm;
}

bool Optimizer::last_step_skipped() const {
  impl_->resolve_decision();
  return !impl_->last_step_taken;
}

void Optimizer::set_decide_on_device(bool on) {
  Impl& impl = *impl_;
  if (on == impl.decide_on_device) return;
  if (on) {
    if (!impl.kernel->decides_on_device) {
      throw UserError(
          "kernel '" + impl.kernel->name + "' cannot decide its steps on the device: " +
          (!impl.ir->grad_transform.any()
               ? std::string("it has no gradient transform (loss scaling or clipping)")
           : impl.kernel->device_memory
               ? std::string("its later phases need the host (reductions or scalar "
                             "states, as LAMB's)")
               : "it is a " + impl.kernel->backend + " kernel; only device kernels (cuda) do"));
    }
    if (impl.gate == nullptr) {
      impl.gate = allocate_block(sizeof(runtime::DeviceGate), impl.device);
      impl.gate_readback = impl.device->make_readback(sizeof(runtime::DeviceGate));
    }
  } else {
    impl.resolve_decision();
    impl.device_grad_scale = nullptr;
    impl.device_found_inf = nullptr;
  }
  impl.decide_on_device = on;
}

bool Optimizer::decides_on_device() const { return impl_->decide_on_device; }

void Optimizer::check_gradients_on_device() {
  Impl& impl = *impl_;
  if (!impl.decide_on_device || impl.device_found_inf == nullptr) {
    throw UserError(
        "check_gradients_on_device() needs set_decide_on_device(true) and a device found_inf "
        "(set_device_loss_scale)");
  }
  impl.step(/*check_only=*/true);
}

void Optimizer::set_device_loss_scale(const void* grad_scale, void* found_inf) {
  Impl& impl = *impl_;
  if (!impl.decide_on_device) {
    throw UserError(
        "set_device_loss_scale: device loss-scale tensors need set_decide_on_device(true)");
  }
  if (!impl.ir->grad_transform.unscale && (grad_scale != nullptr || found_inf != nullptr)) {
    throw UserError("set_device_loss_scale: kernel '" + impl.kernel->name +
                    "' has no loss scaling (compile it with CompileOptions::loss_scaling)");
  }
  for (const void* pointer : {grad_scale, static_cast<const void*>(found_inf)}) {
    if (reinterpret_cast<uintptr_t>(pointer) % alignof(float) != 0) {
      throw UserError("set_device_loss_scale: a device float must be 4-byte aligned");
    }
  }
  impl.device_grad_scale = grad_scale;
  impl.device_found_inf = found_inf;
}

void Optimizer::synchronize() const {
  if (impl_->device != nullptr) impl_->device->synchronize();
}

int64_t Optimizer::step_count(size_t index) const {
  impl_->check_index(index);
  impl_->resolve_decision();
  return impl_->steps[index];
}

void Optimizer::set_step_count(size_t index, int64_t steps) {
  impl_->check_index(index);
  impl_->resolve_decision();
  if (steps < 0) {
    throw UserError("set_step_count: tensor " + std::to_string(index) +
                    ": the step count must be 0 or more, not " + std::to_string(steps));
  }
  impl_->steps[index] = steps;
}

void Optimizer::set_enabled(size_t index, bool enabled) {
  Tensor& tensor = impl_->tensor(index);
  if (tensor.enabled == enabled) return;
  tensor.enabled = enabled;
  impl_->group_changed();
}

bool Optimizer::enabled(size_t index) const { return impl_->tensor(index).enabled; }

void Optimizer::set_hyper(const std::string& name, double value) {
  impl_->hypers[impl_->hyper_index(name)] = value;
}

double Optimizer::hyper(const std::string& name) const {
  return impl_->hypers[impl_->hyper_index(name)];
}

std::vector<std::string> Optimizer::hyper_names() const { return impl_->user_hyper_names(); }

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
  impl_->require_f32("state()", state, "read_state() and write_state() (converting) or data()");
  // Writable access before the first step counts as a write: the rule's initial value no
  // longer replaces it.
  if (!tensor.initialized) tensor.filled[state] = true;
  return {static_cast<float*>(tensor.states[state]), static_cast<size_t>(tensor.numel)};
}

std::span<const float> Optimizer::state(size_t index, const std::string& name) const {
  const Tensor& tensor = impl_->tensor(index);
  const size_t state = impl_->state_index(name);
  impl_->require_host("state()", "read_state() and write_state()");
  impl_->require_f32("state()", state, "read_state() (converting) or data()");
  return {static_cast<const float*>(tensor.states[state]), static_cast<size_t>(tensor.numel)};
}

std::vector<float> Optimizer::read_state(size_t index, const std::string& name) const {
  const Tensor& tensor = impl_->tensor(index);
  const size_t state = impl_->state_index(name);
  return impl_->read_buffer(state, tensor.states[state], tensor.numel);
}

void Optimizer::write_state(size_t index, const std::string& name, std::span<const float> values) {
  Tensor& tensor = impl_->tensor(index);
  const size_t state = impl_->state_index(name);
  if (values.size() != static_cast<size_t>(tensor.numel)) {
    throw UserError("write_state: state '" + name + "' of tensor " + std::to_string(index) +
                    " has " + std::to_string(tensor.numel) + " elements; got " +
                    std::to_string(values.size()) + " values");
  }
  impl_->write_values(state, tensor.states[state], values.data(), values.size());
  if (!tensor.initialized) tensor.filled[state] = true;
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
// values, then per tensor its size, step count, whether its states were initialised (from
// version 2; version 1 files imply it from a step count above 0, which set_step_count()
// breaks), scalars and, per state, whether the user filled it before the first step and its
// values; then the checksum.
void Optimizer::save(const std::string& path) const {
  impl_->resolve_decision();
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
  std::vector<std::byte> staged;  // device states, copied to the host one at a time
  for (size_t i = 0; i < impl.tensors.size(); ++i) {
    const Tensor& tensor = impl.tensors[i];
    out.i64(tensor.numel);
    out.i64(impl.steps[i]);
    out.u8(tensor.initialized ? 1 : 0);
    for (double v : tensor.scalars) out.f64(v);
    const size_t n = static_cast<size_t>(tensor.numel);
    for (size_t b = 0; b < ir.buffers.size(); ++b) {
      if (ir.buffers[b].role != ir::BufferRole::kState) continue;
      out.u8(tensor.filled[b] ? 1 : 0);
      // In the state's storage type, as the kernel keeps it (the kernel's name, checked by
      // load(), spells the types).
      const size_t bytes = n * impl.element_bytes[b];
      const void* values = tensor.states[b];
      if (impl.device != nullptr) {
        staged.resize(bytes);
        impl.copy_bytes_out(staged.data(), values, bytes);
        values = staged.data();
      }
      out.bytes(values, bytes);
    }
  }
  out.commit();
}

void Optimizer::load(const std::string& path) {
  impl_->resolve_decision();
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
    bool initialized = false;
    std::vector<double> scalars;
    std::vector<std::pair<bool, const char*>> states;  ///< (filled, bytes), per state
  };
  std::vector<Staged> staged(impl.tensors.size());
  for (size_t i = 0; i < impl.tensors.size(); ++i) {
    const Tensor& tensor = impl.tensors[i];
    const int64_t numel = in.i64();
    if (numel != tensor.numel) {
      throw UserError(quoted + " holds " + std::to_string(numel) + " elements for tensor " +
                      std::to_string(i) + "; this optimizer's has " + std::to_string(tensor.numel));
    }
    Staged& s = staged[i];
    s.t = in.i64();
    if (s.t < 0) in.damaged("tensor " + std::to_string(i) + " has a negative step count");
    if (in.version() >= 2) {
      const uint8_t initialized = in.u8();
      if (initialized > 1) in.damaged("an initialised flag is neither 0 nor 1");
      s.initialized = initialized == 1;
    } else {
      s.initialized = s.t > 0;
    }
    for (size_t k = 0; k < ir.scalars.size(); ++k) s.scalars.push_back(in.f64());
    for (size_t b = 0; b < ir.buffers.size(); ++b) {
      if (ir.buffers[b].role != ir::BufferRole::kState) continue;
      const uint8_t filled = in.u8();
      if (filled > 1) in.damaged("a state flag is neither 0 nor 1");
      s.states.emplace_back(filled == 1,
                            in.take(static_cast<size_t>(numel) * impl.element_bytes[b]));
    }
  }
  if (!in.at_end()) in.damaged("it has bytes after the last tensor");

  impl.hypers = std::move(hypers);
  for (size_t i = 0; i < impl.tensors.size(); ++i) {
    Tensor& tensor = impl.tensors[i];
    Staged& s = staged[i];
    impl.steps[i] = s.t;
    // A tensor saved before its states were initialised gets the rule's initial values
    // (where not filled) on its next step, as it would have without saving.
    tensor.initialized = s.initialized;
    impl.maybe_uninitialized = true;
    tensor.scalars = std::move(s.scalars);
    size_t k = 0;
    for (size_t b = 0; b < ir.buffers.size(); ++b) {
      if (ir.buffers[b].role != ir::BufferRole::kState) continue;
      tensor.filled[b] = s.states[k].first;
      impl.copy_bytes_in(tensor.states[b], s.states[k].second,
                         static_cast<size_t>(tensor.numel) * impl.element_bytes[b]);
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

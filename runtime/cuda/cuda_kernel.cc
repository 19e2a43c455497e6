// The group phases of a loaded CUDA kernel. All phases of one kernel share one device-side
// state: the tensor tables of recent groups (by group_version), the scalar rows, the
// rounding keys and the partials, guarded by one mutex (the device work is serialised on one
// stream anyway).
//
// Rounding keys (kernels with stochastic stores) travel in their own small device array,
// tensor_count x buffer count words, not in the tensor table: they change every step (they
// depend on each tensor's step count), while the table changes only with the group, and
// re-uploading the table (a chunk entry per 64K elements, each with every buffer's address)
// would cost far more than the keys. A chunk reads its tensor's keys once; phases of one
// step share one upload (it is skipped when the keys equal the last ones sent).
//
// No call waits for the device unless it must read results: per-step uploads (scalar rows,
// keys) go through a ring of page-locked staging slots with asynchronous copies, and a
// kernel with a gradient transform decided on the device (GroupArgs::gate) combines its
// statistics there too. Only phases whose reductions the host reads (LAMB's norms, or the
// statistics when the host decides) wait, to copy their partials back.
#include "runtime/cuda/cuda_kernel.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <list>
#include <mutex>

#include "ir/eval.h"
#include "ir/grad_transform.h"
#include "runtime/cuda/tensor_table.h"
#include "support/error.h"

namespace fuseopt::runtime {
namespace {

// Tables kept per loaded kernel: a few optimizers sharing one kernel do not re-upload.
constexpr size_t kTablesKept = 4;

struct DeviceTable {
  uint64_t version = 0;
  CudaBuffer memory;
  size_t tensor_count = 0;
  size_t chunk_count = 0;
  std::vector<size_t> first_chunk;
};

// Uploads that do not make the host wait: the bytes are copied into a page-locked slot and
// sent with an asynchronous copy on the default stream, ordered before the launches that
// read them. A slot is written again only once the copy that read it has run (its fence has
// passed): with kSlots slots the host runs up to kSlots uploads ahead of the device, and
// when it is that far ahead it waits for the oldest copy only, never for later work.
class StagingRing {
 public:
  explicit StagingRing(const CudaDevice& device) : device_(device) {}
  ~StagingRing() {
    for (Slot& slot : slots_) {
      if (slot.memory == nullptr) continue;
      try {
        device_.wait_fence(slot.fence);  // the copy may still read the slot
      } catch (...) {
        // an error of earlier work; later calls report it
      }
      device_.free_host(slot.memory);
      device_.destroy_fence(slot.fence);
    }
  }
  StagingRing(const StagingRing&) = delete;
  StagingRing& operator=(const StagingRing&) = delete;

  void upload(CudaDevicePtr destination, const void* source, size_t bytes) {
    if (bytes == 0) return;
    Slot& slot = slots_[next_];
    next_ = (next_ + 1) % kSlots;
    if (slot.fence == nullptr && !slot.fence_made) {
      slot.fence = device_.create_fence();
      slot.fence_made = true;
    }
    if (slot.memory != nullptr) device_.wait_fence(slot.fence);
    if (slot.capacity < bytes) {
      device_.free_host(slot.memory);
      slot.memory = nullptr;
      slot.capacity = std::max<size_t>(bytes, 1024);
      slot.memory = device_.allocate_host(slot.capacity);
    }
    std::memcpy(slot.memory, source, bytes);
    device_.copy_to_device_async(destination, slot.memory, bytes);
    device_.record_fence(slot.fence);
  }

 private:
  static constexpr size_t kSlots = 16;
  struct Slot {
    void* memory = nullptr;
    size_t capacity = 0;
    CudaFence fence = nullptr;
    bool fence_made = false;
  };
  const CudaDevice& device_;
  Slot slots_[kSlots];
  size_t next_ = 0;
};

class GroupState {
 public:
  GroupState(const CudaDevice& device, int64_t chunk_elements, std::vector<int> element_bytes)
      : device_(device),
        chunk_elements_(chunk_elements),
        element_bytes_(std::move(element_bytes)),
        staging_(device) {}

  std::mutex mutex;

  // The table for `args`, uploaded if its version is new (or 0).
  const DeviceTable& table(const GroupArgs& args) {
    if (args.group_version != 0) {
      for (auto it = tables_.begin(); it != tables_.end(); ++it) {
        if (it->version == args.group_version && it->tensor_count == args.tensor_count) {
          tables_.splice(tables_.begin(), tables_, it);
          return tables_.front();
        }
      }
    }
    CudaTensorTable host = build_tensor_table(args.tensor_count, args.numels, args.buffers,
                                              element_bytes_, chunk_elements_);
    // Reuse the memory of an unversioned table, or of the least recently used one when
    // enough are kept. Overwriting needs no wait: the copy is ordered after the launches
    // that read the old contents (all on the default stream).
    DeviceTable entry;
    auto reusable = tables_.end();
    for (auto it = tables_.begin(); it != tables_.end(); ++it) {
      if (it->version == 0 && args.group_version == 0) reusable = it;
    }
    if (reusable == tables_.end() && tables_.size() >= kTablesKept)
      reusable = std::prev(tables_.end());
    if (reusable != tables_.end()) {
      entry = std::move(*reusable);
      tables_.erase(reusable);
    }
    if (entry.memory.bytes() < host.bytes()) {
      device_.synchronize();  // freeing memory a queued kernel still reads
      entry.memory = CudaBuffer();
      entry.memory = CudaBuffer(device_, host.bytes());
    }
    device_.copy_to_device(entry.memory.get(), host.words.data(), host.bytes());
    entry.version = args.group_version;
    entry.tensor_count = args.tensor_count;
    entry.chunk_count = host.chunks.size();
    entry.first_chunk = std::move(host.first_chunk);
    tables_.push_front(std::move(entry));
    return tables_.front();
  }

  // Device memory for `bytes` bytes of scalars; reused between calls (the null stream orders
  // the next copy after the kernel that reads it).
  CudaDevicePtr scalars(size_t bytes) { return grow(scalars_, bytes); }
  CudaDevicePtr partials(size_t bytes) { return grow(partials_, bytes); }
  // The device copy of `args`' rounding keys (tensor_count x buffer count).
  CudaDevicePtr rounding_keys(const GroupArgs& args) {
    FUSEOPT_CHECK(
        args.rounding_keys != nullptr,
        "run_group: the kernel rounds stochastically but GroupArgs::rounding_keys is null");
    const size_t count = args.tensor_count * element_bytes_.size();
    const CudaDevicePtr device_keys = grow(keys_, std::max<size_t>(count, 1) * sizeof(uint32_t));
    if (!std::equal(args.rounding_keys, args.rounding_keys + count, sent_keys_.begin(),
                    sent_keys_.end())) {
      staging_.upload(device_keys, args.rounding_keys, count * sizeof(uint32_t));
      sent_keys_.assign(args.rounding_keys, args.rounding_keys + count);
    }
    return device_keys;
  }
  std::vector<double>& host_partials() { return host_partials_; }
  const CudaDevice& device() const { return device_; }
  /// Queues an upload of per-step data without waiting for the device.
  void upload(CudaDevicePtr destination, const void* source, size_t bytes) {
    staging_.upload(destination, source, bytes);
  }

 private:
  CudaDevicePtr grow(CudaBuffer& buffer, size_t bytes) {
    if (buffer.bytes() < bytes) {
      device_.synchronize();  // freeing memory a queued kernel may still use
      const size_t size = std::max(bytes, 2 * buffer.bytes());
      buffer = CudaBuffer();
      buffer = CudaBuffer(device_, size);
      if (&buffer == &keys_) sent_keys_.clear();  // new memory holds no keys yet
    }
    return buffer.get();
  }

  const CudaDevice& device_;
  int64_t chunk_elements_;
  std::vector<int> element_bytes_;  // per buffer: 4 (f32) or 2 (bf16, f16)
  std::list<DeviceTable> tables_;   // most recently used first
  CudaBuffer scalars_;
  CudaBuffer partials_;
  CudaBuffer keys_;
  std::vector<uint32_t> sent_keys_;  // what keys_ holds
  std::vector<double> host_partials_;
  StagingRing staging_;  // declared last: destroyed first, while the buffers above still live
};

CudaDevicePtr address(const void* pointer) {
  return static_cast<CudaDevicePtr>(reinterpret_cast<uintptr_t>(pointer));
}

// The arguments every generated function takes (codegen/cuda/cuda_source.h), in order, with
// the pointers cuLaunchKernel wants. The gate's inputs are passed only with a gate.
struct LaunchArgs {
  LaunchArgs(const DeviceTable& table, const GroupArgs& args)
      : table_address(table.memory.get()),
        gate(address(args.gate)),
        grad_scale(args.gate != nullptr ? address(args.grad_scale) : 0),
        found_inf(args.gate != nullptr ? address(args.found_inf) : 0),
        max_grad_norm(args.max_grad_norm) {}
  LaunchArgs(const LaunchArgs&) = delete;  // `params` points into this object
  LaunchArgs& operator=(const LaunchArgs&) = delete;

  CudaDevicePtr table_address;
  CudaDevicePtr scalars = 0;
  unsigned int stride = 0;
  CudaDevicePtr partials = 0;
  CudaDevicePtr keys = 0;
  CudaDevicePtr gate;
  CudaDevicePtr grad_scale;
  CudaDevicePtr found_inf;
  double max_grad_norm;
  void* params[9] = {&table_address, &scalars,    &stride,    &partials,     &keys,
                     &gate,          &grad_scale, &found_inf, &max_grad_norm};
};

class CudaGroupPhase final : public GroupPhaseKernel {
 public:
  CudaGroupPhase(std::shared_ptr<GroupState> state, CudaFunction function, int block_size,
                 int grid_cap, size_t scalar_count, std::vector<ir::ReduceOp> reductions,
                 bool reads_keys, CudaFunction decide)
      : state_(std::move(state)),
        function_(function),
        block_size_(block_size),
        grid_cap_(grid_cap),
        scalar_count_(scalar_count),
        reductions_(std::move(reductions)),
        reads_keys_(reads_keys),
        decide_(decide) {}

  void run_group(const GroupArgs& args) const override {
    GroupState& state = *state_;
    std::lock_guard<std::mutex> lock(state.mutex);
    const size_t reductions = reductions_.size();
    FUSEOPT_CHECK(args.tensor_count == 0 || args.numels != nullptr, "run_group: no numels");
    FUSEOPT_CHECK(reductions == 0 || args.tensor_count == 0 || args.partials != nullptr,
                  "run_group: a phase with reductions needs GroupArgs::partials");
    FUSEOPT_CHECK(scalar_count_ == 0 || args.tensor_count == 0 || args.scalars != nullptr,
                  "run_group: the phase reads scalars but GroupArgs::scalars is null");
    FUSEOPT_CHECK(args.gate == nullptr || decide_ != nullptr || reductions_.empty(),
                  "run_group: a gate for a kernel that cannot decide on the device");
    const DeviceTable& table = state.table(args);
    if (table.chunk_count > 0) {
      launch(state, table, args);
    }
    if (args.gate != nullptr && decide_ != nullptr) {
      // Phase 0 of a kernel deciding on the device: its partials stay there, combined by
      // one more launch into the gate that the later phases read.
      LaunchArgs launch_args(table, args);
      launch_args.partials = state.partials(std::max<size_t>(table.chunk_count, 1) *
                                            std::max<size_t>(reductions, 1) * sizeof(double));
      state.device().launch(decide_, 1, 32, launch_args.params);
      return;
    }
    if (reductions > 0) combine(state, table, args);
  }

 private:
  void launch(GroupState& state, const DeviceTable& table, const GroupArgs& args) const {
    const CudaDevice& device = state.device();
    CudaDevicePtr scalars = 0;
    unsigned int stride = 0;
    if (scalar_count_ > 0) {
      // One row serves every tensor when all rows are equal (the common case: hypers and
      // the step count are shared), so the upload stays small for many tensors.
      const size_t row_bytes = scalar_count_ * sizeof(float);
      bool same = true;
      for (size_t t = 1; t < args.tensor_count && same; ++t) {
        same = std::memcmp(args.scalars, args.scalars + t * scalar_count_, row_bytes) == 0;
      }
      const size_t rows = same ? 1 : args.tensor_count;
      stride = same ? 0u : static_cast<unsigned int>(scalar_count_);
      scalars = state.scalars(rows * row_bytes);
      state.upload(scalars, args.scalars, rows * row_bytes);
    }
    CudaDevicePtr partials = 0;
    if (!reductions_.empty()) {
      partials = state.partials(table.chunk_count * reductions_.size() * sizeof(double));
    }
    LaunchArgs launch_args(table, args);
    launch_args.scalars = scalars;
    launch_args.stride = stride;
    launch_args.partials = partials;
    launch_args.keys = reads_keys_ ? state.rounding_keys(args) : 0;
    const size_t grid = std::min(table.chunk_count, static_cast<size_t>(grid_cap_));
    device.launch(function_, static_cast<unsigned>(grid), static_cast<unsigned>(block_size_),
                  launch_args.params);
  }

  // Each tensor's results: its chunks' partials combined in chunk order, as the CPU runtime
  // does, with the interpreter's combine (so max propagates NaN the same way).
  void combine(GroupState& state, const DeviceTable& table, const GroupArgs& args) const {
    const size_t reductions = reductions_.size();
    std::vector<double>& partials = state.host_partials();
    partials.resize(table.chunk_count * reductions);
    if (table.chunk_count > 0) {
      state.device().copy_to_host(partials.data(), state.partials(0),
                                  partials.size() * sizeof(double));
    }
    for (size_t t = 0; t < args.tensor_count; ++t) {
      for (size_t r = 0; r < reductions; ++r) {
        double value = ir::reduce_identity(reductions_[r]);
        for (size_t c = table.first_chunk[t]; c < table.first_chunk[t + 1]; ++c) {
          value = ir::reduce_combine(reductions_[r], value, partials[c * reductions + r]);
        }
        args.partials[t * reductions + r] = value;
      }
    }
  }

  std::shared_ptr<GroupState> state_;
  CudaFunction function_;
  int block_size_;
  int grid_cap_;
  size_t scalar_count_;
  std::vector<ir::ReduceOp> reductions_;
  bool reads_keys_;      // the phase has a stochastic store
  CudaFunction decide_;  // phase 0 of a kernel that can decide on the device; null otherwise
};

class CudaDeviceMemory final : public DeviceMemory {
 public:
  explicit CudaDeviceMemory(const CudaDevice& device) : device_(device) {}

  void* allocate(size_t bytes) const override { return as_pointer(device_.allocate(bytes)); }
  void free(void* pointer) const noexcept override { device_.free(address(pointer)); }
  void copy_to_device(void* destination, const void* source, size_t bytes) const override {
    device_.copy_to_device(address(destination), source, bytes);
  }
  void copy_to_host(void* destination, const void* source, size_t bytes) const override {
    device_.copy_to_host(destination, address(source), bytes);
  }
  void copy_on_device(void* destination, const void* source, size_t bytes) const override {
    device_.copy_on_device(address(destination), address(source), bytes);
  }
  void fill(void* destination, uint32_t bits, int element_bytes, size_t count) const override {
    switch (element_bytes) {
      case 4:
        device_.fill_words(address(destination), bits, count);
        return;
      case 2:
        device_.fill_halves(address(destination), static_cast<uint16_t>(bits & 0xffffu), count);
        return;
      default:
        FUSEOPT_UNREACHABLE("DeviceMemory::fill: elements of " + std::to_string(element_bytes) +
                            " bytes (4 or 2 expected)");
    }
  }
  void synchronize() const override { device_.synchronize(); }

  // Page-locked memory, an asynchronous copy and a fence: the host waits, if at all, only
  // for the work queued before start().
  class PinnedReadback final : public Readback {
   public:
    PinnedReadback(const CudaDevice& device, size_t bytes)
        : device_(device),
          bytes_(bytes),
          memory_(device.allocate_host(bytes)),
          fence_(make_fence(device, memory_)) {}
    ~PinnedReadback() override {
      try {
        device_.wait_fence(fence_);  // a queued copy may still write the memory
      } catch (...) {
        // an error of earlier work; later calls report it
      }
      device_.destroy_fence(fence_);
      device_.free_host(memory_);
    }
    PinnedReadback(const PinnedReadback&) = delete;
    PinnedReadback& operator=(const PinnedReadback&) = delete;
    void start(const void* source) override {
      device_.wait_fence(fence_);  // the previous copy into the same memory
      device_.copy_to_host_async(memory_, address(source), bytes_);
      device_.record_fence(fence_);
    }
    const void* wait() override {
      device_.wait_fence(fence_);
      return memory_;
    }

   private:
    static CudaFence make_fence(const CudaDevice& device, void* memory) {
      try {
        return device.create_fence();
      } catch (...) {
        device.free_host(memory);
        throw;
      }
    }
    const CudaDevice& device_;
    size_t bytes_;
    void* memory_;
    CudaFence fence_;
  };
  std::unique_ptr<Readback> make_readback(size_t bytes) const override {
    return std::make_unique<PinnedReadback>(device_, bytes);
  }

  std::string name() const override {
    const CudaDeviceInfo& info = device_.device();
    std::string name = "CUDA device " + std::to_string(info.ordinal);
    if (!info.name.empty()) name += " (" + info.name + ")";
    return name;
  }

 private:
  static void* as_pointer(CudaDevicePtr address) {
    return reinterpret_cast<void*>(static_cast<uintptr_t>(address));
  }

  const CudaDevice& device_;
};

}  // namespace

std::shared_ptr<const DeviceMemory> make_cuda_device_memory(const CudaDevice& device) {
  return std::make_shared<CudaDeviceMemory>(device);
}

std::shared_ptr<const CompiledKernel> load_cuda_kernel(ir::Kernel kernel,
                                                       const CudaBinaryView& binary,
                                                       const CudaDevice& device) {
  if (binary.phase_functions.size() != kernel.phases.size()) {
    throw UserError("CUDA binary " + binary.name + " has " +
                    std::to_string(binary.phase_functions.size()) + " phase functions, kernel " +
                    kernel.config_name() + " has " + std::to_string(kernel.phases.size()) +
                    " phases");
  }
  const std::string layout = cuda_tensor_table_layout(kernel.buffers.size());
  if (binary.table_layout != layout) {
    throw UserError("CUDA binary " + binary.name + " was generated for another tensor table (" +
                    binary.table_layout + "); this runtime builds " + layout);
  }
  if (binary.block_size < 32 || binary.block_size > 1024 || binary.block_size % 32 != 0 ||
      binary.grid_limit < 0 || binary.chunk_elements < 1) {
    throw UserError("CUDA binary " + binary.name + " has an invalid launch shape");
  }
  if (binary.cubin.empty() && binary.ptx.empty()) {
    throw UserError("CUDA binary " + binary.name + " has neither a cubin nor PTX");
  }
  CudaModule module = device.load_module(binary.cubin, binary.ptx);
  std::vector<int> element_bytes;
  for (size_t b = 0; b < kernel.buffers.size(); ++b) {
    element_bytes.push_back(static_cast<int>(buffer_element_bytes(kernel, b)));
  }
  auto state =
      std::make_shared<GroupState>(device, binary.chunk_elements, std::move(element_bytes));

  auto compiled = std::make_shared<CompiledKernel>();
  // The decide function of codegen/cuda/cuda_source.h: phase 0's name with "_decide" for
  // "_p0", present exactly when the kernel can decide on the device.
  CudaFunction decide = nullptr;
  if (ir::can_decide_on_device(kernel)) {
    const std::string& first = binary.phase_functions.front();
    if (!first.ends_with("_p0")) {
      throw UserError("CUDA binary " + binary.name + ": phase 0's function " + first +
                      " does not end in _p0");
    }
    decide = device.function(module, first.substr(0, first.size() - 3) + "_decide");
  }
  for (size_t p = 0; p < kernel.phases.size(); ++p) {
    const ir::Phase& phase = kernel.phases[p];
    CudaFunction function = device.function(module, binary.phase_functions[p]);
    int grid_cap = binary.grid_limit;
    if (grid_cap == 0) {
      const int resident = device.resident_blocks_per_sm(function, binary.block_size);
      if (resident == 0) {
        throw EnvironmentError("CUDA kernel " + binary.phase_functions[p] + " cannot run " +
                               std::to_string(binary.block_size) + "-thread blocks on " +
                               device.device().name + " (too many registers per thread)");
      }
      grid_cap = resident * device.device().sm_count;
    }
    std::vector<ir::ReduceOp> reductions;
    for (const ir::Reduction& reduction : phase.reductions) reductions.push_back(reduction.op);
    bool reads_keys = false;
    for (const ir::Store& store : phase.stores) {
      const int buffer = kernel.buffer_index(store.target);
      reads_keys =
          reads_keys || (buffer >= 0 && kernel.buffers[static_cast<size_t>(buffer)].stochastic);
    }
    compiled->group_phases.push_back(std::make_shared<CudaGroupPhase>(
        state, function, binary.block_size, grid_cap, ir::phase_scalar_inputs(phase).size(),
        std::move(reductions), reads_keys, p == 0 ? decide : nullptr));
  }
  compiled->decides_on_device = decide != nullptr;
  compiled->ir = std::move(kernel);
  compiled->device_memory = true;
  compiled->device = make_cuda_device_memory(device);
  compiled->backend = "cuda";
  compiled->name = binary.name;
  compiled->chunk_elements = binary.chunk_elements;
  return compiled;
}

std::shared_ptr<const CompiledKernel> load_cuda_kernel(ir::Kernel kernel,
                                                       const CudaBinaryView& binary) {
  return load_cuda_kernel(std::move(kernel), binary, CudaDriver::get());
}

}  // namespace fuseopt::runtime

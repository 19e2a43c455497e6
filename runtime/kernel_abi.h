// The contract between compiled kernels and the runtime: the runtime evaluates each phase's
// host prologue, cuts every tensor of the group into chunks, and calls a PhaseKernel once per
// chunk, from several threads at once. Backends (the Halide CPU backend, the chunked
// interpreter) implement PhaseKernel; whole-group backends (CUDA) implement GroupPhaseKernel
// and give the runtime a DeviceMemory for their tensors. The runtime links none of them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ir/kernel.h"

namespace fuseopt::runtime {

/// Version of this contract. Caches and packs record it; a change here bumps it.
inline constexpr int kKernelAbiVersion = 4;

/// One call of a compiled phase: one contiguous chunk of one tensor. For a phase without
/// reductions the "tensor" may be a run of consecutive tensors whose buffers are all adjacent
/// in memory and whose scalar inputs are bitwise equal (the Optimizer coalesces them), so a
/// phase must compute each element from that element's values and the scalars alone, never
/// from its position in the chunk.
struct ChunkArgs {
  /// Elements in the chunk (at least 1).
  int64_t count = 0;
  /// One pointer per ir::Kernel::buffers entry, at the chunk's first element. Buffer b holds
  /// elements of its storage type (ir::Kernel::buffers[b].storage: 4 bytes for f32, 2 for
  /// bf16 and f16; buffer_element_bytes()), and its pointer is aligned to that size, no more.
  /// param may be updated in place; grad is only read.
  void* const* buffers = nullptr;
  /// The scalars the phase's element code reads, in ir::phase_scalar_inputs() order, rounded
  /// to float32 (booleans as 0 or 1).
  const float* scalars = nullptr;
  /// Out: one value per reduction of the phase, this chunk's partial result.
  double* partials = nullptr;
  /// For kernels with stochastic stores (ir::Kernel::has_stochastic_store(); such chunks are
  /// never coalesced across tensors): the index of the chunk's first element in its tensor,
  /// and one rounding stream key per buffer (ir/interpreter.h, run_phase_chunk). Null
  /// otherwise.
  int64_t first_index = 0;
  const uint32_t* rounding_keys = nullptr;
};

/// The bytes of one element of buffer `buffer` of `kernel` as kernels see it in memory.
inline size_t buffer_element_bytes(const ir::Kernel& kernel, size_t buffer) {
  return static_cast<size_t>(storage_type_bytes(kernel.buffers[buffer].storage));
}

/// A phase compiled for one backend. run() is called concurrently on disjoint chunks and
/// must give the same bits for the same chunk whatever the thread. Errors are thrown as
/// fuseopt exceptions (support/error.h).
class PhaseKernel {
 public:
  virtual ~PhaseKernel() = default;
  virtual void run(const ChunkArgs& args) const = 0;
};

/// One call of a phase for the whole group at once: what a GPU backend needs to launch one
/// kernel per phase. Arrays are tensor-major. `group_version` changes whenever tensors are
/// added or re-pointed, so a backend can keep its device-side tensor table between steps.
struct GroupArgs {
  size_t tensor_count = 0;
  const int64_t* numels = nullptr;  ///< tensor_count entries
  /// tensor_count x buffer count pointers, each to elements of its buffer's storage type
  void* const* buffers = nullptr;
  const float* scalars = nullptr;  ///< tensor_count x phase scalar inputs
  double* partials = nullptr;      ///< out: tensor_count x reductions, combined
  uint64_t group_version = 0;
  /// For kernels with stochastic stores: tensor_count x buffer count rounding stream keys
  /// (as ChunkArgs::rounding_keys; element i of a tensor draws rounding_random(key, i)).
  /// Null otherwise.
  const uint32_t* rounding_keys = nullptr;
  /// Kernels whose gradient transform is decided on the device
  /// (CompiledKernel::decides_on_device): when `gate` is set (device memory of a DeviceGate),
  /// phase 0 also combines the group's statistics on the device and writes the step's
  /// decision there, instead of returning partials to the host; later phases read it and
  /// store nothing when it says skip. Null: the host decides from `partials`.
  void* gate = nullptr;
  /// With `gate`: a device float holding the loss scale, read instead of the rows' unscale
  /// factor (null: the rows'); and a device float whose nonzero value skips the step (null:
  /// none), set to 1 when the step is skipped for any reason. Both are read when the kernels
  /// run, so they may be written by earlier device work.
  const void* grad_scale = nullptr;
  void* found_inf = nullptr;
  /// With `gate` and clipping: the max_grad_norm hyper.
  double max_grad_norm = 1;
};

/// The decision of a step taken on the device (GroupArgs::gate), as ir::grad_factors gives it
/// on the host.
struct DeviceGate {
  double skip = 0;        ///< 1 when the step was skipped
  double clip = 1;        ///< the clip factor (a float32 value)
  double total_norm = 0;  ///< the global norm of the unscaled gradients
  double bad_scale = 0;   ///< 1 when the device grad_scale was not positive and finite
};
static_assert(sizeof(DeviceGate) == 32, "the gate's layout is the generated code's");

/// A phase that runs over the whole group in one call (device memory, one launch). When a
/// CompiledKernel has these, the runtime calls them instead of cutting chunks.
class GroupPhaseKernel {
 public:
  virtual ~GroupPhaseKernel() = default;
  virtual void run_group(const GroupArgs& args) const = 0;
};

/// The memory of a device whose kernels the host cannot reach into: the Optimizer allocates,
/// fills, copies and frees tensors through it, and never dereferences a device pointer.
/// Pointers are device addresses carried as host pointer types. Every call is ordered after
/// the work queued before it (kernel launches included); copies to the host return once the
/// data is there. Errors are thrown as fuseopt exceptions (support/error.h): an
/// EnvironmentError when the device runs out of memory.
class DeviceMemory {
 public:
  virtual ~DeviceMemory() = default;
  /// `bytes` bytes (at least 1), aligned for float4 loads; the contents are unspecified.
  virtual void* allocate(size_t bytes) const = 0;
  /// Frees what allocate() returned; null is ignored.
  virtual void free(void* pointer) const noexcept = 0;
  virtual void copy_to_device(void* destination, const void* source, size_t bytes) const = 0;
  virtual void copy_to_host(void* destination, const void* source, size_t bytes) const = 0;
  /// Device to device; the ranges do not overlap.
  virtual void copy_on_device(void* destination, const void* source, size_t bytes) const = 0;
  /// Sets `count` elements of `element_bytes` bytes (4 or 2) at `destination` to the low
  /// `element_bytes` bytes of `bits` (a float's bits, or a bf16/f16 value's).
  virtual void fill(void* destination, uint32_t bits, int element_bytes, size_t count) const = 0;
  /// Waits for all queued work; reports the errors of earlier launches.
  virtual void synchronize() const = 0;
  /// Names the device for messages, e.g. "CUDA device 0 (NVIDIA H200)".
  virtual std::string name() const = 0;

  /// A small copy from the device that the host does not wait for: start() queues it after
  /// the work queued so far and returns at once; wait() waits only for that work (not for
  /// what was queued later) and gives the bytes. How a step's decision on the device reaches
  /// the host without a round trip.
  class Readback {
   public:
    virtual ~Readback() = default;
    virtual void start(const void* source) = 0;
    /// The bytes copied by the last start(), waiting for them if needed.
    virtual const void* wait() = 0;
  };
  /// A Readback of `bytes` bytes. The default copies synchronously in start().
  virtual std::unique_ptr<Readback> make_readback(size_t bytes) const {
    class Synchronous final : public Readback {
     public:
      Synchronous(const DeviceMemory& memory, size_t bytes) : memory_(memory), bytes_(bytes) {}
      void start(const void* source) override {
        memory_.copy_to_host(bytes_.data(), source, bytes_.size());
      }
      const void* wait() override { return bytes_.data(); }

     private:
      const DeviceMemory& memory_;
      std::vector<std::byte> bytes_;
    };
    return std::make_unique<Synchronous>(*this, bytes);
  }
};

/// A kernel compiled for one backend: the IR the runtime needs for the host side, plus one
/// PhaseKernel per phase. Immutable once built; shared between optimizers.
struct CompiledKernel {
  ir::Kernel ir;                                           ///< split and optimized
  std::vector<std::shared_ptr<const PhaseKernel>> phases;  ///< one per ir.phases entry
  /// Instead of `phases`, for backends that step the whole group at once (cuda).
  std::vector<std::shared_ptr<const GroupPhaseKernel>> group_phases;
  /// True when buffers live in device memory: the Optimizer then takes device pointers,
  /// allocates and initialises through `device`, and never touches the data on the host.
  /// Such a kernel has group_phases (and no phases) and a `device`.
  bool device_memory = false;
  /// The device's memory; set when device_memory is true. Shared with every Optimizer of
  /// the kernel, so it lives as long as their tensors.
  std::shared_ptr<const DeviceMemory> device;
  /// The group phases decide the gradient transform on the device when given a
  /// GroupArgs::gate (ir::can_decide_on_device holds and the backend implements it).
  bool decides_on_device = false;
  std::string backend;  ///< "interp", "cpu" or "cuda"
  /// Spells the configuration, e.g. "adam_amsgrad0_maximize0_cpu_v8_u2_c16384".
  std::string name;
  /// The runtime cuts tensors into chunks of this many elements (the last one shorter).
  /// Reductions combine per-chunk partials in chunk order, so results depend on this
  /// value but never on the number of threads.
  int64_t chunk_elements = 16384;
};

}  // namespace fuseopt::runtime

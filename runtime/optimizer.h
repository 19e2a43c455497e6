// fuseopt::Optimizer: one compiled rule applied to a group of tensors of any sizes and count.
// It owns the states, scalar states, step counts and hyper values; step() runs every phase
// over the whole group, cut into chunks spread over a thread pool (host kernels) or with one
// launch per phase (device kernels, such as cuda's).
//
// With a device kernel (kernel().device_memory) the same API takes and keeps DEVICE memory:
// add_tensor(param, grad, numel) takes device pointers, and the optimizer allocates its
// states (and the tensors of add_tensor(numel)) on the device. The span accessors param(),
// grad() and state() are for host memory only; read_*() and write_*() copy through the host
// and work with every kernel.
//
// Buffers are stored as the kernel says (Optimizer::storage(): f32, bf16 or f16; see
// docs/language.md, "Storage types and rounding"). The float-typed accessors and
// add_tensor(float*, ...) are for f32 buffers; add_tensor_raw() and data() take and give
// memory of any storage type, and read_*() and write_*() convert (loads widen exactly, writes
// round to nearest even).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "runtime/kernel_abi.h"
#include "support/low_precision.h"

namespace fuseopt {

namespace runtime {
class ThreadPool;
}

/// Not thread-safe: one thread at a time calls its methods (step() uses its own pool).
class Optimizer {
 public:
  /// Applies `kernel` (see api/fuseopt.h to compile one from a rule). Hypers start at the
  /// rule's defaults, then `hypers`; an unknown name is a UserError. `threads` = 0 uses
  /// every core.
  explicit Optimizer(std::shared_ptr<const runtime::CompiledKernel> kernel,
                     const std::map<std::string, double>& hypers = {}, int threads = 0);
  ~Optimizer();
  Optimizer(Optimizer&&) noexcept;
  Optimizer& operator=(Optimizer&&) noexcept;

  // ---- The group ---------------------------------------------------------------------------

  /// Adds a tensor whose parameter and gradient memory the caller owns and keeps alive
  /// (device memory for a device kernel). The optimizer allocates its states. Returns the
  /// tensor's index.
  /// param and grad must be stored as f32 (see add_tensor_raw() for the others).
  size_t add_tensor(float* param, const float* grad, int64_t numel);
  /// The same for memory of the kernel's storage types: `param` holds numel elements of
  /// storage("param"), `grad` of storage("grad") (2-byte bf16/f16 bits or floats), each
  /// aligned to its element size.
  size_t add_tensor_raw(void* param, const void* grad, int64_t numel);
  /// Adds a tensor whose parameter and gradient the optimizer allocates (zeroed; on the
  /// device for a device kernel).
  size_t add_tensor(int64_t numel);
  /// Points a caller-owned tensor at new memory of the same size (states are kept); device
  /// memory for a device kernel.
  void set_buffers(size_t tensor, float* param, const float* grad);
  void set_buffers_raw(size_t tensor, void* param, const void* grad);

  /// How buffer `buffer` ("param", "grad" or a state) is stored; UserError for an unknown name.
  StorageType storage(const std::string& buffer) const;
  /// Where a tensor's buffer lives (host or device address), holding elements of
  /// storage(buffer): for handing optimizer-owned memory of any type to other code.
  void* data(size_t tensor, const std::string& buffer);

  size_t tensor_count() const;
  int64_t numel(size_t tensor) const;
  /// The parameter's memory, on the host. A UserError for a device kernel (use
  /// read_param() and write_param()) and for a parameter not stored as f32.
  std::span<float> param(size_t tensor);
  /// The gradient; writable only for tensors whose memory the optimizer owns. A UserError
  /// for a device kernel (use write_grad()).
  std::span<float> grad(size_t tensor);
  /// Where the parameter and gradient live: host or device addresses, as the kernel's
  /// memory is. For handing optimizer-owned device tensors to other device code. f32 only
  /// (data() serves every type).
  float* param_data(size_t tensor);
  const float* grad_data(size_t tensor) const;

  /// Copies of a tensor's memory to and from the host, for host and device kernels alike.
  /// `values` holds numel(tensor) floats: reads widen bf16/f16 exactly, writes round to
  /// nearest even. write_grad() needs memory the optimizer owns (the caller's gradient is
  /// only ever read).
  std::vector<float> read_param(size_t tensor) const;
  void write_param(size_t tensor, std::span<const float> values);
  std::vector<float> read_grad(size_t tensor) const;
  void write_grad(size_t tensor, std::span<const float> values);

  // ---- Stepping ----------------------------------------------------------------------------

  /// One step for every enabled tensor: increments each one's step count, initialises its
  /// states on its first step, runs every phase. The group must not be empty (a group whose
  /// tensors are all disabled steps nothing). Results do not
  /// depend on the thread count. When a kernel fails (an exception), the step counts stay
  /// and the tensors' values are unspecified. A device kernel's step may return once its
  /// work is queued on the device (in order with the device's other work on the default
  /// stream); read_*() and synchronize() wait for it.
  /// With a gradient transform (CompileOptions::loss_scaling, ::clip_grad_norm; see
  /// ir/grad_transform.h) the step first gathers the group's gradient statistics: returns
  /// false, changing nothing (not even step counts), when loss scaling found an inf or NaN
  /// gradient. True otherwise, and always with set_decide_on_device(true), whose outcome is
  /// read later (last_step_skipped()).
  bool step();
  /// The global norm of the unscaled gradients the last step saw (before clipping); a
  /// UserError without a gradient transform.
  double last_grad_norm() const;
  /// Whether the last step was skipped by loss scaling (an inf or NaN gradient, or
  /// found_inf set); false when it was taken. With set_decide_on_device(true) it waits, if
  /// needed, for that step's kernels (never for device work queued after them).
  bool last_step_skipped() const;
  /// Device kernels with a gradient transform (CompiledKernel::decides_on_device; cuda
  /// kernels of rules whose later phases need no host work, which is all but LAMB-like
  /// ones): decide each step on the device, with no host round trip. The statistics are
  /// combined, the skip decided and the clip factor computed by device code that the later
  /// phases read; step() returns once the work is queued (true: the outcome is not known yet,
  /// and a skipped step stores nothing). The host reads the outcome with an asynchronous copy
  /// when it next needs it: last_step_skipped(), last_grad_norm(), step_count(), save(),
  /// load() and the next step() wait for that step's own kernels at most; a skipped step's
  /// step counts are put back then. A UserError for other kernels. Off: the host decides
  /// from the statistics (the step waits for phase 0).
  void set_decide_on_device(bool on);
  bool decides_on_device() const;
  /// With set_decide_on_device(true) and loss scaling: device floats the kernels of every
  /// later step read instead of the hypers: `grad_scale` (the loss scale; null: the
  /// grad_scale hyper) and `found_inf` (nonzero skips the step, and a skipped step sets it
  /// to 1, as a GradScaler learns of skips; null: none), e.g. PyTorch GradScaler's scale and
  /// found_inf tensors. They must stay valid until those steps have
  /// run. A device grad_scale that is not positive and finite skips the step, and the call
  /// that reads the outcome throws a UserError. The found_inf hyper, when nonzero, still
  /// skips a step on the host.
  void set_device_loss_scale(const void* grad_scale, void* found_inf);
  /// With a device found_inf: queues phase 0 and the decision for the current gradients
  /// without stepping (nothing else changes), so that an inf or NaN unscaled gradient sets
  /// found_inf to 1. Several optimizers sharing one found_inf that all check before any
  /// steps then skip or step together, with no host round trip (fuseopt.torch does this for
  /// its param groups). Costs one more read of the gradients. A UserError without
  /// set_decide_on_device(true) and a device found_inf.
  void check_gradients_on_device();

  /// Waits until the device has finished every step queued so far, reporting errors of
  /// earlier launches; nothing to wait for with host kernels.
  void synchronize() const;
  /// Steps taken by `tensor` (its `t` during the last step). Tensors added later start at 0.
  int64_t step_count(size_t tensor = 0) const;
  /// Sets the steps `tensor` has taken (its next step runs with t = steps + 1), e.g. when
  /// restoring another framework's optimizer state. A negative count is a UserError. It does
  /// not initialise the states: a tensor whose states were never initialised still gets its
  /// rule's initial values (where not written) on its next step.
  void set_step_count(size_t tensor, int64_t steps);
  /// A disabled tensor is skipped by step(): its states are not initialised, its step count
  /// does not change and none of its memory (parameter, gradient, states) is touched, as if
  /// it were not in the group (e.g. a parameter without a gradient this step). Tensors start
  /// enabled. Works with host and device kernels.
  void set_enabled(size_t tensor, bool enabled);
  bool enabled(size_t tensor) const;

  void set_hyper(const std::string& name, double value);
  double hyper(const std::string& name) const;
  std::vector<std::string> hyper_names() const;

  // ---- State -------------------------------------------------------------------------------

  /// The names of the states that exist under the kernel's options.
  std::vector<std::string> state_names() const;
  std::vector<std::string> scalar_names() const;
  /// A state's memory, on the host. Writing it before the tensor's first step replaces the
  /// rule's initial value (like `fuseopt run --state`). A UserError for a device kernel (use
  /// read_state() and write_state()).
  std::span<float> state(size_t tensor, const std::string& name);
  std::span<const float> state(size_t tensor, const std::string& name) const;
  /// A copy of a state's values, for host and device kernels alike.
  std::vector<float> read_state(size_t tensor, const std::string& name) const;
  /// Replaces a state's values (copied from the host); the same as writing through state(),
  /// for host and device kernels alike.
  void write_state(size_t tensor, const std::string& name, std::span<const float> values);
  /// The same as write_state().
  void set_state(size_t tensor, const std::string& name, std::span<const float> values);
  /// Scalar states start at their declared value when the tensor is added; set_scalar()
  /// before the first step replaces it.
  double scalar(size_t tensor, const std::string& name) const;
  void set_scalar(size_t tensor, const std::string& name, double value);

  /// Writes every tensor's states, scalars, step count and the hypers to a file. A
  /// restored optimizer continues bit-identically. Parameters are not saved: they belong to
  /// the model. The file is written beside `path` and renamed over it when complete. Device
  /// states are copied through the host; the file is the same for every backend.
  void save(const std::string& path) const;
  /// Restores what save() wrote into an optimizer of the same kernel whose tensors have the
  /// same sizes; anything else (another rule, options or sizes, a damaged file) is a
  /// UserError and leaves this optimizer unchanged.
  void load(const std::string& path);

  const runtime::CompiledKernel& kernel() const;
  int threads() const;
  void set_threads(int threads);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace fuseopt

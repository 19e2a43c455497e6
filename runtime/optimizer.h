// fuseopt::Optimizer: one compiled rule applied to a group of tensors of any sizes and count.
// It owns the states, scalar states, step counts and hyper values; step() runs every phase
// over the whole group, cut into chunks spread over a thread pool.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "runtime/kernel_abi.h"

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

  /// Adds a tensor whose parameter and gradient memory the caller owns and keeps alive.
  /// The optimizer allocates its states. Returns the tensor's index.
  size_t add_tensor(float* param, const float* grad, int64_t numel);
  /// Adds a tensor whose parameter and gradient the optimizer allocates (zeroed).
  size_t add_tensor(int64_t numel);
  /// Points a caller-owned tensor at new memory of the same size (states are kept).
  void set_buffers(size_t tensor, float* param, const float* grad);

  size_t tensor_count() const;
  int64_t numel(size_t tensor) const;
  std::span<float> param(size_t tensor);
  /// The gradient; writable only for tensors whose memory the optimizer owns.
  std::span<float> grad(size_t tensor);

  // ---- Stepping ----------------------------------------------------------------------------

  /// One step for every tensor: increments each tensor's step count, initialises states on
  /// a tensor's first step, runs every phase. The group must not be empty. Results do not
  /// depend on the thread count. When a kernel fails (an exception), the step counts stay
  /// and the tensors' values are unspecified.
  void step();
  /// Steps taken by `tensor` (its `t` during the last step). Tensors added later start at 0.
  int64_t step_count(size_t tensor = 0) const;

  void set_hyper(const std::string& name, double value);
  double hyper(const std::string& name) const;
  std::vector<std::string> hyper_names() const;

  // ---- State -------------------------------------------------------------------------------

  /// The names of the states that exist under the kernel's options.
  std::vector<std::string> state_names() const;
  std::vector<std::string> scalar_names() const;
  /// A state's memory. Writing it before the tensor's first step replaces the rule's
  /// initial value (like `fuseopt run --state`).
  std::span<float> state(size_t tensor, const std::string& name);
  std::span<const float> state(size_t tensor, const std::string& name) const;
  /// Replaces a state's values; the same as writing through state().
  void set_state(size_t tensor, const std::string& name, std::span<const float> values);
  /// Scalar states start at their declared value when the tensor is added; set_scalar()
  /// before the first step replaces it.
  double scalar(size_t tensor, const std::string& name) const;
  void set_scalar(size_t tensor, const std::string& name, double value);

  /// Writes every tensor's states, scalars, step count and the hypers to a file. A
  /// restored optimizer continues bit-identically. Parameters are not saved: they belong to
  /// the model. The file is written beside `path` and renamed over it when complete.
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

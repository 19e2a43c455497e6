// A Kernel is one rule specialised for one set of option values: its declarations, a
// sequence of phases (each a host prologue in f64 and one pass over the elements in f32),
// and the scalar-state updates done on the host after the last phase.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "ir/expr.h"

namespace fuseopt::ir {

enum class ReduceOp : uint8_t {
#define FUSEOPT_X(name, spelling) k##name,
  FUSEOPT_IR_REDUCE_OPS(FUSEOPT_X)
#undef FUSEOPT_X
};
const char* spelling(ReduceOp op);

enum class BufferRole : uint8_t { kParam, kGrad, kState };

/// How a state is filled before the first step.
struct StateInit {
  enum class Kind : uint8_t { kNumber, kParam, kGrad, kHyper } kind = Kind::kNumber;
  double number = 0;      ///< kNumber
  std::string hyper;      ///< kHyper: the hyper's value at the first step
};

struct BufferDecl {
  std::string name;  ///< "param", "grad", or the state's name
  BufferRole role = BufferRole::kState;
  /// Loads widen exactly; the step's final value is rounded to it when stored.
  StorageType storage = StorageType::kF32;
  StateInit init;    ///< kState only
  /// Stores round stochastically (bf16 and f16 only; never the grad, which is not stored),
  /// drawing from the stream of rounding_stream_key(rounding_seed, t, stream).
  bool stochastic = false;
};

/// The hyper every kernel with a stochastic store has: the seed of its rounding stream (an
/// integer in [0, 2^53), default 0). Changing it never recompiles.
inline constexpr const char* kRoundingSeedHyper = "rounding_seed";

struct HyperDecl {
  std::string name;
  double default_value = 0;
};

/// A per-tensor scalar kept across steps (float64), e.g. NAdam's running product.
struct ScalarStateDecl {
  std::string name;
  double init = 0;
};

/// A named host temporary: `%N = value`, value of type f64 or bool.
struct ScalarDef {
  std::string name;
  Expr value;
};

/// A per-tensor reduction: `%rN = op over elements of body`, body f32; the result is f64.
struct Reduction {
  std::string name;
  ReduceOp op = ReduceOp::kSum;
  Expr body;
};

/// Writes `value` to buffer `target` (element, f32) or to scalar state `target` (f64).
struct Store {
  std::string target;
  Expr value;
};

/// One pass over the elements, preceded by host work. Loads read the values buffers had
/// when the step started: only the last phase stores, and each element is loaded before it
/// is stored, so earlier phases see unchanged buffers.
struct Phase {
  std::vector<ScalarDef> prologue;
  std::vector<Reduction> reductions;
  std::vector<Store> stores;
};

/// A compile-time option value (booleans are 0 or 1).
struct OptionValue {
  std::string name;
  int64_t value = 0;
  bool is_bool = true;
};

/// Loss scaling and gradient clipping applied to a kernel's gradient (ir/grad_transform.h).
struct GradTransform {
  bool unscale = false;    ///< divide by the grad_scale hyper; skip steps with inf or NaN
  bool clip_norm = false;  ///< clip to the max_grad_norm hyper by the group's global norm
  bool any() const { return unscale || clip_norm; }
};

struct Kernel {
  std::string rule;                  ///< the rule's name
  std::vector<OptionValue> options;  ///< every option of the rule, in declaration order
  std::vector<HyperDecl> hypers;
  std::vector<BufferDecl> buffers;   ///< param, grad, then the states that exist
  std::vector<ScalarStateDecl> scalars;
  std::vector<Phase> phases;          ///< at least one
  std::vector<Store> scalar_stores;   ///< host, after the last phase, to scalar states
  /// False straight after lowering: one phase whose reductions and stores may use each
  /// other's results. The phase-splitting pass makes it true.
  bool is_split = false;
  GradTransform grad_transform;       ///< set by apply_grad_transform()

  /// A name that spells the configuration, e.g. "adam_amsgrad1_maximize0".
  std::string config_name() const;
  const BufferDecl* find_buffer(const std::string& name) const;
  int buffer_index(const std::string& name) const;  ///< -1 when absent
  int hyper_index(const std::string& name) const;
  int scalar_index(const std::string& name) const;
  bool has_stochastic_store() const;
};

/// Sets how buffer `name` is stored (a rule's declaration, or a per-run choice such as
/// CompileOptions::storage), adding the rounding_seed hyper when a store becomes stochastic.
/// Throws UserError for an unknown buffer, stochastic f32 storage or a stochastic grad.
void set_buffer_storage(Kernel& kernel, const std::string& name, StorageType storage,
                        bool stochastic);

/// The stream number of buffer `buffer` of the `tensor`-th tensor of a group: the tensors
/// of a group and the buffers of a tensor draw from different streams.
constexpr uint32_t rounding_stream(uint64_t tensor, size_t buffer) {
  return static_cast<uint32_t>(tensor << 6) ^ static_cast<uint32_t>(buffer);
}

/// The scalar names a phase's element code reads (hypers, `t`, `numel`, scalar states,
/// temporaries, reductions of earlier phases), sorted by name. Backends receive their values
/// in this order, rounded to f32 (see runtime/kernel_abi.h).
std::vector<std::string> phase_scalar_inputs(const Phase& phase);

}  // namespace fuseopt::ir

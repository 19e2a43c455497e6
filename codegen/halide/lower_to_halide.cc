// Lowers one IR phase to a Halide pipeline. Element code becomes one f32 Halide expression
// per store and per reduction body, translated op by op with the arithmetic of ir/eval.cc;
// the stores become one Tuple-valued Func over the chunk (pure definition, updated in place)
// and each reduction a 0-D float64 Func accumulated in a fixed order.
//
// Storage types (docs/language.md, "Storage types and rounding"): a bf16 or f16 buffer is a
// UInt(16) buffer of its bits. Loads widen exactly to f32 (storage_conversions.h) where the
// element code reads them; stores round the f32 value once, as the last operation of the
// step, to nearest even or, for a stochastic buffer, with the random word of the element's
// index in its tensor. That index is first_index + x, with first_index an Int(64) argument
// and one UInt(32) stream key argument per stochastically stored buffer, after the scalars
// (the calling convention is in cpu_codegen.h).
#include "codegen/halide/lower_to_halide.h"

#include <limits>
#include <map>
#include <set>
#include <unordered_map>

#include "codegen/halide/storage_conversions.h"
#include "ir/printer.h"
#include "support/error.h"

namespace fuseopt::codegen {
namespace {

using Halide::Expr;
using Halide::Func;

// NaN-propagating min and max exactly as ir/eval.cc defines them: a NaN operand is returned
// (the left one first), otherwise `b < a ? b : a` and `a < b ? b : a`. Halide's min/max
// would differ on NaN and on the sign of equal zeros.
Expr nan_min(const Expr& a, const Expr& b) {
  return Halide::select(!Halide::is_nan(a) && (b < a || Halide::is_nan(b)), b, a);
}

Expr nan_max(const Expr& a, const Expr& b) {
  return Halide::select(!Halide::is_nan(a) && (a < b || Halide::is_nan(b)), b, a);
}

// a <= b and a >= b, false when either is NaN. Halide's simplifier rewrites a <= b into
// !(b < a), which is true for NaN; is_nan is opaque to it.
Expr ordered_le(const Expr& a, const Expr& b) {
  return !(b < a) && !Halide::is_nan(a) && !Halide::is_nan(b);
}

// The C library's float function, as docs/language.md defines exp, log and pow on elements
// (and the interpreter computes them), through a wrapper linked into the kernel object
// (cpu_codegen.cc) that LLVM cannot rewrite. Halide's own exp/log/pow are polynomials that
// give 0 for exp(NaN), a number for log(NaN) and pow(inf, 0.5), and err by hundreds of ulps
// near the ends of their ranges. Vectors call the function once per lane.
Expr c_library_call(const char* function, const std::vector<Expr>& args) {
  return Halide::Internal::Call::make(Halide::Float(32), function, args,
                                      Halide::Internal::Call::PureExtern);
}

Expr reduce_identity(ir::ReduceOp op) {
  switch (op) {
    case ir::ReduceOp::kSum:
      return Halide::Internal::make_const(Halide::Float(64), 0.0);
    case ir::ReduceOp::kMax:
      return Halide::Internal::make_const(Halide::Float(64),
                                          -std::numeric_limits<double>::infinity());
  }
  FUSEOPT_UNREACHABLE("unknown reduce op");
}

Expr reduce_combine(ir::ReduceOp op, const Expr& accumulated, const Expr& value) {
  switch (op) {
    case ir::ReduceOp::kSum:
      return accumulated + value;
    case ir::ReduceOp::kMax:
      return nan_max(accumulated, value);
  }
  FUSEOPT_UNREACHABLE("unknown reduce op");
}

// A Halide name for an IR scalar name (`%3`, `%r0`, `lr`), unique among `taken`.
std::string halide_name(const std::string& prefix, const std::string& name,
                        std::set<std::string>& taken) {
  std::string base = prefix;
  for (char c : name) {
    bool ok =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
    base += ok ? c : '_';
  }
  std::string result = base;
  for (int suffix = 1; !taken.insert(result).second; ++suffix) {
    result = base + "_" + std::to_string(suffix);
  }
  return result;
}

// Translates element expressions (f32 and mask) into Halide expressions over one Var.
class ElementLowering {
 public:
  ElementLowering(const ir::Kernel& kernel, const std::vector<Halide::ImageParam>& buffers,
                  const std::map<std::string, Halide::Param<float>>& scalars, Halide::Var x)
      : kernel_(kernel), buffers_(buffers), scalars_(scalars), x_(std::move(x)) {}

  Expr lower(const ir::Expr& e) {
    auto found = done_.find(e.get());
    if (found != done_.end()) return found->second;
    Expr result = lower_node(e);
    keep_alive_.push_back(e);
    done_.emplace(e.get(), result);
    return result;
  }

 private:
  Expr lower_node(const ir::Expr& e) {
    switch (e->kind) {
      case ir::NodeKind::kConst:
      case ir::NodeKind::kVar:
        fail(e, "a scalar used as an element value");
      case ir::NodeKind::kLoad: {
        int index = kernel_.buffer_index(e->name);
        FUSEOPT_CHECK(index >= 0, "halide codegen: load of unknown buffer '" + e->name + "'");
        // A two-byte buffer holds bits: widened exactly, once per element (the expression
        // is shared by every use of the load).
        const Expr stored =
            Halide::Internal::Call::make(buffers_[static_cast<size_t>(index)].parameter(), {x_});
        return widen_from_storage(stored, kernel_.buffers[static_cast<size_t>(index)].storage);
      }
      case ir::NodeKind::kCast:
        return e->type == ir::Type::kF32 ? scalar_as_float(e->operands[0])
                                         : scalar_as_bool(e->operands[0]);
      case ir::NodeKind::kUnary:
        return unary(e->unary_op, lower(e->operands[0]));
      case ir::NodeKind::kBinary:
        return binary(e->binary_op, lower(e->operands[0]), lower(e->operands[1]));
      case ir::NodeKind::kSelect: {
        const ir::Expr& cond = e->operands[0];
        Expr condition = ir::is_scalar(cond) ? scalar_as_bool(cond) : lower(cond);
        return Halide::select(condition, lower(e->operands[1]), lower(e->operands[2]));
      }
    }
    FUSEOPT_UNREACHABLE("unknown IR node kind");
  }

  // An f64 scalar where element code reads it: the run-time argument (already rounded to
  // f32 by the caller) or the constant rounded to f32, as the interpreter broadcasts it.
  Expr scalar_as_float(const ir::Expr& e) {
    FUSEOPT_CHECK(e->type == ir::Type::kF64, "halide codegen: f32 cast of " + ir::print_expr(e));
    if (e->kind == ir::NodeKind::kConst) return Expr(static_cast<float>(e->value));
    return scalar_param(e);
  }

  // A bool scalar: a float argument that is 0 or 1, or a constant.
  Expr scalar_as_bool(const ir::Expr& e) {
    FUSEOPT_CHECK(e->type == ir::Type::kBool, "halide codegen: mask cast of " + ir::print_expr(e));
    if (e->kind == ir::NodeKind::kConst) return Halide::Internal::make_bool(e->value != 0);
    return scalar_param(e) != 0.0f;
  }

  Expr scalar_param(const ir::Expr& e) {
    if (e->kind != ir::NodeKind::kVar) {
      fail(e,
           "element code reads a scalar expression that was not hoisted (run "
           "ir::optimize first)");
    }
    auto found = scalars_.find(e->name);
    FUSEOPT_CHECK(found != scalars_.end(),
                  "halide codegen: scalar '" + e->name + "' is not a phase input");
    return found->second;
  }

  static Expr unary(ir::UnaryOp op, const Expr& a) {
    switch (op) {
      case ir::UnaryOp::kNeg: {
        // Flip the sign bit, as C++'s -x does: Halide spells -x as 0 - x, which gives +0
        // for +0 and keeps a NaN's sign.
        Expr sign_bit = Halide::Internal::make_const(Halide::UInt(32), uint64_t{0x80000000u});
        return Halide::reinterpret(Halide::Float(32),
                                   Halide::reinterpret(Halide::UInt(32), a) ^ sign_bit);
      }
      case ir::UnaryOp::kSqrt:
        return Halide::sqrt(a);
      case ir::UnaryOp::kRsqrt:
        return 1.0f / Halide::sqrt(a);
      case ir::UnaryOp::kExp:
        return c_library_call("fuseopt_expf", {a});
      case ir::UnaryOp::kLog:
        return c_library_call("fuseopt_logf", {a});
      case ir::UnaryOp::kAbs:
        return Halide::abs(a);
      case ir::UnaryOp::kSign:
        return Halide::select(a > 0.0f, 1.0f, Halide::select(a < 0.0f, -1.0f, a));
      case ir::UnaryOp::kIsFinite:
        return Halide::is_finite(a);
      case ir::UnaryOp::kNot:
        return !a;
    }
    FUSEOPT_UNREACHABLE("unknown unary op");
  }

  static Expr binary(ir::BinaryOp op, const Expr& a, const Expr& b) {
    switch (op) {
      case ir::BinaryOp::kAdd:
        return a + b;
      case ir::BinaryOp::kSub:
        return a - b;
      case ir::BinaryOp::kMul:
        return a * b;
      case ir::BinaryOp::kDiv:
        return a / b;
      case ir::BinaryOp::kPow:
        return c_library_call("fuseopt_powf", {a, b});
      case ir::BinaryOp::kMin:
        return nan_min(a, b);
      case ir::BinaryOp::kMax:
        return nan_max(a, b);
      case ir::BinaryOp::kLt:
        return a < b;
      case ir::BinaryOp::kLe:
        return ordered_le(a, b);
      case ir::BinaryOp::kGt:
        return a > b;
      case ir::BinaryOp::kGe:
        return ordered_le(b, a);
      case ir::BinaryOp::kEq:
        return a == b;
      case ir::BinaryOp::kNe:
        return a != b;
      case ir::BinaryOp::kAnd:
        return a && b;
      case ir::BinaryOp::kOr:
        return a || b;
    }
    FUSEOPT_UNREACHABLE("unknown binary op");
  }

  [[noreturn]] void fail(const ir::Expr& e, const std::string& what) const {
    FUSEOPT_UNREACHABLE("halide codegen: kernel " + kernel_.config_name() + ": " + what + ": " +
                        ir::print_expr(e));
  }

  const ir::Kernel& kernel_;
  const std::vector<Halide::ImageParam>& buffers_;
  const std::map<std::string, Halide::Param<float>>& scalars_;
  Halide::Var x_;
  std::unordered_map<const ir::ExprNode*, Expr> done_;
  std::vector<ir::Expr> keep_alive_;  // the keys of done_, so no address is reused
};

// A Func with exactly this name. Func(name) appends "$N" to a name used before in the
// process, which would make a kernel's symbols, metadata and messages depend on what was
// compiled earlier; names are unique within each pipeline, which is all Halide needs.
Func named_func(const std::string& name) { return Func(Halide::Internal::Function(name)); }

// One value per element of a Func that may hold one value or a Tuple.
Expr tuple_element(const Func& f, const Halide::Var& x, size_t i) {
  return f.outputs() == 1 ? Expr(f(x)) : Expr(f(x)[static_cast<int>(i)]);
}

}  // namespace

std::vector<size_t> stochastic_store_buffers(const ir::Kernel& kernel, size_t phase_index) {
  std::set<size_t> buffers;
  for (const ir::Store& store : kernel.phases.at(phase_index).stores) {
    const int b = kernel.buffer_index(store.target);
    FUSEOPT_CHECK(b >= 0, "halide codegen: store to unknown buffer '" + store.target + "'");
    const ir::BufferDecl& decl = kernel.buffers[static_cast<size_t>(b)];
    if (decl.stochastic && decl.storage != StorageType::kF32)
      buffers.insert(static_cast<size_t>(b));
  }
  return {buffers.begin(), buffers.end()};
}

HalidePhase lower_phase_to_halide(const ir::Kernel& kernel, size_t phase_index,
                                  const CpuSchedule& schedule) {
  FUSEOPT_CHECK(kernel.is_split, "halide codegen needs a kernel split into phases");
  FUSEOPT_CHECK(phase_index < kernel.phases.size(),
                "halide codegen: no phase " + std::to_string(phase_index));
  const ir::Phase& phase = kernel.phases[phase_index];
  FUSEOPT_CHECK(!phase.stores.empty() || !phase.reductions.empty(),
                "halide codegen: phase " + std::to_string(phase_index) + " of " +
                    kernel.config_name() + " has neither stores nor reductions");
  const int vector_width = schedule.vector_width;
  const int unroll = schedule.unroll;
  FUSEOPT_CHECK(vector_width >= 1 && kReductionLanes % vector_width == 0,
                "halide codegen: vector width " + std::to_string(vector_width) + " must divide " +
                    std::to_string(kReductionLanes));
  FUSEOPT_CHECK(unroll >= 1, "halide codegen: unroll must be at least 1");

  HalidePhase result;
  std::set<std::string> taken;
  std::string schedule_text;

  // Arguments: every buffer (1-D of its storage type, min 0, one extent for all), then the
  // scalars, then, when the phase rounds stochastically, the first index and the keys.
  std::vector<Halide::ImageParam> buffers;
  for (const ir::BufferDecl& decl : kernel.buffers) {
    Halide::ImageParam buffer(halide_storage_type(decl.storage), 1,
                              halide_name("in_", decl.name, taken));
    buffer.dim(0).set_min(0);
    if (!buffers.empty()) buffer.dim(0).set_extent(buffers[0].dim(0).extent());
    buffers.push_back(buffer);
    result.arguments.push_back(buffer);
  }
  const Expr count = buffers[0].dim(0).extent();
  std::map<std::string, Halide::Param<float>> scalars;
  for (const std::string& name : ir::phase_scalar_inputs(phase)) {
    Halide::Param<float> param(halide_name("s_", name, taken));
    scalars.emplace(name, param);
    result.arguments.push_back(param);
  }
  // The random words of stochastic stores: element x of the chunk is element
  // first_index + x of its tensor; each stochastically stored buffer has its own stream.
  const std::vector<size_t> stochastic = stochastic_store_buffers(kernel, phase_index);
  std::map<size_t, Halide::Param<uint32_t>> rounding_keys;
  Halide::Param<int64_t> first_index(halide_name("", "first_index", taken));
  if (!stochastic.empty()) {
    result.arguments.push_back(first_index);
    for (size_t b : stochastic) {
      Halide::Param<uint32_t> key(halide_name("key_", kernel.buffers[b].name, taken));
      rounding_keys.emplace(b, key);
      result.arguments.push_back(key);
    }
  }

  Halide::Var x("x");
  ElementLowering lowering(kernel, buffers, scalars, x);
  std::vector<Func> outputs;

  // Reductions: per lane l of kReductionLanes, the partial over elements
  // j * kReductionLanes + l in order of j; then the elements past the last full row, in
  // order; then the lanes combined in lane order and the tail last.
  std::vector<Expr> reduction_dependencies;
  std::vector<Func> reduction_outputs;
  for (size_t k = 0; k < phase.reductions.size(); ++k) {
    const ir::Reduction& reduction = phase.reductions[k];
    const std::string name = halide_name("", "reduction_" + reduction.name, taken);
    Func body = named_func(name + "_body");
    body(x) = Halide::cast<double>(lowering.lower(reduction.body));

    Halide::Var lane("lane"), lane_outer("lane_outer"), lane_inner("lane_inner");
    Func lanes = named_func(name + "_lanes");
    lanes(lane) = reduce_identity(reduction.op);
    Halide::RDom row(0, count / kReductionLanes, name + "_row");
    lanes(lane) = reduce_combine(reduction.op, lanes(lane), body(row.x * kReductionLanes + lane));

    Func tail = named_func(name + "_tail");
    tail() = reduce_identity(reduction.op);
    Halide::RDom rest(count / kReductionLanes * kReductionLanes, count % kReductionLanes,
                      name + "_rest");
    tail() = reduce_combine(reduction.op, tail(), body(rest.x));

    Func out = named_func(name);
    Expr combined = lanes(0);
    for (int l = 1; l < kReductionLanes; ++l)
      combined = reduce_combine(reduction.op, combined, lanes(l));
    out() = reduce_combine(reduction.op, combined, tail());

    lanes.bound(lane, 0, kReductionLanes).compute_root().vectorize(lane, vector_width);
    lanes.update()
        .split(lane, lane_outer, lane_inner, vector_width)
        .reorder(lane_inner, lane_outer, row.x)
        .vectorize(lane_inner)
        .unroll(lane_outer);
    tail.compute_root();
    schedule_text += name + "_lanes.bound(lane, 0, " + std::to_string(kReductionLanes) +
                     ").compute_root().vectorize(lane, " + std::to_string(vector_width) + ");\n";
    schedule_text += name + "_lanes.update().split(lane, lane_outer, lane_inner, " +
                     std::to_string(vector_width) + ").reorder(lane_inner, lane_outer, " + name +
                     "_row).vectorize(lane_inner).unroll(lane_outer);\n";
    schedule_text += name + "_tail.compute_root();\n";

    reduction_dependencies.push_back(Halide::cast<float>(lanes(0)) + Halide::cast<float>(tail()));
    result.funcs.insert(result.funcs.end(), {body, lanes, tail, out});
    reduction_outputs.push_back(out);
  }

  // Stores: `values` computes every stored value of one vector of elements before `stores`
  // writes any, so an output that aliases an input never feeds a later value. (A pure Tuple
  // Func alone stores its first element, then reloads inputs for the next.)
  if (!phase.stores.empty()) {
    std::vector<Expr> values;
    for (const ir::Store& store : phase.stores) {
      FUSEOPT_CHECK(kernel.find_buffer(store.target) != nullptr,
                    "halide codegen: store to unknown buffer '" + store.target + "'");
      values.push_back(lowering.lower(store.value));
    }
    const size_t store_count = values.size();
    // Reading the reductions' partials here (a value that is never stored) makes Halide
    // compute them before the stores: they must see the buffers as the step started.
    values.insert(values.end(), reduction_dependencies.begin(), reduction_dependencies.end());
    Func computed = named_func("values");
    if (values.size() == 1) {
      computed(x) = values[0];
    } else {
      computed(x) = Halide::Tuple(values);
    }
    // Each value rounded to its buffer's storage type, the step's last operation.
    std::vector<Expr> stored;
    for (size_t i = 0; i < store_count; ++i) {
      const auto b = static_cast<size_t>(kernel.buffer_index(phase.stores[i].target));
      const ir::BufferDecl& decl = kernel.buffers[b];
      const Expr value = tuple_element(computed, x, i);
      auto key = rounding_keys.find(b);
      if (key == rounding_keys.end()) {
        stored.push_back(round_to_storage_expr(value, decl.storage));
      } else {
        const Expr random = rounding_random_at_expr(key->second, first_index, x);
        stored.push_back(round_to_storage_expr(value, decl.storage, true, random));
      }
    }
    Func stores = named_func("stores");
    if (stored.size() == 1) {
      stores(x) = stored[0];
    } else {
      stores(x) = Halide::Tuple(stored);
    }
    stores.output_buffers()[0].dim(0).set_min(0).set_extent(count);

    // No .parallel(): the runtime's threads call the function once per chunk. GuardWithIf
    // is the one tail strategy that never recomputes an element, which in-place needs.
    Halide::Var outer("x_outer"), inner("x_inner"), vector("x_vector");
    const std::string v = std::to_string(vector_width);
    if (unroll == 1) {
      stores.split(x, outer, vector, vector_width, Halide::TailStrategy::GuardWithIf)
          .vectorize(vector);
      schedule_text += "stores.split(x, x_outer, x_vector, " + v +
                       ", TailStrategy::GuardWithIf).vectorize(x_vector);\n";
    } else {
      stores.split(x, outer, inner, vector_width * unroll, Halide::TailStrategy::GuardWithIf)
          .split(inner, inner, vector, vector_width)
          .vectorize(vector)
          .unroll(inner);
      schedule_text += "stores.split(x, x_outer, x_inner, " +
                       std::to_string(vector_width * unroll) +
                       ", TailStrategy::GuardWithIf).split(x_inner, x_inner, x_vector, " + v +
                       ").vectorize(x_vector).unroll(x_inner);\n";
    }
    computed.compute_at(stores, vector);
    schedule_text += "values.compute_at(stores, x_vector);\n";
    result.funcs.insert(result.funcs.end(), {computed, stores});
    outputs.push_back(stores);
  }
  outputs.insert(outputs.end(), reduction_outputs.begin(), reduction_outputs.end());
  result.pipeline = Halide::Pipeline(outputs);
  result.schedule = schedule_text;
  return result;
}

}  // namespace fuseopt::codegen

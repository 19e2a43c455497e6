// IR -> CUDA C. Each phase becomes an element function (the IR's DAG as straight-line f32
// code, shared nodes computed once) and a kernel that walks the chunk map: vector loads of
// vector_width elements where a chunk's pointers allow (16 bytes of f32, 8 of bf16/f16), a
// scalar loop otherwise and for the tail, and per-chunk reduction partials combined in a
// fixed tree order. bf16 and f16 buffers hold two-byte elements: loads widen them exactly and
// stores round them, to nearest even or stochastically, with the device functions of
// storage_functions.h (the same bits as support/low_precision.h).
#include "codegen/cuda/cuda_source.h"

#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <sstream>
#include <unordered_map>

#include "codegen/cuda/storage_functions.h"
#include "ir/grad_transform.h"
#include "support/error.h"

namespace fuseopt::codegen {
namespace {

// ---- The tensor table ---------------------------------------------------------------------

struct LayoutField {
  const char* c_type;    // as declared in the generated code
  const char* name;
  const char* sig_type;  // in the layout signature
  int size;              // bytes of one element (also its alignment)
  size_t count;          // 1, or the array length
};

struct LayoutStruct {
  const char* c_name;
  const char* sig_name;
  std::vector<LayoutField> fields;
};

size_t align_up(size_t value, size_t alignment) {
  return (value + alignment - 1) / alignment * alignment;
}

// The three structures of the table. The order of fields is the ABI.
std::vector<LayoutStruct> table_structs(size_t buffer_count) {
  return {
      {"FuseoptTable",
       "table",
       {{"long long", "tensors_offset", "i64", 8, 1},
        {"long long", "chunks_offset", "i64", 8, 1},
        {"long long", "tensor_count", "i64", 8, 1},
        {"long long", "chunk_count", "i64", 8, 1}}},
      {"FuseoptTensor",
       "tensor",
       {{"long long", "numel", "i64", 8, 1}, {"void*", "buffers", "ptr", 8, buffer_count}}},
      // Each chunk carries its buffers' addresses (the tensor's plus `start`), so a block
      // needs one load of table data per chunk, which it prefetches a chunk ahead.
      {"FuseoptChunk",
       "chunk",
       {{"unsigned int", "tensor", "u32", 4, 1},
        {"unsigned int", "count", "u32", 4, 1},
        {"long long", "start", "i64", 8, 1},
        {"void*", "buffers", "ptr", 8, buffer_count}}},
  };
}

// Natural alignment, as both the host and the device compilers lay structures out.
std::vector<size_t> field_offsets(const LayoutStruct& s, size_t& size) {
  std::vector<size_t> offsets;
  size_t offset = 0;
  size_t max_align = 1;
  for (const LayoutField& f : s.fields) {
    offset = align_up(offset, static_cast<size_t>(f.size));
    offsets.push_back(offset);
    offset += static_cast<size_t>(f.size) * f.count;
    max_align = std::max(max_align, static_cast<size_t>(f.size));
  }
  size = align_up(offset, max_align);
  return offsets;
}

// ---- Text helpers -------------------------------------------------------------------------

// A float literal that rounds to exactly `value` (round-trip shortest form).
std::string float_literal(float value) {
  if (std::isnan(value)) return "__int_as_float(0x7fc00000)";
  if (std::isinf(value)) return value > 0 ? "__int_as_float(0x7f800000)" : "__int_as_float(0xff800000)";
  char buffer[64];
  auto [end, ec] = std::to_chars(buffer, buffer + sizeof(buffer), value);
  FUSEOPT_CHECK(ec == std::errc(), "to_chars failed for a float constant");
  std::string text(buffer, end);
  if (text.find_first_of(".e") == std::string::npos) text += ".0";
  text += "f";
  return value < 0 || (value == 0 && std::signbit(value)) ? "(" + text + ")" : text;
}

// A C identifier built from arbitrary text (rule and option names are identifiers already;
// integer option values may carry a '-').
std::string identifier(const std::string& text) {
  std::string out;
  for (char c : text) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
    out += ok ? c : '_';
  }
  if (out.empty() || (out[0] >= '0' && out[0] <= '9')) out = "k" + out;
  return out;
}

class Writer {
 public:
  void line(const std::string& text = "") {
    if (!text.empty()) out_ << std::string(static_cast<size_t>(indent_) * 2, ' ') << text;
    out_ << "\n";
  }
  void open(const std::string& text) {
    line(text);
    ++indent_;
  }
  // Opens a body whose header was written with line().
  void indent() { ++indent_; }
  void close(const std::string& text = "}") {
    --indent_;
    line(text);
  }
  // #pragma lines start in column 0.
  void pragma(const std::string& text) { out_ << text << "\n"; }
  std::string str() const { return out_.str(); }

 private:
  std::ostringstream out_;
  int indent_ = 0;
};

// ---- One phase ----------------------------------------------------------------------------

// The element function of one phase: the IR DAG as straight-line code.
class ElementEmitter {
 public:
  ElementEmitter(const ir::Kernel& kernel, const std::vector<std::string>& scalar_inputs)
      : kernel_(kernel) {
    for (size_t i = 0; i < scalar_inputs.size(); ++i) scalar_index_[scalar_inputs[i]] = i;
  }

  // Emits the statements computing `e` and returns the expression naming its value.
  std::string value(const ir::Expr& e) {
    auto found = names_.find(e.get());
    if (found != names_.end()) return found->second;
    std::string result;
    switch (e->kind) {
      case ir::NodeKind::kConst:
      case ir::NodeKind::kVar:
        FUSEOPT_UNREACHABLE("cuda codegen: host value '" + describe(e) +
                            "' used as an element without a cast");
        break;
      case ir::NodeKind::kLoad: {
        int buffer = kernel_.buffer_index(e->name);
        FUSEOPT_CHECK(buffer >= 0, "cuda codegen: load of unknown buffer '" + e->name + "'");
        loaded_.push_back(buffer);
        result = "ld_" + identifier(e->name);
        break;
      }
      case ir::NodeKind::kCast:
        result = e->type == ir::Type::kMask ? scalar_condition(e->operands[0])
                                            : scalar_number(e->operands[0]);
        break;
      case ir::NodeKind::kUnary:
        result = define(e, unary(e->unary_op, value(e->operands[0])));
        break;
      case ir::NodeKind::kBinary: {
        std::string a = value(e->operands[0]);
        std::string b = value(e->operands[1]);
        result = define(e, binary(e->binary_op, a, b));
        break;
      }
      case ir::NodeKind::kSelect: {
        std::string cond = ir::is_scalar(e->operands[0]) ? scalar_condition(e->operands[0])
                                                         : value(e->operands[0]);
        std::string a = value(e->operands[1]);
        std::string b = value(e->operands[2]);
        result = define(e, cond + " ? " + a + " : " + b);
        break;
      }
    }
    names_.emplace(e.get(), result);
    keep_alive_.push_back(e);
    return result;
  }

  const std::vector<std::string>& statements() const { return statements_; }
  // Buffer indices loaded, in first-use order, possibly repeated.
  const std::vector<int>& loaded() const { return loaded_; }

 private:
  static std::string describe(const ir::Expr& e) {
    return e->kind == ir::NodeKind::kVar ? e->name : std::string(ir::spelling(e->kind));
  }

  // Scalars reach element code only as constants and names of the phase's scalar inputs:
  // hoist_scalars moves every scalar computation to the host prologue.
  std::string scalar_number(const ir::Expr& e) {
    if (e->kind == ir::NodeKind::kConst) return float_literal(static_cast<float>(e->value));
    if (e->kind == ir::NodeKind::kVar) return scalar_ref(e);
    unhoisted_scalar(e);
  }

  std::string scalar_condition(const ir::Expr& e) {
    if (e->kind == ir::NodeKind::kConst) return e->value != 0 ? "true" : "false";
    if (e->kind == ir::NodeKind::kVar) return "(" + scalar_ref(e) + " != 0.0f)";
    unhoisted_scalar(e);
  }

  [[noreturn]] static void unhoisted_scalar(const ir::Expr& e) {
    FUSEOPT_UNREACHABLE(std::string("cuda codegen: element code computes a scalar ") +
                        ir::spelling(e->kind) +
                        "; run ir::optimize first (hoist_scalars leaves only names)");
  }

  std::string scalar_ref(const ir::Expr& var) {
    auto found = scalar_index_.find(var->name);
    FUSEOPT_CHECK(found != scalar_index_.end(),
                  "cuda codegen: '" + var->name + "' is not a scalar input of its phase");
    return "sc.s" + std::to_string(found->second);
  }

  std::string define(const ir::Expr& e, const std::string& expression) {
    std::string name = "e" + std::to_string(next_++);
    const char* type = ir::is_boolean(e->type) ? "bool" : "float";
    statements_.push_back("const " + std::string(type) + " " + name + " = " + expression + ";");
    return name;
  }

  // f32 semantics of ir/eval.cc; the switches have no default, so a new op breaks the build.
  static std::string unary(ir::UnaryOp op, const std::string& x) {
    switch (op) {
      case ir::UnaryOp::kNeg:
        return "-" + x;
      case ir::UnaryOp::kSqrt:
        return "sqrtf(" + x + ")";
      case ir::UnaryOp::kRsqrt:
        return "1.0f / sqrtf(" + x + ")";
      case ir::UnaryOp::kExp:
        return "expf(" + x + ")";
      case ir::UnaryOp::kLog:
        return "logf(" + x + ")";
      case ir::UnaryOp::kAbs:
        return "fabsf(" + x + ")";
      case ir::UnaryOp::kSign:
        return "fuseopt_sign(" + x + ")";
      case ir::UnaryOp::kIsFinite:
        return "fuseopt_isfinite(" + x + ")";
      case ir::UnaryOp::kNot:
        return "!" + x;
    }
    FUSEOPT_UNREACHABLE("cuda codegen: unknown unary op");
  }

  static std::string binary(ir::BinaryOp op, const std::string& a, const std::string& b) {
    switch (op) {
      case ir::BinaryOp::kAdd:
        return a + " + " + b;
      case ir::BinaryOp::kSub:
        return a + " - " + b;
      case ir::BinaryOp::kMul:
        return a + " * " + b;
      case ir::BinaryOp::kDiv:
        return a + " / " + b;
      case ir::BinaryOp::kPow:
        return "powf(" + a + ", " + b + ")";
      case ir::BinaryOp::kMin:
        return "fuseopt_min(" + a + ", " + b + ")";
      case ir::BinaryOp::kMax:
        return "fuseopt_max(" + a + ", " + b + ")";
      case ir::BinaryOp::kLt:
        return a + " < " + b;
      case ir::BinaryOp::kLe:
        return a + " <= " + b;
      case ir::BinaryOp::kGt:
        return a + " > " + b;
      case ir::BinaryOp::kGe:
        return a + " >= " + b;
      case ir::BinaryOp::kEq:
        return a + " == " + b;
      case ir::BinaryOp::kNe:
        return a + " != " + b;
      case ir::BinaryOp::kAnd:
        return a + " && " + b;
      case ir::BinaryOp::kOr:
        return a + " || " + b;
    }
    FUSEOPT_UNREACHABLE("cuda codegen: unknown binary op");
  }

  const ir::Kernel& kernel_;
  std::unordered_map<std::string, size_t> scalar_index_;
  std::unordered_map<const ir::ExprNode*, std::string> names_;
  std::vector<ir::Expr> keep_alive_;
  std::vector<std::string> statements_;
  std::vector<int> loaded_;
  int next_ = 0;
};

const char* reduce_identity_text(ir::ReduceOp op) {
  switch (op) {
    case ir::ReduceOp::kSum:
      return "0.0";
    case ir::ReduceOp::kMax:
      return "__longlong_as_double(0xfff0000000000000ull)";  // -inf
  }
  FUSEOPT_UNREACHABLE("cuda codegen: unknown reduce op");
}

std::string reduce_step_text(ir::ReduceOp op, const std::string& acc, const std::string& x) {
  switch (op) {
    case ir::ReduceOp::kSum:
      return acc + " += " + x + ";";
    case ir::ReduceOp::kMax:
      return acc + " = fuseopt_max_f64(" + acc + ", " + x + ");";
  }
  FUSEOPT_UNREACHABLE("cuda codegen: unknown reduce op");
}

const char* warp_reduce_function(ir::ReduceOp op) {
  switch (op) {
    case ir::ReduceOp::kSum:
      return "fuseopt_warp_sum";
    case ir::ReduceOp::kMax:
      return "fuseopt_warp_max";
  }
  FUSEOPT_UNREACHABLE("cuda codegen: unknown reduce op");
}

struct PhaseInfo {
  size_t index = 0;
  std::string function;
  std::vector<std::string> scalar_inputs;
  std::vector<int> buffers;          // every buffer the phase loads or stores, kernel order
  std::vector<int> loads;            // buffers loaded, kernel order
  std::vector<int> stores;           // buffers stored, in the phase's store order
  std::vector<std::string> store_values;
  std::vector<std::string> reduction_values;
  std::vector<std::string> statements;
  bool stochastic = false;  // a store rounds stochastically: the kernel reads rounding_keys
};

class SourceGenerator {
 public:
  SourceGenerator(const ir::Kernel& kernel, const CudaLaunchShape& shape)
      : kernel_(kernel), shape_(shape), device_gate_(ir::can_decide_on_device(kernel)) {
    for (const ir::BufferDecl& b : kernel_.buffers) narrow_ = narrow_ || b.storage != StorageType::kF32;
  }

  CudaSource generate() {
    CudaSource source;
    const std::string config = identifier(kernel_.config_name());
    source.file_name = config + ".cu";
    source.table_layout = cuda_table_layout(kernel_.buffers.size());
    header(source.table_layout);
    prelude();
    for (size_t p = 0; p < kernel_.phases.size(); ++p) {
      PhaseInfo info = analyse(p, config + "_p" + std::to_string(p));
      element_function(info);
      kernel_function(info);
      source.phase_functions.push_back(info.function);
    }
    if (device_gate_) {
      source.decide_function = config + "_decide";
      decide_function(source.decide_function);
    }
    source.text = w_.str();
    return source;
  }

 private:
  const std::string& buffer_name(int index) const {
    return kernel_.buffers[static_cast<size_t>(index)].name;
  }

  void header(const std::string& layout) {
    std::string options;
    for (const ir::OptionValue& option : kernel_.options) {
      if (!options.empty()) options += ", ";
      options += option.name + "=" +
                 (option.is_bool ? (option.value != 0 ? "true" : "false")
                                 : std::to_string(option.value));
    }
    w_.line("// Generated by fuseopt from rule '" + kernel_.rule + "'" +
            (options.empty() ? std::string(" (no options)") : " with " + options) +
            " - do not edit.");
    // The grid limit is left out: it is a launch parameter, and the code does not depend on it.
    CudaLaunchShape code_shape = shape_;
    code_shape.grid_limit = 0;
    std::string spelling = code_shape.spelling();
    spelling.resize(spelling.rfind("_g"));
    w_.line("// Kernel " + kernel_.config_name() + ", CUDA launch shape " + spelling +
            " (any grid).");
    std::string flags;
    for (const std::string& option : cuda_exact_math_options()) flags += " " + option;
    w_.line("// NVRTC options:" + flags);
    w_.line("// Tensor table: " + layout);
    w_.line();
  }

  void prelude() {
    w_.line("// ---- The tensor table (runtime/cuda/tensor_table.h builds it) ----");
    for (const LayoutStruct& s : table_structs(kernel_.buffers.size())) {
      size_t size = 0;
      std::vector<size_t> offsets = field_offsets(s, size);
      w_.open(std::string("struct ") + s.c_name + " {");
      for (size_t i = 0; i < s.fields.size(); ++i) {
        const LayoutField& f = s.fields[i];
        std::string decl = std::string(f.c_type) + " " + f.name;
        if (f.count != 1 || std::strcmp(f.sig_type, "ptr") == 0) {
          decl += "[" + std::to_string(f.count) + "]";
        }
        decl += ";  // @" + std::to_string(offsets[i]);
        if (std::strcmp(f.name, "buffers") == 0) {
          std::string names;
          for (const ir::BufferDecl& b : kernel_.buffers) names += (names.empty() ? "" : ", ") + b.name;
          decl += ": " + names;
        }
        w_.line(decl);
      }
      w_.close("};");
      // NVRTC has no offsetof; the size and alignment catch padding, and the offsets above
      // come from the same table as cuda_table_layout().
      w_.line("static_assert(sizeof(" + std::string(s.c_name) + ") == " + std::to_string(size) +
              " && alignof(" + s.c_name + ") == 8, \"tensor table layout\");");
    }
    w_.line();
    w_.line("// ---- The step's gate (GroupArgs::gate): a gradient transform decided on the device ----");
    w_.open("struct FuseoptGate {");
    w_.line("double skip;        // @0: 1 when the step is skipped (loss scaling found an inf or NaN)");
    w_.line("double clip;        // @8: the clip factor, a float32 value (1 without clipping)");
    w_.line("double total_norm;  // @16: the global norm of the unscaled gradients");
    w_.line("double bad_scale;   // @24: 1 when *grad_scale was not positive and finite");
    w_.close("};");
    w_.line("static_assert(sizeof(FuseoptGate) == " + std::to_string(kCudaGateBytes) +
            ", \"gate layout\");");
    w_.line("// The unscale factor of a loss scale, as the host's (f32 of the f64 reciprocal).");
    w_.open("__device__ __forceinline__ float fuseopt_unscale(float scale) {");
    w_.line("return static_cast<float>(1.0 / static_cast<double>(scale));");
    w_.close();
    w_.line();
    if (narrow_) w_.pragma(cuda_storage_functions());
    w_.line("// ---- f32 arithmetic of ir/eval.cc ----");
    w_.line("// min and max propagate a NaN from either side, like the interpreter's.");
    w_.open("__device__ __forceinline__ float fuseopt_min(float a, float b) {");
    w_.line("if (a != a) return a;");
    w_.line("if (b != b) return b;");
    w_.line("return b < a ? b : a;");
    w_.close();
    w_.open("__device__ __forceinline__ float fuseopt_max(float a, float b) {");
    w_.line("if (a != a) return a;");
    w_.line("if (b != b) return b;");
    w_.line("return a < b ? b : a;");
    w_.close();
    w_.open("__device__ __forceinline__ double fuseopt_max_f64(double a, double b) {");
    w_.line("if (a != a) return a;");
    w_.line("if (b != b) return b;");
    w_.line("return a < b ? b : a;");
    w_.close();
    w_.line("// sign(0) keeps the zero's sign; a NaN stays NaN.");
    w_.open("__device__ __forceinline__ float fuseopt_sign(float x) {");
    w_.line("return x > 0.0f ? 1.0f : x < 0.0f ? -1.0f : x;");
    w_.close();
    w_.open("__device__ __forceinline__ bool fuseopt_isfinite(float x) {");
    w_.line("return fabsf(x) <= 3.40282347e+38f;");
    w_.close();
    w_.line("// A hint: fetch the line at `p` into L2 (nothing when compiled for the host).");
    w_.open("__device__ __forceinline__ void fuseopt_prefetch_l2(const void* p) {");
    w_.pragma("#if defined(__CUDA_ARCH__)");
    w_.line("asm volatile(\"prefetch.L2 [%0];\" : : \"l\"(p));");
    w_.pragma("#else");
    w_.line("(void)p;");
    w_.pragma("#endif");
    w_.close();
    w_.line();
    w_.line("// ---- Block reductions: a fixed shuffle tree, the same bits on every run ----");
    w_.open("__device__ __forceinline__ double fuseopt_warp_sum(double v) {");
    w_.pragma("#pragma unroll");
    w_.line("for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);");
    w_.line("return v;");
    w_.close();
    w_.open("__device__ __forceinline__ double fuseopt_warp_max(double v) {");
    w_.pragma("#pragma unroll");
    w_.line("for (int offset = 16; offset > 0; offset >>= 1) v = fuseopt_max_f64(v, __shfl_down_sync(0xffffffffu, v, offset));");
    w_.line("return v;");
    w_.close();
    w_.line();
  }

  PhaseInfo analyse(size_t p, std::string function) {
    const ir::Phase& phase = kernel_.phases[p];
    PhaseInfo info;
    info.index = p;
    info.function = std::move(function);
    info.scalar_inputs = ir::phase_scalar_inputs(phase);
    ElementEmitter emitter(kernel_, info.scalar_inputs);
    for (const ir::Reduction& reduction : phase.reductions) {
      FUSEOPT_CHECK(reduction.body->type == ir::Type::kF32,
                    "cuda codegen: reduction body must be f32");
      info.reduction_values.push_back(emitter.value(reduction.body));
    }
    std::vector<bool> used(kernel_.buffers.size(), false);
    for (const ir::Store& store : phase.stores) {
      int buffer = kernel_.buffer_index(store.target);
      FUSEOPT_CHECK(buffer >= 0, "cuda codegen: store to unknown buffer '" + store.target + "'");
      FUSEOPT_CHECK(store.value->type == ir::Type::kF32, "cuda codegen: a store must be f32");
      info.stores.push_back(buffer);
      info.store_values.push_back(emitter.value(store.value));
      info.stochastic = info.stochastic || kernel_.buffers[static_cast<size_t>(buffer)].stochastic;
      used[static_cast<size_t>(buffer)] = true;
    }
    std::vector<bool> loaded(kernel_.buffers.size(), false);
    for (int buffer : emitter.loaded()) loaded[static_cast<size_t>(buffer)] = true;
    for (size_t b = 0; b < kernel_.buffers.size(); ++b) {
      if (loaded[b]) info.loads.push_back(static_cast<int>(b));
      if (loaded[b] || used[b]) info.buffers.push_back(static_cast<int>(b));
    }
    info.statements = emitter.statements();
    return info;
  }

  std::string scalars_struct(const PhaseInfo& info) const {
    return "FuseoptP" + std::to_string(info.index) + "Scalars";
  }
  std::string element_name(const PhaseInfo& info) const {
    return "fuseopt_p" + std::to_string(info.index) + "_element";
  }

  void element_function(const PhaseInfo& info) {
    const ir::Phase& phase = kernel_.phases[info.index];
    w_.line("// ---- Phase " + std::to_string(info.index) + " ----");
    w_.line("// The phase's scalar inputs, rounded to f32 (booleans 0 or 1).");
    w_.open("struct " + scalars_struct(info) + " {");
    for (size_t i = 0; i < info.scalar_inputs.size(); ++i) {
      w_.line("float s" + std::to_string(i) + ";  // " + info.scalar_inputs[i]);
    }
    w_.close("};");
    w_.line("// One element: loads in, stored values and reduction bodies out.");
    std::vector<std::string> params = {"const " + scalars_struct(info) + "& sc"};
    for (int b : info.loads) params.push_back("float ld_" + identifier(buffer_name(b)));
    for (int b : info.stores) params.push_back("float& st_" + identifier(buffer_name(b)));
    for (size_t r = 0; r < phase.reductions.size(); ++r) {
      params.push_back("float& red" + std::to_string(r));
    }
    w_.line("__device__ __forceinline__ void " + element_name(info) + "(");
    for (size_t i = 0; i < params.size(); ++i) {
      w_.line("    " + params[i] + (i + 1 < params.size() ? "," : ") {"));
    }
    w_.indent();
    for (const std::string& statement : info.statements) w_.line(statement);
    for (size_t s = 0; s < info.stores.size(); ++s) {
      w_.line("st_" + identifier(buffer_name(info.stores[s])) + " = " + info.store_values[s] + ";");
    }
    for (size_t r = 0; r < info.reduction_values.size(); ++r) {
      w_.line("red" + std::to_string(r) + " = " + info.reduction_values[r] + ";  // " +
              phase.reductions[r].name + " = " + ir::spelling(phase.reductions[r].op));
    }
    w_.close();
    w_.line();
  }

  // The call of the element function for one element; `lane` selects the component of a
  // vector ("" for scalars, ".x" ...). Accumulates the reductions.
  void element_call(const PhaseInfo& info, const std::string& index, const std::string& lane) {
    const ir::Phase& phase = kernel_.phases[info.index];
    std::vector<std::string> args = {"sc"};
    for (int b : info.loads) {
      args.push_back(cuda_widen_expression(storage(b), "a_" + identifier(buffer_name(b)) + index + lane));
    }
    for (int b : info.stores) args.push_back("o_" + identifier(buffer_name(b)) + lane);
    for (size_t r = 0; r < phase.reductions.size(); ++r) args.push_back("r" + std::to_string(r));
    std::string call = element_name(info) + "(";
    for (size_t i = 0; i < args.size(); ++i) call += (i ? ", " : "") + args[i];
    w_.line(call + ");");
    for (size_t r = 0; r < phase.reductions.size(); ++r) {
      w_.line(reduce_step_text(phase.reductions[r].op, "acc" + std::to_string(r),
                               "static_cast<double>(r" + std::to_string(r) + ")"));
    }
  }

  StorageType storage(int b) const { return kernel_.buffers[static_cast<size_t>(b)].storage; }
  bool stochastic(int b) const { return kernel_.buffers[static_cast<size_t>(b)].stochastic; }

  // The element values' type in the main loop ("float" for a vector width of 1) or a single
  // float: what the element function computes, whatever the storage.
  std::string vector_type(bool vector) const {
    if (!vector || shape_.vector_width == 1) return "float";
    return shape_.vector_width == 4 ? "float4" : "float2";
  }

  // How buffer `b` is loaded and stored: vectors (float4, or ushort4 = 8 bytes of bf16/f16)
  // or single elements.
  std::string memory_type(int b, bool vector) const {
    if (storage(b) == StorageType::kF32) return vector_type(vector);
    if (!vector || shape_.vector_width == 1) return cuda_storage_c_type(storage(b));
    return shape_.vector_width == 4 ? "ushort4" : "ushort2";
  }

  // The pointer expression for buffer `b` seen as vectors or elements.
  std::string pointer(int b, bool vector, bool write) const {
    std::string p = "p_" + identifier(buffer_name(b));
    if (!vector || shape_.vector_width == 1) return p;
    return "reinterpret_cast<" + std::string(write ? "" : "const ") + memory_type(b, true) +
           "*>(" + p + ")";
  }

  // The random word of element `offset` (an unsigned int expression: the element's index in
  // its chunk) for a stochastic store to buffer `b`: rounding_random(key, chunk start +
  // offset), with the index's upper half mixed once per chunk (kernel_function()). The low
  // half wraps past 2^32 at most once in a chunk, which `n < chunk_low` detects.
  void random_word(const std::string& name, const std::string& offset) {
    w_.line("const unsigned int " + name + "_n = chunk_low + " + offset + ";");
    w_.line("const unsigned int " + name + "_h = " + name + "_n < chunk_low ? high_next : high_first;");
  }

  // The element calls for item `i` (a vector or one float) whose loads are in a_NAME`index`,
  // and its stores.
  void compute_and_store(const PhaseInfo& info, bool vector, const std::string& index) {
    const ir::Phase& phase = kernel_.phases[info.index];
    const std::string type = vector_type(vector);
    for (int b : info.stores) w_.line(type + " o_" + identifier(buffer_name(b)) + ";");
    if (!phase.reductions.empty()) {
      std::string decl = "float";
      for (size_t r = 0; r < phase.reductions.size(); ++r) {
        decl += (r ? ", r" : " r") + std::to_string(r);
      }
      w_.line(decl + ";");
    }
    static const char* const kLanes[] = {".x", ".y", ".z", ".w"};
    const bool lanes = vector && shape_.vector_width > 1;
    const int count = lanes ? shape_.vector_width : 1;
    if (!lanes) {
      element_call(info, index, "");
    } else {
      for (int lane = 0; lane < count; ++lane) element_call(info, index, kLanes[lane]);
    }
    if (info.stochastic) {
      // Each element's index in the chunk: i counts vectors on the vector path.
      for (int lane = 0; lane < count; ++lane) {
        const std::string offset =
            lanes ? "i * " + std::to_string(count) + "u + " + std::to_string(lane) + "u" : "i";
        random_word("rnd" + std::to_string(lane), offset);
      }
    }
    for (int b : info.stores) {
      const std::string name = identifier(buffer_name(b));
      if (storage(b) == StorageType::kF32) {
        w_.line(pointer(b, vector, true) + "[i] = o_" + name + ";");
        continue;
      }
      // Rounded lane by lane into the two-byte vector, which is stored in one access.
      auto rounded = [&](int lane) {
        const std::string value = "o_" + name + (lanes ? kLanes[lane] : "");
        const std::string l = std::to_string(lane);
        const std::string random = stochastic(b) ? "fuseopt_rounding_random_split(key_" + name +
                                                       ", rnd" + l + "_n, rnd" + l + "_h)"
                                                 : "";
        return cuda_round_expression(storage(b), value, stochastic(b), random);
      };
      if (!lanes) {
        w_.line(pointer(b, vector, true) + "[i] = " + rounded(0) + ";");
        continue;
      }
      w_.line(memory_type(b, true) + " s_" + name + ";");
      for (int lane = 0; lane < count; ++lane) {
        w_.line("s_" + name + kLanes[lane] + " = " + rounded(lane) + ";");
      }
      w_.line(pointer(b, vector, true) + "[i] = s_" + name + ";");
    }
  }

  // One full iteration of the main loop: elements_per_thread / vector_width vectors per
  // buffer and thread, all loads first (in flight together), then each vector's element
  // calls and stores. Every element is loaded before it is stored, so two names for one
  // buffer still see the old values.
  void unrolled_iteration(const PhaseInfo& info) {
    const std::string per_thread =
        std::to_string(shape_.elements_per_thread / shape_.vector_width) + "u";
    const std::string index = "base + u * " + std::to_string(shape_.block_size) + "u + threadIdx.x";
    for (int b : info.loads) {
      w_.line(memory_type(b, true) + " a_" + identifier(buffer_name(b)) + "[" + per_thread + "];");
    }
    w_.pragma("#pragma unroll");
    w_.open("for (unsigned int u = 0; u < " + per_thread + "; ++u) {");
    w_.line("const unsigned int i = " + index + ";");
    for (int b : info.loads) {
      w_.line("a_" + identifier(buffer_name(b)) + "[u] = " + pointer(b, true, false) + "[i];");
    }
    w_.close();
    w_.pragma("#pragma unroll");
    w_.open("for (unsigned int u = 0; u < " + per_thread + "; ++u) {");
    if (!info.stores.empty()) w_.line("const unsigned int i = " + index + ";");
    compute_and_store(info, true, "[u]");
    w_.close();
  }

  // One vector or float per thread and iteration, from `start` to `limit`: the tails, and
  // chunks whose pointers are not aligned for vectors. Not unrolled, so it costs few
  // registers beside the main loop.
  void simple_loop(const PhaseInfo& info, bool vector, const std::string& start,
                   const std::string& limit) {
    w_.pragma("#pragma unroll 1");
    w_.open("for (unsigned int i = " + start + " + threadIdx.x; i < " + limit + "; i += " +
            std::to_string(shape_.block_size) + "u) {");
    for (int b : info.loads) {
      w_.line("const " + memory_type(b, vector) + " a_" + identifier(buffer_name(b)) + " = " +
              pointer(b, vector, false) + "[i];");
    }
    compute_and_store(info, vector, "");
    w_.close();
  }

  // Opens a __global__ function with the signature every generated function shares
  // (cuda_source.h); only the decide function writes the gate.
  void open_function(const std::string& bounds, const std::string& name,
                     const std::string& gate_type) {
    w_.line("extern \"C\" __global__ void __launch_bounds__(" + bounds + ") " + name + "(");
    w_.line("    const FuseoptTable* __restrict__ table, const float* __restrict__ scalars,");
    w_.line("    unsigned int scalar_stride, double* __restrict__ partials,");
    w_.line("    const unsigned int* __restrict__ rounding_keys, " + gate_type + "* __restrict__ gate,");
    w_.line("    const float* __restrict__ grad_scale, float* __restrict__ found_inf,");
    w_.line("    double max_grad_norm) {");
    w_.indent();
  }

  void kernel_function(const PhaseInfo& info) {
    const ir::Phase& phase = kernel_.phases[info.index];
    const size_t reductions = phase.reductions.size();
    const std::string block = std::to_string(shape_.block_size);
    const int warps = shape_.block_size / 32;
    w_.line("// Phase " + std::to_string(info.index) +
            " over the whole group: blocks stride over the chunk map, one chunk at a time.");
    // With two-byte buffers ptxas's own register target (without a minimum block count)
    // stops at 64 registers and spills a few bytes; asking for one resident block lets it use
    // what it needs (80 for bf16 Adam at the default shape) and never spill. f32 kernels keep
    // the plain bound their tuning was measured with.
    const std::string bounds = narrow_ ? block + ", 1" : block;
    open_function(bounds, info.function, "const FuseoptGate");
    w_.line("(void)found_inf;");
    w_.line("(void)max_grad_norm;");
    if (!device_gate_) {
      w_.line("(void)gate;");
      w_.line("(void)grad_scale;");
    } else if (info.index > 0) {
      w_.line("// The decide function's decision (the same for every thread): a skipped step stores nothing.");
      w_.line("if (gate != nullptr && gate->skip != 0.0) return;");
    } else {
      w_.line("(void)gate;");
    }
    if (reductions > 0) {
      w_.line("__shared__ double warp_partials[" + std::to_string(reductions) + "][" +
              std::to_string(warps) + "];");
    }
    w_.line("const char* base_address = reinterpret_cast<const char*>(table);");
    w_.line("const FuseoptChunk* chunks = reinterpret_cast<const FuseoptChunk*>(base_address + table->chunks_offset);");
    w_.line("const unsigned int chunk_count = static_cast<unsigned int>(table->chunk_count);");
    if (info.scalar_inputs.empty()) {
      w_.line("(void)scalars;");
      w_.line("(void)scalar_stride;");
    }
    if (reductions == 0) w_.line("(void)partials;");
    if (!info.stochastic) w_.line("(void)rounding_keys;");
    w_.open("for (unsigned int c = blockIdx.x; c < chunk_count; c += gridDim.x) {");
    w_.line("const FuseoptChunk& chunk = chunks[c];");
    w_.line("if (c + gridDim.x < chunk_count) fuseopt_prefetch_l2(&chunks[c + gridDim.x]);");
    w_.line("const unsigned int count = chunk.count;");
    w_.line(scalars_struct(info) + " sc;");
    if (!info.scalar_inputs.empty()) {
      w_.line("const float* row = scalars + static_cast<unsigned long long>(chunk.tensor) * scalar_stride;");
      for (size_t i = 0; i < info.scalar_inputs.size(); ++i) {
        const std::string field = "sc.s" + std::to_string(i);
        const std::string from_row = "row[" + std::to_string(i) + "]";
        if (device_gate_ && info.scalar_inputs[i] == ir::kGradUnscaleInput) {
          w_.line(field + " = grad_scale != nullptr ? fuseopt_unscale(*grad_scale) : " + from_row + ";");
        } else if (device_gate_ && info.scalar_inputs[i] == ir::kGradClipInput) {
          w_.line(field + " = gate != nullptr ? static_cast<float>(gate->clip) : " + from_row + ";");
        } else {
          w_.line(field + " = " + from_row + ";");
        }
      }
    }
    for (int b : info.buffers) {
      const std::string type = cuda_storage_c_type(storage(b));
      w_.line(type + "* p_" + identifier(buffer_name(b)) + " = static_cast<" + type +
              "*>(chunk.buffers[" + std::to_string(b) + "]);");
    }
    if (info.stochastic) {
      // Element n of the chunk draws rounding_random(key, start + n): the keys are per tensor
      // and buffer (uploaded every step), the mix of the index's upper half per chunk.
      w_.line("const unsigned long long chunk_start = static_cast<unsigned long long>(chunk.start);");
      w_.line("const unsigned int chunk_low = static_cast<unsigned int>(chunk_start);");
      w_.line("const unsigned int high_first = fuseopt_rounding_index_high(static_cast<unsigned int>(chunk_start >> 32));");
      w_.line("const unsigned int high_next = fuseopt_rounding_index_high(static_cast<unsigned int>(chunk_start >> 32) + 1u);");
      for (int b : info.stores) {
        if (!stochastic(b)) continue;
        w_.line("const unsigned int key_" + identifier(buffer_name(b)) +
                " = rounding_keys[static_cast<unsigned long long>(chunk.tensor) * " +
                std::to_string(kernel_.buffers.size()) + "u + " + std::to_string(b) + "u];");
      }
    }
    for (size_t r = 0; r < reductions; ++r) {
      w_.line("double acc" + std::to_string(r) + " = " + reduce_identity_text(phase.reductions[r].op) + ";");
    }
    w_.line("unsigned int done = 0;");
    const int width = shape_.vector_width;
    if (!info.buffers.empty()) {
      const std::string per_iteration =
          std::to_string(shape_.block_size * (shape_.elements_per_thread / width)) + "u";
      if (width > 1) {
        // Every pointer aligned to its vector's size (4 * width bytes for f32, 2 * width for
        // bf16/f16), one mask per element size.
        std::string test;
        std::string sizes;
        for (int bytes : {4, 2}) {
          std::string bits;
          for (int b : info.buffers) {
            if (storage_type_bytes(storage(b)) != bytes) continue;
            bits += (bits.empty() ? "" : " | ") +
                    std::string("reinterpret_cast<unsigned long long>(p_") +
                    identifier(buffer_name(b)) + ")";
          }
          if (bits.empty()) continue;
          test += (test.empty() ? "" : " | ") + std::string("((") + bits + ") & " +
                  std::to_string(bytes * width - 1) + "u)";
          sizes += (sizes.empty() ? "" : ", ") + std::to_string(bytes * width) + "-byte";
        }
        w_.line("// Aligned chunks (" + sizes + " vectors): vectors of " + std::to_string(width) +
                ", full iterations unrolled, then one vector per thread.");
        w_.open("if ((" + test + ") == 0) {");
      } else {
        w_.line("// Full iterations unrolled, then one element per thread.");
        w_.open("{");
      }
      w_.line("const unsigned int vectors = count / " + std::to_string(width) + "u;");
      w_.line("const unsigned int full = vectors - vectors % " + per_iteration + ";");
      w_.pragma("#pragma unroll 1");
      w_.open("for (unsigned int base = 0; base < full; base += " + per_iteration + ") {");
      unrolled_iteration(info);
      w_.close();
      simple_loop(info, true, "full", "vectors");
      w_.line("done = vectors * " + std::to_string(width) + "u;");
      w_.close();
    }
    if (width > 1 || info.buffers.empty()) {
      w_.line("// Unaligned chunks, and the last elements of aligned ones.");
      simple_loop(info, false, "done", "count");
    } else {
      w_.line("(void)done;");
    }
    if (reductions > 0) {
      w_.line("// This chunk's partials: lanes, then warps, in a fixed order.");
      w_.line("const unsigned int lane = threadIdx.x & 31u;");
      w_.line("const unsigned int warp = threadIdx.x >> 5;");
      for (size_t r = 0; r < reductions; ++r) {
        const std::string rs = std::to_string(r);
        w_.line("acc" + rs + " = " + warp_reduce_function(phase.reductions[r].op) + "(acc" + rs + ");");
        w_.line("if (lane == 0) warp_partials[" + rs + "][warp] = acc" + rs + ";");
      }
      w_.line("__syncthreads();");
      w_.open("if (warp == 0) {");
      for (size_t r = 0; r < reductions; ++r) {
        const std::string rs = std::to_string(r);
        w_.line("double v" + rs + " = lane < " + std::to_string(warps) + "u ? warp_partials[" + rs +
                "][lane] : " + reduce_identity_text(phase.reductions[r].op) + ";");
        w_.line("v" + rs + " = " + warp_reduce_function(phase.reductions[r].op) + "(v" + rs + ");");
        w_.line("if (lane == 0) partials[static_cast<unsigned long long>(c) * " +
                std::to_string(reductions) + "u + " + rs + "u] = v" + rs + ";");
      }
      w_.close();
      w_.line("__syncthreads();");
    }
    w_.close();
    w_.close();
    w_.line();
  }

  // One thread combines phase 0's per-chunk statistics as the host would (each tensor's
  // chunks in chunk order, then the tensors in group order, in f64 without contraction), so
  // the decision and the clip factor are bitwise the host's (ir::grad_factors).
  void decide_function(const std::string& name) {
    const ir::GradTransform& transform = kernel_.grad_transform;
    w_.line("// The step's decision, on the device: launched with one block after phase 0, writes");
    w_.line("// *gate, which the later phases read.");
    open_function("32", name, "FuseoptGate");
    w_.line("(void)scalars;");
    w_.line("(void)scalar_stride;");
    w_.line("(void)rounding_keys;");
    w_.line("if (threadIdx.x != 0 || blockIdx.x != 0) return;");
    w_.line("const char* base_address = reinterpret_cast<const char*>(table);");
    w_.line("const FuseoptChunk* chunks = reinterpret_cast<const FuseoptChunk*>(base_address + table->chunks_offset);");
    w_.line("const unsigned int chunk_count = static_cast<unsigned int>(table->chunk_count);");
    w_.line("double sum_of_squares = 0.0;");
    w_.line("bool nonfinite = false;");
    w_.line("unsigned int c = 0;");
    w_.open("while (c < chunk_count) {");
    w_.line("const unsigned int tensor = chunks[c].tensor;");
    w_.line("double tensor_sum = " + std::string(reduce_identity_text(ir::ReduceOp::kSum)) + ";");
    w_.line("double tensor_nonfinite = " + std::string(reduce_identity_text(ir::ReduceOp::kMax)) + ";");
    w_.open("for (; c < chunk_count && chunks[c].tensor == tensor; ++c) {");
    w_.line("tensor_sum = tensor_sum + partials[2ull * c];");
    w_.line("tensor_nonfinite = fuseopt_max_f64(tensor_nonfinite, partials[2ull * c + 1ull]);");
    w_.close();
    w_.line("sum_of_squares += tensor_sum;");
    w_.line("nonfinite = nonfinite || tensor_nonfinite > 0.0;");
    w_.close();
    w_.line("const double total_norm = sqrt(sum_of_squares);");
    w_.line("const float scale = grad_scale != nullptr ? *grad_scale : 1.0f;");
    w_.line("const bool bad_scale = !(scale > 0.0f && scale <= 3.40282347e+38f);");
    w_.line("const bool found = found_inf != nullptr && *found_inf != 0.0f;");
    w_.line(std::string("const bool skip = ") +
            (transform.unscale ? "nonfinite || found || bad_scale" : "false") + ";");
    w_.line("double clip = 1.0;");
    if (transform.clip_norm) {
      w_.line("// clip_grad_norm_: max_norm / (total + 1e-6), clamped to 1; a NaN stays NaN.");
      w_.line("const double coefficient = max_grad_norm / (total_norm + 1e-6);");
      w_.line("const double clamped = coefficient != coefficient ? coefficient : (coefficient < 1.0 ? coefficient : 1.0);");
      w_.line("clip = static_cast<double>(static_cast<float>(clamped));");
    } else {
      w_.line("(void)max_grad_norm;");
    }
    w_.line("gate->skip = skip ? 1.0 : 0.0;");
    w_.line("gate->clip = clip;");
    w_.line("gate->total_norm = total_norm;");
    w_.line("gate->bad_scale = bad_scale ? 1.0 : 0.0;");
    w_.line("// As GradScaler's fused optimizers learn of a skip: found_inf says so.");
    w_.line("if (skip && found_inf != nullptr) *found_inf = 1.0f;");
    w_.close();
    w_.line();
  }

  const ir::Kernel& kernel_;
  CudaLaunchShape shape_;
  bool device_gate_ = false;  // ir::can_decide_on_device: phases read the gate
  bool narrow_ = false;  // a bf16 or f16 buffer
  Writer w_;
};

}  // namespace

std::string cuda_table_layout(size_t buffer_count) {
  std::string out = "v1";
  for (const LayoutStruct& s : table_structs(buffer_count)) {
    size_t size = 0;
    std::vector<size_t> offsets = field_offsets(s, size);
    out += std::string(" ") + s.sig_name + "{";
    for (size_t i = 0; i < s.fields.size(); ++i) {
      const LayoutField& f = s.fields[i];
      out += (i ? "," : "") + std::string(f.name) + ":" + f.sig_type;
      if (f.count != 1 || std::strcmp(f.sig_type, "ptr") == 0) out += "[" + std::to_string(f.count) + "]";
      out += "@" + std::to_string(offsets[i]);
    }
    out += "}=" + std::to_string(size);
  }
  out += " scalars:f32[tensor*stride+i] partials:f64[chunk*reductions+r] keys:u32[tensor*buffers+b]";
  out += " gate:f64[4]";
  return out;
}

CudaSource generate_cuda_source(const ir::Kernel& kernel, const CudaLaunchShape& shape) {
  shape.validate();
  FUSEOPT_CHECK(kernel.is_split, "cuda codegen needs a kernel split into phases (ir::optimize)");
  FUSEOPT_CHECK(!kernel.phases.empty(), "cuda codegen: a kernel has at least one phase");
  return SourceGenerator(kernel, shape).generate();
}

const std::vector<std::string>& cuda_exact_math_options() {
  static const std::vector<std::string> options = {"--fmad=false", "--prec-div=true",
                                                   "--prec-sqrt=true", "--ftz=false"};
  return options;
}

}  // namespace fuseopt::codegen

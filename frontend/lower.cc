#include "frontend/lower.h"

#include <map>

#include "frontend/sema.h"
#include "ir/eval.h"
#include "support/error.h"
#include "support/low_precision.h"

namespace fuseopt::frontend {
namespace {

using ast::ExprKind;
using ast::StmtKind;
using ir::BinaryOp;
using ir::Expr;
using ir::Type;
using ir::UnaryOp;

bool is_const(const Expr& e) { return e->kind == ir::NodeKind::kConst; }

// Builders that fold constants as they go, so option expressions (`not amsgrad`,
// `n > 2`) are constants by the time an `if` or `?:` asks whether its condition is known.
Expr unary(UnaryOp op, Expr a) {
  if (is_const(a)) {
    const double v = ir::eval_unary(op, a->value);
    const bool gives_bool = op == UnaryOp::kNot || op == UnaryOp::kIsFinite;
    return gives_bool ? ir::make_bool(v != 0) : ir::make_const(v);
  }
  return ir::make_unary(op, std::move(a));
}

// Mixed scalar/element operands: the scalar is rounded to f32 (or broadcast to a mask)
// where it meets the element, as PyTorch passes a Python float into a float32 kernel.
void unify(Expr& a, Expr& b) {
  if (a->type == b->type) return;
  if (a->type == Type::kF64 && b->type == Type::kF32) a = ir::make_cast(Type::kF32, a);
  else if (a->type == Type::kF32 && b->type == Type::kF64) b = ir::make_cast(Type::kF32, b);
  else if (a->type == Type::kBool && b->type == Type::kMask) a = ir::make_cast(Type::kMask, a);
  else if (a->type == Type::kMask && b->type == Type::kBool) b = ir::make_cast(Type::kMask, b);
}

Expr binary(BinaryOp op, Expr a, Expr b) {
  unify(a, b);
  if (is_const(a) && is_const(b)) {
    const double v = ir::eval_binary(op, a->value, b->value);
    return ir::is_comparison(op) || ir::is_logical(op) ? ir::make_bool(v != 0) : ir::make_const(v);
  }
  return ir::make_binary(op, std::move(a), std::move(b));
}

Expr select(Expr c, Expr a, Expr b) {
  unify(a, b);
  if (c->type == Type::kMask) {
    if (a->type == Type::kF64) a = ir::make_cast(Type::kF32, a);
    if (b->type == Type::kF64) b = ir::make_cast(Type::kF32, b);
    if (a->type == Type::kBool) a = ir::make_cast(Type::kMask, a);
    if (b->type == Type::kBool) b = ir::make_cast(Type::kMask, b);
  }
  if (is_const(c)) return c->value != 0 ? a : b;
  if (a == b) return a;
  return ir::make_select(std::move(c), std::move(a), std::move(b));
}

Expr to_element(Expr e) { return e->type == Type::kF64 ? ir::make_cast(Type::kF32, e) : e; }

class Lowerer {
 public:
  Lowerer(const ast::Module& module, const std::vector<ir::OptionValue>& options,
          support::Diagnostics& diags)
      : module_(module), options_(options), diags_(diags) {}

  std::optional<ir::Kernel> run() {
    const int errors_before = diags_.error_count();
    declare();
    lower_block(module_.step);
    if (diags_.error_count() > errors_before) return std::nullopt;
    return finish();
  }

 private:
  // ---- Declarations ------------------------------------------------------------------------

  void declare() {
    kernel_.rule = module_.rules.empty() ? "unnamed" : module_.rules.front().name;
    kernel_.options = options_;
    for (const ir::OptionValue& option : options_) {
      constants_[option.name] = option.is_bool ? ir::make_bool(option.value != 0)
                                               : ir::make_const(static_cast<double>(option.value));
    }
    for (const auto& h : module_.hypers) {
      kernel_.hypers.push_back({h.name, h.default_value});
      constants_[h.name] = ir::make_var(h.name, Type::kF64);
    }
    constants_["t"] = ir::make_var("t", Type::kF64);
    constants_["numel"] = ir::make_var("numel", Type::kF64);

    kernel_.buffers.push_back({"param", ir::BufferRole::kParam, ir::StorageType::kF32, {}});
    kernel_.buffers.push_back({"grad", ir::BufferRole::kGrad, ir::StorageType::kF32, {}});
    constants_["grad"] = ir::make_load("grad");
    values_["param"] = initial_["param"] = ir::make_load("param");
    for (const auto& s : module_.states) {
      if (!s.when.empty() && !option_value(s.when)) {
        absent_states_[s.name] = s.when;
        continue;
      }
      ir::BufferDecl buffer{s.name, ir::BufferRole::kState, ir::StorageType::kF32, {}};
      if (s.init_kind == ast::StateDecl::InitKind::kNumber) {
        buffer.init.number = s.init_number;
      } else if (s.init_name == "param") {
        buffer.init.kind = ir::StateInit::Kind::kParam;
      } else if (s.init_name == "grad") {
        buffer.init.kind = ir::StateInit::Kind::kGrad;
      } else {
        buffer.init.kind = ir::StateInit::Kind::kHyper;
        buffer.init.hyper = s.init_name;
      }
      kernel_.buffers.push_back(buffer);
      values_[s.name] = initial_[s.name] = ir::make_load(s.name);
    }
    // Storage types last: a stochastic one adds the rounding_seed hyper after the rule's own.
    for (const auto& s : module_.storages) {
      ir::set_buffer_storage(kernel_, s.buffer, *parse_storage_type(s.dtype), s.stochastic);
    }
    for (const auto& s : module_.states) {
      if (kernel_.find_buffer(s.name) != nullptr) {
        ir::set_buffer_storage(kernel_, s.name, *parse_storage_type(s.dtype), s.stochastic);
      }
    }
    for (const auto& s : module_.scalars) {
      kernel_.scalars.push_back({s.name, s.init});
      values_[s.name] = initial_[s.name] = ir::make_var(s.name, Type::kF64);
    }
  }

  int64_t option_value(const std::string& name) const {
    for (const ir::OptionValue& option : options_) {
      if (option.name == name) return option.value;
    }
    FUSEOPT_UNREACHABLE("option '" + name + "' has no value");
  }

  ir::Kernel finish() {
    ir::Phase phase;
    phase.reductions = std::move(reductions_);
    for (const ir::BufferDecl& buffer : kernel_.buffers) {
      if (buffer.role == ir::BufferRole::kGrad) continue;
      const Expr& value = values_.at(buffer.name);
      if (value != initial_.at(buffer.name)) phase.stores.push_back({buffer.name, to_element(value)});
    }
    kernel_.phases.push_back(std::move(phase));
    for (const ir::ScalarStateDecl& scalar : kernel_.scalars) {
      const Expr& value = values_.at(scalar.name);
      if (value != initial_.at(scalar.name)) kernel_.scalar_stores.push_back({scalar.name, value});
    }
    return std::move(kernel_);
  }

  // ---- Statements --------------------------------------------------------------------------

  void lower_block(const std::vector<ast::StmtPtr>& body) {
    lets_.emplace_back();
    for (const auto& stmt : body) lower_statement(*stmt);
    lets_.pop_back();
  }

  void lower_statement(const ast::Stmt& stmt) {
    switch (stmt.kind) {
      case StmtKind::kLet:
        lets_.back()[stmt.name] = lower_expr(*stmt.value);
        return;
      case StmtKind::kAssign: {
        Expr value = lower_expr(*stmt.value);
        if (report_if_absent(stmt.name, stmt.name_range)) return;
        auto it = values_.find(stmt.name);
        FUSEOPT_CHECK(it != values_.end(), "assignment target '" + stmt.name + "' not found");
        // Buffers hold f32 elements; a scalar assigned to one is rounded once, here.
        const bool is_buffer = initial_.at(stmt.name)->kind == ir::NodeKind::kLoad;
        it->second = is_buffer ? to_element(value) : value;
        return;
      }
      case StmtKind::kIf:
        lower_if(stmt);
        return;
    }
  }

  void lower_if(const ast::Stmt& stmt) {
    const Expr condition = lower_expr(*stmt.condition);
    if (is_const(condition)) {
      // Decided at compile time: the branch not taken is not compiled at all.
      lower_block(condition->value != 0 ? stmt.then_body : stmt.else_body);
      return;
    }
    // Decided per step on the host: both branches run, and each assigned value becomes
    // a select on the condition.
    const auto before = values_;
    lower_block(stmt.then_body);
    const auto after_then = values_;
    values_ = before;
    lower_block(stmt.else_body);
    for (auto& [name, value] : values_) {
      const Expr& then_value = after_then.at(name);
      if (then_value != value) value = select(condition, then_value, value);
    }
  }

  // A `when` state whose option is off does not exist in this kernel.
  bool report_if_absent(const std::string& name, support::SourceRange range) {
    auto absent = absent_states_.find(name);
    if (absent == absent_states_.end()) return false;
    diags_.error(range, "state '" + name + "' is used where option '" + absent->second +
                            "' is false, and it exists only when '" + absent->second + "' is true");
    return true;
  }

  // ---- Expressions -------------------------------------------------------------------------

  Expr lower_expr(const ast::Expr& e) {
    switch (e.kind) {
      case ExprKind::kNumber: return ir::make_const(e.number);
      case ExprKind::kBool: return ir::make_bool(e.boolean);
      case ExprKind::kName: return lower_name(e);
      case ExprKind::kUnary: {
        Expr a = lower_expr(*e.operands[0]);
        return unary(e.name == "not" ? UnaryOp::kNot : UnaryOp::kNeg, a);
      }
      case ExprKind::kBinary: return lower_binary(e);
      case ExprKind::kTernary: return lower_choice(*e.operands[0], *e.operands[1], *e.operands[2]);
      case ExprKind::kCall: return lower_call(e);
    }
    FUSEOPT_UNREACHABLE("unhandled expression kind");
  }

  Expr lower_name(const ast::Expr& e) {
    for (auto scope = lets_.rbegin(); scope != lets_.rend(); ++scope) {
      auto it = scope->find(e.name);
      if (it != scope->end()) return it->second;
    }
    if (auto it = values_.find(e.name); it != values_.end()) return it->second;
    if (auto it = constants_.find(e.name); it != constants_.end()) return it->second;
    if (report_if_absent(e.name, e.range)) return ir::make_cast(Type::kF32, ir::make_const(0));
    FUSEOPT_UNREACHABLE("name '" + e.name + "' passed sema but is unknown to lowering");
  }

  static BinaryOp binary_op(const std::string& op) {
    static const std::map<std::string, BinaryOp> table = {
        {"+", BinaryOp::kAdd}, {"-", BinaryOp::kSub}, {"*", BinaryOp::kMul},
        {"/", BinaryOp::kDiv}, {"^", BinaryOp::kPow}, {"<", BinaryOp::kLt},
        {"<=", BinaryOp::kLe}, {">", BinaryOp::kGt},  {">=", BinaryOp::kGe},
        {"==", BinaryOp::kEq}, {"!=", BinaryOp::kNe}, {"and", BinaryOp::kAnd},
        {"or", BinaryOp::kOr},
    };
    return table.at(op);
  }

  Expr lower_binary(const ast::Expr& e) {
    Expr a = lower_expr(*e.operands[0]);
    // `false and x`, `true or x` with an option on the left: x may name an absent state.
    if (is_const(a) && a->type == Type::kBool) {
      if (e.name == "and" && a->value == 0) return a;
      if (e.name == "or" && a->value != 0) return a;
    }
    Expr b = lower_expr(*e.operands[1]);
    return binary(binary_op(e.name), a, b);
  }

  // `c ? a : b` and select(c, a, b): a constant condition compiles only the chosen side.
  Expr lower_choice(const ast::Expr& c, const ast::Expr& a, const ast::Expr& b) {
    const Expr condition = lower_expr(c);
    if (is_const(condition)) return lower_expr(condition->value != 0 ? a : b);
    return select(condition, lower_expr(a), lower_expr(b));
  }

  Expr reduce(ir::ReduceOp op, Expr body) {
    const std::string name = "%r" + std::to_string(reduction_count_++);
    reductions_.push_back({name, op, to_element(std::move(body))});
    return ir::make_var(name, Type::kF64);
  }

  Expr lower_call(const ast::Expr& e) {
    const std::string& f = e.name;
    if (f == "select") return lower_choice(*e.operands[0], *e.operands[1], *e.operands[2]);
    std::vector<Expr> args;
    for (const auto& operand : e.operands) args.push_back(lower_expr(*operand));
    if (f == "sqrt") return unary(UnaryOp::kSqrt, args[0]);
    if (f == "rsqrt") return unary(UnaryOp::kRsqrt, args[0]);
    if (f == "exp") return unary(UnaryOp::kExp, args[0]);
    if (f == "log") return unary(UnaryOp::kLog, args[0]);
    if (f == "abs") return unary(UnaryOp::kAbs, args[0]);
    if (f == "sign") return unary(UnaryOp::kSign, args[0]);
    if (f == "isfinite") return unary(UnaryOp::kIsFinite, args[0]);
    if (f == "min") return binary(BinaryOp::kMin, args[0], args[1]);
    if (f == "max") return binary(BinaryOp::kMax, args[0], args[1]);
    if (f == "clamp") return binary(BinaryOp::kMin, binary(BinaryOp::kMax, args[0], args[1]), args[2]);
    if (f == "lerp") {
      // lerp(a, b, w) = a + w * (b - a), the definition in docs/language.md.
      return binary(BinaryOp::kAdd, args[0],
                    binary(BinaryOp::kMul, args[2], binary(BinaryOp::kSub, args[1], args[0])));
    }
    if (f == "sum") return reduce(ir::ReduceOp::kSum, args[0]);
    if (f == "mean") return binary(BinaryOp::kDiv, reduce(ir::ReduceOp::kSum, args[0]), constants_.at("numel"));
    if (f == "norm") {
      Expr square = binary(BinaryOp::kMul, args[0], args[0]);
      return unary(UnaryOp::kSqrt, reduce(ir::ReduceOp::kSum, square));
    }
    if (f == "maxabs") return reduce(ir::ReduceOp::kMax, unary(UnaryOp::kAbs, args[0]));
    FUSEOPT_UNREACHABLE("function '" + f + "' passed sema but lowering does not know it");
  }

  const ast::Module& module_;
  const std::vector<ir::OptionValue>& options_;
  support::Diagnostics& diags_;
  ir::Kernel kernel_;
  std::map<std::string, Expr> constants_;  ///< options, hypers, t, numel, grad
  std::map<std::string, Expr> values_;     ///< current values of param, states and scalars
  std::map<std::string, Expr> initial_;    ///< their values at the start of the step
  std::map<std::string, std::string> absent_states_;  ///< state -> the option it needs
  std::vector<std::map<std::string, Expr>> lets_;
  std::vector<ir::Reduction> reductions_;
  int reduction_count_ = 0;
};

}  // namespace

std::optional<ir::Kernel> lower_to_ir(const ast::Module& module,
                                      const std::vector<ir::OptionValue>& options,
                                      support::Diagnostics& diags) {
  return Lowerer(module, options, diags).run();
}

}  // namespace fuseopt::frontend

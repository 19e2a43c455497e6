#include "frontend/sema.h"

#include <map>
#include <optional>
#include <set>

#include "ir/kernel.h"
#include "support/edit_distance.h"
#include "support/low_precision.h"

namespace fuseopt::frontend {
namespace {

using ast::ExprKind;
using ast::StmtKind;
using support::SourceRange;

const std::map<std::string, FunctionInfo>& functions() {
  using K = FunctionInfo::Kind;
  static const std::map<std::string, FunctionInfo> table = {
      {"sqrt", {K::kMath, 1}},     {"rsqrt", {K::kMath, 1}},    {"exp", {K::kMath, 1}},
      {"log", {K::kMath, 1}},      {"abs", {K::kMath, 1}},      {"sign", {K::kMath, 1}},
      {"min", {K::kMath, 2}},      {"max", {K::kMath, 2}},      {"clamp", {K::kMath, 3}},
      {"lerp", {K::kMath, 3}},     {"select", {K::kSelect, 3}}, {"isfinite", {K::kIsFinite, 1}},
      {"sum", {K::kReduction, 1}}, {"mean", {K::kReduction, 1}}, {"norm", {K::kReduction, 1}},
      {"maxabs", {K::kReduction, 1}},
  };
  return table;
}

/// What sema knows of a value: number or boolean, scalar or element.
struct ValueInfo {
  bool is_bool = false;
  bool is_element = false;
};

enum class SymbolKind { kBuiltin, kHyper, kOption, kState, kScalar, kLet };

struct Symbol {
  SymbolKind kind;
  SourceRange range;  ///< where declared (empty for built-ins)
  ValueInfo value;
  bool assignable = false;
  bool used = false;
  bool assigned = false;
};

const char* kind_name(SymbolKind kind) {
  switch (kind) {
    case SymbolKind::kBuiltin: return "built-in name";
    case SymbolKind::kHyper: return "hyper";
    case SymbolKind::kOption: return "option";
    case SymbolKind::kState: return "state";
    case SymbolKind::kScalar: return "scalar";
    case SymbolKind::kLet: return "let binding";
  }
  return "name";
}

class Checker {
 public:
  Checker(const ast::Module& module, support::Diagnostics& diags) : module_(module), diags_(diags) {}

  bool run() {
    check_rule_line();
    declare_builtins();
    declare_all();
    check_storages();
    check_step_presence();
    scopes_.emplace_back();
    // After an error, a statement may have been dropped: "never used" would be noise.
    const bool had_errors = diags_.has_errors();
    check_block(module_.step);
    pop_scope(!had_errors);
    if (!had_errors) warn_unused();
    return !diags_.has_errors();
  }

 private:
  // ---- Declarations ------------------------------------------------------------------------

  void check_rule_line() {
    if (module_.rules.empty()) {
      diags_.error({0, 0}, "missing 'rule' line: a rule file declares rule NAME \"summary\"");
    }
    for (size_t i = 1; i < module_.rules.size(); ++i) {
      diags_.error(module_.rules[i].range, "second 'rule' line: a file holds exactly one rule");
    }
  }

  void check_step_presence() {
    if (module_.step_ranges.empty()) {
      const uint32_t end = static_cast<uint32_t>(diags_.file().text().size());
      diags_.error({end, end}, "missing 'step { ... }' block");
    }
    for (size_t i = 1; i < module_.step_ranges.size(); ++i) {
      diags_.error(module_.step_ranges[i], "second 'step' block: a rule has exactly one");
    }
  }

  void declare_builtins() {
    symbols_["param"] = {SymbolKind::kBuiltin, {}, {false, true}, true};
    symbols_["grad"] = {SymbolKind::kBuiltin, {}, {false, true}, false};
    symbols_["t"] = {SymbolKind::kBuiltin, {}, {false, false}, false};
    symbols_["numel"] = {SymbolKind::kBuiltin, {}, {false, false}, false};
    // Built-ins are always "used": no warning about them.
    for (auto& [name, symbol] : symbols_) symbol.used = symbol.assigned = true;
  }

  // A declared name may equal a function's (Adagrad's state is torch's `sum`): a call is
  // told apart by its parenthesis.
  bool declare(const std::string& name, SourceRange range, Symbol symbol) {
    auto existing = symbols_.find(name);
    if (existing != symbols_.end()) {
      if (existing->second.kind == SymbolKind::kBuiltin) {
        diags_.error(range, "'" + name + "' is a built-in name; choose another name");
      } else {
        const auto where = diags_.file().locate(existing->second.range.begin);
        diags_.error(range, "duplicate declaration of '" + name + "' (first declared as a " +
                                kind_name(existing->second.kind) + " at line " +
                                std::to_string(where.line) + ")");
      }
      return false;
    }
    symbol.range = range;
    symbols_[name] = symbol;
    declaration_order_.push_back(name);
    return true;
  }

  void declare_all() {
    for (const auto& h : module_.hypers) {
      if (h.name == ir::kRoundingSeedHyper) {
        diags_.error(h.name_range, std::string("'") + ir::kRoundingSeedHyper +
                                       "' is reserved: it seeds stochastic rounding");
        continue;
      }
      declare(h.name, h.name_range, {SymbolKind::kHyper, {}, {false, false}, false});
    }
    for (const auto& o : module_.options) {
      Symbol symbol{SymbolKind::kOption, {}, {o.is_bool, false}, false};
      declare(o.name, o.name_range, symbol);
    }
    for (const auto& s : module_.scalars) {
      declare(s.name, s.name_range, {SymbolKind::kScalar, {}, {false, false}, true});
    }
    for (const auto& s : module_.states) {
      declare(s.name, s.name_range, {SymbolKind::kState, {}, {false, true}, true});
      check_state(s);
    }
  }

  void check_state(const ast::StateDecl& s) {
    if (s.init_kind == ast::StateDecl::InitKind::kName && s.init_name != "param" &&
        s.init_name != "grad") {
      auto it = symbols_.find(s.init_name);
      if (it == symbols_.end() || it->second.kind != SymbolKind::kHyper) {
        std::vector<std::string> candidates = {"param", "grad"};
        for (const auto& h : module_.hypers) candidates.push_back(h.name);
        report_unknown(s.init_name, s.init_range, candidates,
                       "a state starts as a number, 'param', 'grad' or a hyper; ");
      } else {
        it->second.used = true;
      }
    }
    check_storage(s.dtype, s.dtype_range, s.stochastic, s.stochastic_range);
    if (!s.when.empty()) {
      const ast::OptionDecl* option = nullptr;
      for (const auto& o : module_.options) {
        if (o.name == s.when) option = &o;
      }
      if (!option) {
        std::vector<std::string> candidates;
        for (const auto& o : module_.options) candidates.push_back(o.name);
        report_unknown(s.when, s.when_range, candidates, "'when' needs a boolean option; ");
      } else if (!option->is_bool) {
        diags_.error(s.when_range, "'when' needs a boolean option; '" + s.when + "' is an integer");
      } else {
        symbols_[s.when].used = true;
      }
    }
  }

  // A storage type name, and `stochastic` only where a store rounds (bf16 and f16).
  void check_storage(const std::string& dtype, SourceRange dtype_range, bool stochastic,
                     SourceRange stochastic_range) {
    const auto type = parse_storage_type(dtype);
    if (!type) {
      report_unknown(dtype, dtype_range, {"f32", "bf16", "f16"}, "unknown storage type; ");
    } else if (stochastic && *type == StorageType::kF32) {
      diags_.error(stochastic_range, "stochastic rounding needs a bf16 or f16 storage type; "
                                     "f32 stores are exact");
    }
  }

  void check_storages() {
    bool seen_param = false, seen_grad = false;
    for (const auto& s : module_.storages) {
      bool& seen = s.buffer == "param" ? seen_param : seen_grad;
      if (seen) diags_.error(s.buffer_range, "second storage declaration of '" + s.buffer + "'");
      seen = true;
      check_storage(s.dtype, s.dtype_range, s.stochastic, s.stochastic_range);
      if (s.stochastic && s.buffer == "grad") {
        diags_.error(s.stochastic_range,
                     "the grad is read only, so it is never rounded; 'stochastic' applies to "
                     "param and states");
      }
    }
  }

  void report_unknown(const std::string& name, SourceRange range,
                      const std::vector<std::string>& candidates, const std::string& prefix = "") {
    std::string message = prefix + "unknown name '" + name + "'";
    if (auto suggestion = support::closest_match(name, candidates)) {
      message += "; did you mean '" + *suggestion + "'?";
    }
    diags_.error(range, message);
  }

  // ---- Statements --------------------------------------------------------------------------

  Symbol* lookup(const std::string& name) {
    for (auto scope = scopes_.rbegin(); scope != scopes_.rend(); ++scope) {
      auto it = scope->find(name);
      if (it != scope->end()) return &it->second;
    }
    auto it = symbols_.find(name);
    return it == symbols_.end() ? nullptr : &it->second;
  }

  std::vector<std::string> visible_names() const {
    std::vector<std::string> names;
    for (const auto& [name, symbol] : symbols_) names.push_back(name);
    for (const auto& scope : scopes_) {
      for (const auto& [name, symbol] : scope) names.push_back(name);
    }
    return names;
  }

  void check_block(const std::vector<ast::StmtPtr>& body) {
    for (const auto& stmt : body) check_statement(*stmt);
  }

  void check_statement(const ast::Stmt& stmt) {
    switch (stmt.kind) {
      case StmtKind::kLet: return check_let(stmt);
      case StmtKind::kAssign: return check_assign(stmt);
      case StmtKind::kIf: return check_if(stmt);
    }
  }

  void check_let(const ast::Stmt& stmt) {
    const std::optional<ValueInfo> value = check_expr(*stmt.value);
    if (Symbol* existing = lookup(stmt.name)) {
      if (existing->kind == SymbolKind::kLet) {
        const auto where = diags_.file().locate(existing->range.begin);
        diags_.error(stmt.name_range, "second 'let' of '" + stmt.name + "' (first at line " +
                                          std::to_string(where.line) +
                                          "); a let binding cannot change");
      } else {
        diags_.error(stmt.name_range, "'let " + stmt.name + "' reuses the name of a " +
                                          kind_name(existing->kind) + "; choose another name");
      }
      return;
    }
    Symbol symbol{SymbolKind::kLet, stmt.name_range, value.value_or(ValueInfo{}), false};
    // A let whose value had errors is still bound, so later uses do not cascade.
    symbol.used = !value.has_value();
    scopes_.back()[stmt.name] = symbol;
  }

  void check_assign(const ast::Stmt& stmt) {
    const std::optional<ValueInfo> value = check_expr(*stmt.value);
    Symbol* target = lookup(stmt.name);
    if (!target) {
      report_unknown(stmt.name, stmt.name_range, visible_names());
      return;
    }
    if (!target->assignable) {
      std::string why;
      switch (target->kind) {
        case SymbolKind::kBuiltin:
          why = stmt.name == "grad" ? "the gradient is read-only" : "it is set by fuseopt";
          break;
        case SymbolKind::kHyper: why = "hypers are set by the caller, not by the step"; break;
        case SymbolKind::kOption: why = "options are fixed when the rule is compiled"; break;
        case SymbolKind::kLet: why = "a let binding cannot change; assign a state or use a new name"; break;
        default: why = "it is read-only"; break;
      }
      diags_.error(stmt.name_range, "cannot assign to " + std::string(kind_name(target->kind)) +
                                        " '" + stmt.name + "': " + why);
      return;
    }
    target->assigned = true;
    if (!value) return;
    if (value->is_bool) {
      diags_.error(stmt.value->range, "boolean used as a number: '" + stmt.name + "' holds a number");
    } else if (target->kind == SymbolKind::kScalar && value->is_element) {
      diags_.error(stmt.value->range, "cannot assign an element value to scalar '" + stmt.name +
                                          "'; a scalar holds one value per tensor (use a "
                                          "reduction such as sum or mean)");
    }
  }

  void check_if(const ast::Stmt& stmt) {
    const std::optional<ValueInfo> condition = check_expr(*stmt.condition);
    if (condition) {
      if (!condition->is_bool) {
        diags_.error(stmt.condition->range, "number used as a boolean: an 'if' needs a condition");
      } else if (condition->is_element) {
        diags_.error(stmt.condition->range,
                     "'if' condition depends on elements; use 'c ? a : b' or select(c, a, b) for a "
                     "per-element choice");
      }
    }
    scopes_.emplace_back();
    check_block(stmt.then_body);
    pop_scope();
    scopes_.emplace_back();
    check_block(stmt.else_body);
    pop_scope();
  }

  // Leaving a block ends its let bindings; one never read is probably a mistake.
  void pop_scope(bool warn = true) {
    for (const auto& [name, symbol] : scopes_.back()) {
      if (warn && !symbol.used) diags_.warning(symbol.range, "let '" + name + "' is never used");
    }
    scopes_.pop_back();
  }

  // ---- Expressions -------------------------------------------------------------------------

  // Returns nothing when the expression had an error (already reported), so a single
  // mistake is not reported again by every expression around it.
  std::optional<ValueInfo> check_expr(const ast::Expr& e) {
    switch (e.kind) {
      case ExprKind::kNumber: return ValueInfo{false, false};
      case ExprKind::kBool: return ValueInfo{true, false};
      case ExprKind::kName: return check_name(e);
      case ExprKind::kUnary: return check_unary(e);
      case ExprKind::kBinary: return check_binary(e);
      case ExprKind::kTernary: return check_ternary(e);
      case ExprKind::kCall: return check_call(e);
    }
    return std::nullopt;
  }

  std::optional<ValueInfo> check_name(const ast::Expr& e) {
    Symbol* symbol = lookup(e.name);
    if (!symbol) {
      if (find_function(e.name)) {
        diags_.error(e.range, "'" + e.name + "' is a function; call it as " + e.name + "(...)");
      } else {
        report_unknown(e.name, e.range, visible_names());
      }
      return std::nullopt;
    }
    symbol->used = true;
    return symbol->value;
  }

  bool expect_number(const ast::Expr& e, const ValueInfo& v) {
    if (!v.is_bool) return true;
    diags_.error(e.range, "boolean used as a number");
    return false;
  }

  bool expect_boolean(const ast::Expr& e, const ValueInfo& v) {
    if (v.is_bool) return true;
    diags_.error(e.range, "number used as a boolean; compare it, e.g. 'x != 0'");
    return false;
  }

  std::optional<ValueInfo> check_unary(const ast::Expr& e) {
    const auto a = check_expr(*e.operands[0]);
    if (!a) return std::nullopt;
    if (e.name == "not") {
      if (!expect_boolean(*e.operands[0], *a)) return std::nullopt;
    } else if (!expect_number(*e.operands[0], *a)) {
      return std::nullopt;
    }
    return a;
  }

  std::optional<ValueInfo> check_binary(const ast::Expr& e) {
    const auto a = check_expr(*e.operands[0]);
    const auto b = check_expr(*e.operands[1]);
    if (!a || !b) return std::nullopt;
    const bool element = a->is_element || b->is_element;
    const std::string& op = e.name;
    if (op == "and" || op == "or") {
      const bool ok_a = expect_boolean(*e.operands[0], *a);
      const bool ok_b = expect_boolean(*e.operands[1], *b);
      if (!ok_a || !ok_b) return std::nullopt;
      return ValueInfo{true, element};
    }
    const bool ok_a = expect_number(*e.operands[0], *a);
    const bool ok_b = expect_number(*e.operands[1], *b);
    if (!ok_a || !ok_b) return std::nullopt;
    const bool comparison = op == "<" || op == "<=" || op == ">" || op == ">=" || op == "==" || op == "!=";
    return ValueInfo{comparison, element};
  }

  std::optional<ValueInfo> check_ternary(const ast::Expr& e) {
    const auto c = check_expr(*e.operands[0]);
    const auto a = check_expr(*e.operands[1]);
    const auto b = check_expr(*e.operands[2]);
    if (!c || !a || !b) return std::nullopt;
    if (!expect_boolean(*e.operands[0], *c)) return std::nullopt;
    if (a->is_bool != b->is_bool) {
      diags_.error(e.range, "the two branches of '?:' differ: one is a number, the other a boolean");
      return std::nullopt;
    }
    return ValueInfo{a->is_bool, c->is_element || a->is_element || b->is_element};
  }

  std::optional<ValueInfo> check_call(const ast::Expr& e) {
    const FunctionInfo* function = find_function(e.name);
    if (!function) {
      if (lookup(e.name)) {
        diags_.error(e.name_range, "'" + e.name + "' is not a function");
      } else {
        std::string message = "unknown function '" + e.name + "'";
        if (auto suggestion = support::closest_match(e.name, function_names())) {
          message += "; did you mean '" + *suggestion + "'?";
        }
        diags_.error(e.name_range, message);
      }
      return std::nullopt;
    }
    if (static_cast<int>(e.operands.size()) != function->arity) {
      diags_.error(e.range, "'" + e.name + "' takes " + std::to_string(function->arity) +
                                (function->arity == 1 ? " argument" : " arguments") + ", found " +
                                std::to_string(e.operands.size()));
      return std::nullopt;
    }
    if (function->kind == FunctionInfo::Kind::kReduction) return check_reduction(e);
    std::vector<ValueInfo> args;
    bool ok = true;
    for (const auto& operand : e.operands) {
      const auto v = check_expr(*operand);
      if (!v) {
        ok = false;
        continue;
      }
      args.push_back(*v);
    }
    if (!ok) return std::nullopt;
    bool element = false;
    for (const ValueInfo& v : args) element = element || v.is_element;
    switch (function->kind) {
      case FunctionInfo::Kind::kMath:
        for (size_t i = 0; i < args.size(); ++i) {
          if (!expect_number(*e.operands[i], args[i])) return std::nullopt;
        }
        return ValueInfo{false, element};
      case FunctionInfo::Kind::kIsFinite:
        if (!expect_number(*e.operands[0], args[0])) return std::nullopt;
        return ValueInfo{true, element};
      case FunctionInfo::Kind::kSelect:
        if (!expect_boolean(*e.operands[0], args[0])) return std::nullopt;
        if (args[1].is_bool != args[2].is_bool) {
          diags_.error(e.range, "the two choices of select differ: one is a number, the other a boolean");
          return std::nullopt;
        }
        return ValueInfo{args[1].is_bool, element};
      case FunctionInfo::Kind::kReduction:
        break;
    }
    return std::nullopt;
  }

  std::optional<ValueInfo> check_reduction(const ast::Expr& e) {
    if (!reduction_stack_.empty()) {
      diags_.error(e.range, "a reduction inside a reduction ('" + e.name + "' inside '" +
                                reduction_stack_.back() + "'); bind the inner one with 'let' first");
      return std::nullopt;
    }
    reduction_stack_.push_back(e.name);
    const auto v = check_expr(*e.operands[0]);
    reduction_stack_.pop_back();
    if (!v) return std::nullopt;
    if (!expect_number(*e.operands[0], *v)) return std::nullopt;
    if (!v->is_element) {
      diags_.error(e.operands[0]->range, "'" + e.name +
                                             "' reduces over the elements of a tensor; its argument "
                                             "must depend on param, grad or a state");
      return std::nullopt;
    }
    return ValueInfo{false, false};
  }

  // ---- Warnings ----------------------------------------------------------------------------

  void warn_unused() {
    for (const std::string& name : declaration_order_) {
      const Symbol& s = symbols_[name];
      if (s.kind == SymbolKind::kHyper && !s.used) {
        diags_.warning(s.range, "hyper '" + name + "' is never used");
      } else if (s.kind == SymbolKind::kState && !s.used && !s.assigned) {
        diags_.warning(s.range, "state '" + name + "' is never used");
      } else if ((s.kind == SymbolKind::kState || s.kind == SymbolKind::kScalar) && !s.assigned) {
        diags_.warning(s.range, std::string(kind_name(s.kind)) + " '" + name +
                                    "' is never assigned; it keeps its initial value");
      } else if (s.kind == SymbolKind::kOption && !s.used) {
        diags_.warning(s.range, "option '" + name + "' is never used");
      }
    }
  }

  const ast::Module& module_;
  support::Diagnostics& diags_;
  std::map<std::string, Symbol> symbols_;
  std::vector<std::string> declaration_order_;
  std::vector<std::map<std::string, Symbol>> scopes_;
  std::vector<std::string> reduction_stack_;
};

}  // namespace

const FunctionInfo* find_function(const std::string& name) {
  auto it = functions().find(name);
  return it == functions().end() ? nullptr : &it->second;
}

std::vector<std::string> function_names() {
  std::vector<std::string> names;
  for (const auto& [name, info] : functions()) names.push_back(name);
  return names;
}

bool check_semantics(const ast::Module& module, support::Diagnostics& diags) {
  return Checker(module, diags).run();
}

}  // namespace fuseopt::frontend

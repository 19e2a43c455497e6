// The IR verifier: checks every invariant of kernel.h and expr.h that passes rely on. The
// pipeline runs it after every pass, so a message names the phase and the value it broke in.
#include "ir/verifier.h"

#include <map>
#include <set>
#include <unordered_set>

#include "ir/printer.h"
#include "support/error.h"

namespace fuseopt::ir {
namespace {

// What a scalar name refers to, and where it is defined.
struct Symbol {
  enum class Kind { kBuiltin, kHyper, kScalarState, kTemporary, kReduction } kind;
  Type type = Type::kF64;
  int phase = 0;     ///< kTemporary, kReduction
  int position = 0;  ///< kTemporary: index in its phase's prologue
};

// Where an expression sits: which names it may read and whether it may load.
struct Place {
  enum class Kind { kPrologue, kElement, kScalarStore } kind;
  int phase = 0;
  int position = 0;  ///< kPrologue: the def's index
  std::string what;  ///< for messages, e.g. "phase 1, store exp_avg"
};

class Verifier {
 public:
  explicit Verifier(const Kernel& kernel) : kernel_(kernel) {}

  void run() {
    if (kernel_.phases.empty()) fail("kernel", "has no phase");
    if (!kernel_.is_split && kernel_.phases.size() != 1) {
      fail("kernel", "an unsplit kernel must have exactly one phase, has " +
                         std::to_string(kernel_.phases.size()));
    }
    check_buffers();
    declare_symbols();
    check_phases();
    check_scalar_stores();
    if (!kernel_.is_split) check_no_cycles();
  }

 private:
  [[noreturn]] void fail(const std::string& where, const std::string& what) const {
    throw InternalError("internal error: IR verifier: kernel " + kernel_.config_name() + ": " +
                        where + ": " + what);
  }

  void check_buffers() {
    const auto& buffers = kernel_.buffers;
    if (buffers.size() < 2) fail("buffers", "need param and grad, have " +
                                                std::to_string(buffers.size()) + " buffer(s)");
    if (buffers[0].role != BufferRole::kParam || buffers[0].name != "param") {
      fail("buffers", "the first buffer must be the param named 'param', got '" +
                          buffers[0].name + "'");
    }
    if (buffers[1].role != BufferRole::kGrad || buffers[1].name != "grad") {
      fail("buffers", "the second buffer must be the grad named 'grad', got '" +
                          buffers[1].name + "'");
    }
    std::set<std::string> names;
    for (size_t i = 0; i < buffers.size(); ++i) {
      const BufferDecl& buffer = buffers[i];
      if (buffer.name.empty()) fail("buffer " + std::to_string(i), "has no name");
      if (!names.insert(buffer.name).second) {
        fail("buffer " + buffer.name, "is declared twice");
      }
      if (i >= 2 && buffer.role != BufferRole::kState) {
        fail("buffer " + buffer.name, "only the first two buffers may be param and grad");
      }
      if (buffer.role == BufferRole::kState && buffer.init.kind == StateInit::Kind::kHyper &&
          kernel_.hyper_index(buffer.init.hyper) < 0) {
        fail("buffer " + buffer.name, "is initialised from unknown hyper '" +
                                          buffer.init.hyper + "'");
      }
      if (buffer.stochastic && buffer.storage == StorageType::kF32) {
        fail("buffer " + buffer.name, "rounds stochastically but is stored as f32");
      }
      if (buffer.stochastic && buffer.role == BufferRole::kGrad) {
        fail("buffer " + buffer.name, "the grad is never stored, so it cannot round stochastically");
      }
    }
    if (kernel_.has_stochastic_store() && kernel_.hyper_index(kRoundingSeedHyper) < 0) {
      fail("hypers", std::string("a stochastic store needs the hyper '") + kRoundingSeedHyper + "'");
    }
  }

  void declare(const std::string& name, Symbol symbol, const std::string& where) {
    if (name.empty()) fail(where, "has no name");
    if (!symbols_.emplace(name, symbol).second) {
      fail(where, "name '" + name + "' is already defined");
    }
  }

  void declare_symbols() {
    declare("t", {Symbol::Kind::kBuiltin}, "builtin t");
    declare("numel", {Symbol::Kind::kBuiltin}, "builtin numel");
    for (const HyperDecl& hyper : kernel_.hypers) {
      declare(hyper.name, {Symbol::Kind::kHyper}, "hyper " + hyper.name);
    }
    for (const ScalarStateDecl& scalar : kernel_.scalars) {
      declare(scalar.name, {Symbol::Kind::kScalarState}, "scalar " + scalar.name);
    }
    for (size_t k = 0; k < kernel_.phases.size(); ++k) {
      const Phase& phase = kernel_.phases[k];
      int p = static_cast<int>(k);
      for (size_t i = 0; i < phase.prologue.size(); ++i) {
        const ScalarDef& def = phase.prologue[i];
        std::string where = phase_name(p) + ", temporary " + def.name;
        if (def.value == nullptr) fail(where, "has no value");
        declare(def.name, {Symbol::Kind::kTemporary, def.value->type, p, static_cast<int>(i)},
                where);
      }
      for (const Reduction& reduction : phase.reductions) {
        declare(reduction.name, {Symbol::Kind::kReduction, Type::kF64, p, 0},
                phase_name(p) + ", reduction " + reduction.name);
      }
    }
  }

  static std::string phase_name(int p) { return "phase " + std::to_string(p); }

  void check_phases() {
    std::set<std::string> stored;
    int last = static_cast<int>(kernel_.phases.size()) - 1;
    for (int p = 0; p <= last; ++p) {
      const Phase& phase = kernel_.phases[static_cast<size_t>(p)];
      for (size_t i = 0; i < phase.prologue.size(); ++i) {
        const ScalarDef& def = phase.prologue[i];
        Place place{Place::Kind::kPrologue, p, static_cast<int>(i),
                    phase_name(p) + ", temporary " + def.name};
        if (!is_scalar(def.value)) {
          fail(place.what, std::string("a prologue value must be f64 or bool, got ") +
                               spelling(def.value->type));
        }
        check_root(def.value, place);
      }
      for (const Reduction& reduction : phase.reductions) {
        Place place{Place::Kind::kElement, p, 0, phase_name(p) + ", reduction " + reduction.name};
        if (reduction.body == nullptr) fail(place.what, "has no body");
        if (reduction.body->type != Type::kF32) {
          fail(place.what, std::string("a reduction body must be f32, got ") +
                               spelling(reduction.body->type));
        }
        check_root(reduction.body, place);
      }
      for (const Store& store : phase.stores) {
        Place place{Place::Kind::kElement, p, 0, phase_name(p) + ", store " + store.target};
        const BufferDecl* buffer = kernel_.find_buffer(store.target);
        if (buffer == nullptr) fail(place.what, "stores to unknown buffer '" + store.target + "'");
        if (buffer->role == BufferRole::kGrad) fail(place.what, "stores to the grad");
        if (!stored.insert(store.target).second) {
          fail(place.what, "is the second store to '" + store.target + "'");
        }
        if (kernel_.is_split && p != last) {
          fail(place.what, "a split kernel stores only in its last phase (" +
                               std::to_string(last) + ")");
        }
        if (store.value == nullptr) fail(place.what, "has no value");
        if (store.value->type != Type::kF32) {
          fail(place.what, std::string("a buffer store must be f32, got ") +
                               spelling(store.value->type));
        }
        check_root(store.value, place);
      }
    }
  }

  void check_scalar_stores() {
    std::set<std::string> stored;
    for (const Store& store : kernel_.scalar_stores) {
      Place place{Place::Kind::kScalarStore, 0, 0, "after, scalar " + store.target};
      if (kernel_.scalar_index(store.target) < 0) {
        fail(place.what, "stores to '" + store.target + "', which is not a scalar state");
      }
      if (!stored.insert(store.target).second) {
        fail(place.what, "is the second store to '" + store.target + "'");
      }
      if (store.value == nullptr) fail(place.what, "has no value");
      if (store.value->type != Type::kF64) {
        fail(place.what,
             std::string("a scalar store must be f64, got ") + spelling(store.value->type));
      }
      check_root(store.value, place);
    }
  }

  void check_root(const Expr& root, const Place& place) {
    std::unordered_set<const ExprNode*> seen;
    check_node(root, place, seen);
  }

  void check_node(const Expr& e, const Place& place, std::unordered_set<const ExprNode*>& seen) {
    if (e == nullptr) fail(place.what, "has a null operand");
    if (!seen.insert(e.get()).second) return;
    for (const Expr& operand : e->operands) check_node(operand, place, seen);
    switch (e->kind) {
      case NodeKind::kConst:
        if (!is_scalar(e->type)) fail(place.what, "a constant must be f64 or bool");
        if (e->type == Type::kBool && e->value != 0 && e->value != 1) {
          fail(place.what, "a bool constant must be 0 or 1");
        }
        break;
      case NodeKind::kVar:
        check_var(e, place);
        break;
      case NodeKind::kLoad:
        if (place.kind != Place::Kind::kElement) {
          fail(place.what, "host code loads buffer '" + e->name + "'");
        }
        if (kernel_.find_buffer(e->name) == nullptr) {
          fail(place.what, "loads unknown buffer '" + e->name + "'");
        }
        if (e->type != Type::kF32) fail(place.what, "a load must be f32");
        break;
      case NodeKind::kCast:
      case NodeKind::kUnary:
      case NodeKind::kBinary:
      case NodeKind::kSelect:
        check_typing(e, place);
        break;
    }
  }

  // Rebuilds the node through make_*(), which holds the one copy of the typing rules.
  void check_typing(const Expr& e, const Place& place) const {
    size_t arity = e->kind == NodeKind::kBinary ? 2 : e->kind == NodeKind::kSelect ? 3 : 1;
    if (e->operands.size() != arity) {
      fail(place.what, std::string(spelling(e->kind)) + " has " +
                           std::to_string(e->operands.size()) + " operands");
    }
    Expr rebuilt;
    try {
      switch (e->kind) {
        case NodeKind::kCast:
          rebuilt = make_cast(e->type, e->operands[0]);
          break;
        case NodeKind::kUnary:
          rebuilt = make_unary(e->unary_op, e->operands[0]);
          break;
        case NodeKind::kBinary:
          rebuilt = make_binary(e->binary_op, e->operands[0], e->operands[1]);
          break;
        case NodeKind::kSelect:
          rebuilt = make_select(e->operands[0], e->operands[1], e->operands[2]);
          break;
        case NodeKind::kConst:
        case NodeKind::kVar:
        case NodeKind::kLoad:
          return;
      }
    } catch (const InternalError& error) {
      fail(place.what, "ill-typed " + print_expr(e) + ": " + error.what());
    }
    if (rebuilt->type != e->type) {
      fail(place.what, "node " + print_expr(e) + " has type " + spelling(e->type) +
                           ", its operands give " + spelling(rebuilt->type));
    }
  }

  void check_var(const Expr& e, const Place& place) const {
    auto found = symbols_.find(e->name);
    if (found == symbols_.end()) fail(place.what, "uses undefined name '" + e->name + "'");
    const Symbol& symbol = found->second;
    if (e->type != symbol.type) {
      fail(place.what, "uses '" + e->name + "' as " + spelling(e->type) + ", but it is " +
                           spelling(symbol.type));
    }
    bool visible = true;
    std::string rule;
    switch (symbol.kind) {
      case Symbol::Kind::kBuiltin:
      case Symbol::Kind::kHyper:
      case Symbol::Kind::kScalarState:
        break;
      case Symbol::Kind::kTemporary:
        if (place.kind == Place::Kind::kPrologue) {
          visible = symbol.phase < place.phase ||
                    (symbol.phase == place.phase && symbol.position < place.position);
          rule = "temporaries must be defined earlier";
        } else if (place.kind == Place::Kind::kElement) {
          visible = symbol.phase <= place.phase;
          rule = "element code sees temporaries of its phase and earlier ones";
        }
        break;
      case Symbol::Kind::kReduction:
        // Unsplit: any reduction may be used; check_no_cycles() rejects circular uses.
        if (kernel_.is_split && place.kind != Place::Kind::kScalarStore) {
          visible = symbol.phase < place.phase;
          rule = "a split kernel uses only reductions of earlier phases";
        }
        break;
    }
    if (!visible) {
      fail(place.what, "uses '" + e->name + "' (defined in phase " +
                           std::to_string(symbol.phase) + ") where it is not available: " + rule);
    }
  }

  // In an unsplit kernel a temporary may use a reduction and a reduction a temporary; the
  // uses among reductions and temporaries must not form a cycle.
  void check_no_cycles() {
    std::map<std::string, Expr> definitions;
    for (const ScalarDef& def : kernel_.phases[0].prologue) definitions[def.name] = def.value;
    for (const Reduction& reduction : kernel_.phases[0].reductions) {
      definitions[reduction.name] = reduction.body;
    }
    std::map<std::string, int> state;  // 1: on the current path, 2: done
    for (const auto& [name, value] : definitions) visit_definition(name, definitions, state);
  }

  void visit_definition(const std::string& name, const std::map<std::string, Expr>& definitions,
                        std::map<std::string, int>& state) {
    int& mark = state[name];
    if (mark == 2) return;
    if (mark == 1) fail("phase 0, " + name, "depends on itself");
    mark = 1;
    std::set<std::string> uses;
    std::unordered_set<const ExprNode*> seen;
    collect_vars(definitions.at(name), uses, seen);
    for (const std::string& use : uses) {
      if (definitions.count(use) != 0) visit_definition(use, definitions, state);
    }
    state[name] = 2;
  }

  static void collect_vars(const Expr& e, std::set<std::string>& names,
                           std::unordered_set<const ExprNode*>& seen) {
    if (!seen.insert(e.get()).second) return;
    if (e->kind == NodeKind::kVar) names.insert(e->name);
    for (const Expr& operand : e->operands) collect_vars(operand, names, seen);
  }

  const Kernel& kernel_;
  std::map<std::string, Symbol> symbols_;
};

}  // namespace

void verify(const Kernel& kernel) { Verifier(kernel).run(); }

}  // namespace fuseopt::ir

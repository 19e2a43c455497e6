// The IR's text form. Output depends only on the IR's structure (never on pointer values or
// hash order), so it is byte-identical across runs and usable in golden files.
#include "ir/printer.h"

#include <charconv>
#include <unordered_map>

namespace fuseopt::ir {
namespace {

// The shortest decimal that reads back to the same double.
std::string print_number(double value) {
  char buffer[64];
  auto result = std::to_chars(buffer, buffer + sizeof(buffer), value);
  return std::string(buffer, result.ptr);
}

void print_inline(const Expr& e, std::string& out) {
  if (e == nullptr) {
    out += "<null>";
    return;
  }
  switch (e->kind) {
    case NodeKind::kConst:
      if (e->type == Type::kBool) {
        out += e->value != 0 ? "true" : "false";
      } else {
        out += print_number(e->value);
      }
      return;
    case NodeKind::kVar:
      out += e->name;
      return;
    case NodeKind::kLoad:
      out += "load(" + e->name + ")";
      return;
    case NodeKind::kCast:
      out += spelling(e->type);
      break;
    case NodeKind::kUnary:
      out += spelling(e->unary_op);
      break;
    case NodeKind::kBinary:
      out += spelling(e->binary_op);
      break;
    case NodeKind::kSelect:
      out += "select";
      break;
  }
  out += "(";
  for (size_t i = 0; i < e->operands.size(); ++i) {
    if (i > 0) out += ", ";
    print_inline(e->operands[i], out);
  }
  out += ")";
}

const char* role_spelling(BufferRole role) {
  switch (role) {
    case BufferRole::kParam:
      return "param";
    case BufferRole::kGrad:
      return "grad";
    case BufferRole::kState:
      return "state";
  }
  return "?";
}

std::string init_spelling(const StateInit& init) {
  switch (init.kind) {
    case StateInit::Kind::kNumber:
      return print_number(init.number);
    case StateInit::Kind::kParam:
      return "param";
    case StateInit::Kind::kGrad:
      return "grad";
    case StateInit::Kind::kHyper:
      return "hyper " + init.hyper;
  }
  return "?";
}

// Prints one phase's element code as SSA lines. Element nodes get numbers %e0, %e1, ... in
// post-order from the reductions, then the stores; casts of host scalars and scalar
// operands are written inline where they are used, since they are not per-element work.
class ElementPrinter {
 public:
  explicit ElementPrinter(std::string& out) : out_(out) {}

  // Returns how `e` is referred to as an operand, emitting the lines it needs first.
  std::string operand(const Expr& e) {
    if (e == nullptr) return "<null>";
    if (is_scalar(e) || e->kind == NodeKind::kCast) {
      std::string text;
      print_inline(e, text);
      return text;
    }
    auto found = names_.find(e.get());
    if (found != names_.end()) return found->second;
    std::string rhs;
    if (e->kind == NodeKind::kLoad) {
      rhs = "load " + e->name;
    } else {
      std::vector<std::string> args;
      for (const Expr& operand_expr : e->operands) args.push_back(operand(operand_expr));
      rhs = e->kind == NodeKind::kSelect  ? "select"
            : e->kind == NodeKind::kUnary ? spelling(e->unary_op)
                                          : spelling(e->binary_op);
      rhs += "(";
      for (size_t i = 0; i < args.size(); ++i) rhs += (i > 0 ? ", " : "") + args[i];
      rhs += ")";
    }
    std::string name = "%e" + std::to_string(names_.size());
    names_.emplace(e.get(), name);
    out_ += "  " + name + ": " + spelling(e->type) + " = " + rhs + "\n";
    return name;
  }

 private:
  std::string& out_;
  std::unordered_map<const ExprNode*, std::string> names_;  // identity only, never iterated
};

}  // namespace

std::string print_expr(const Expr& e) {
  std::string out;
  print_inline(e, out);
  return out;
}

std::string print_kernel(const Kernel& kernel) {
  std::string out;
  out += "kernel " + kernel.config_name() + "\n";
  out += "rule " + kernel.rule + "\n";
  for (const OptionValue& option : kernel.options) {
    out += "option " + option.name + " = ";
    out += option.is_bool ? (option.value != 0 ? "true" : "false") : std::to_string(option.value);
    out += "\n";
  }
  if (kernel.grad_transform.any()) {
    out += "grad_transform";
    if (kernel.grad_transform.unscale) out += " unscale";
    if (kernel.grad_transform.clip_norm) out += " clip_norm";
    out += "\n";
  }
  for (const HyperDecl& hyper : kernel.hypers) {
    out += "hyper " + hyper.name + " = " + print_number(hyper.default_value) + "\n";
  }
  for (const BufferDecl& buffer : kernel.buffers) {
    bool written = false;
    for (const Phase& phase : kernel.phases) {
      for (const Store& store : phase.stores) written = written || store.target == buffer.name;
    }
    out += "buffer " + buffer.name + ": " + role_spelling(buffer.role) + " " +
           spelling(buffer.storage) + (buffer.stochastic ? " stochastic" : "") +
           (written ? " inout" : " in");
    if (buffer.role == BufferRole::kState) out += " init " + init_spelling(buffer.init);
    out += "\n";
  }
  for (const ScalarStateDecl& scalar : kernel.scalars) {
    out += "scalar " + scalar.name + " = " + print_number(scalar.init) + "\n";
  }
  for (size_t k = 0; k < kernel.phases.size(); ++k) {
    const Phase& phase = kernel.phases[k];
    out += "phase " + std::to_string(k) + (kernel.is_split ? ":" : " (unsplit):") + "\n";
    for (const ScalarDef& def : phase.prologue) {
      out += "  " + def.name + ": " + (def.value ? spelling(def.value->type) : "?") + " = " +
             print_expr(def.value) + "\n";
    }
    ElementPrinter elements(out);
    // Operands first so their lines come before the reduce/store line that uses them.
    std::vector<std::string> reduction_operands;
    for (const Reduction& reduction : phase.reductions) {
      reduction_operands.push_back(elements.operand(reduction.body));
    }
    std::vector<std::string> store_operands;
    for (const Store& store : phase.stores) store_operands.push_back(elements.operand(store.value));
    for (size_t i = 0; i < phase.reductions.size(); ++i) {
      out += "  reduce " + phase.reductions[i].name + " = " + spelling(phase.reductions[i].op) +
             "(" + reduction_operands[i] + ")\n";
    }
    for (size_t i = 0; i < phase.stores.size(); ++i) {
      out += "  store " + phase.stores[i].target + " = " + store_operands[i] + "\n";
    }
  }
  if (!kernel.scalar_stores.empty()) {
    out += "after:\n";
    for (const Store& store : kernel.scalar_stores) {
      out += "  scalar " + store.target + " = " + print_expr(store.value) + "\n";
    }
  }
  return out;
}

}  // namespace fuseopt::ir

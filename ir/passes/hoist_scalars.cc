// Pass: after splitting, moves the host-computable parts of element expressions into the
// prologue, so they are computed once per tensor in f64 instead of once per element, and
// element code reads only names and constants (what backends pass as kernel arguments).
#include "ir/passes/hoist_scalars.h"

#include <algorithm>
#include <charconv>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "ir/printer.h"

namespace fuseopt::ir {
namespace {

// The N of a temporary named `%N`, or -1.
int temporary_number(const std::string& name) {
  if (name.size() < 2 || name[0] != '%') return -1;
  int number = -1;
  auto [end, error] = std::from_chars(name.data() + 1, name.data() + name.size(), number);
  return error == std::errc() && end == name.data() + name.size() ? number : -1;
}

// `%N`, spelled through to_chars: string concatenation here trips GCC 12's -Wrestrict.
std::string temporary_name(int number) {
  char text[16] = {'%'};
  auto result = std::to_chars(text + 1, text + sizeof(text), number);
  return std::string(text, result.ptr);
}

}  // namespace

Kernel hoist_scalars(const Kernel& kernel) {
  Kernel result = kernel;
  int next = 0;
  std::set<std::string> taken;  // every scalar name a new temporary must not repeat
  for (const Phase& phase : kernel.phases) {
    for (const ScalarDef& def : phase.prologue) {
      next = std::max(next, temporary_number(def.name) + 1);
      taken.insert(def.name);
    }
    for (const Reduction& reduction : phase.reductions) taken.insert(reduction.name);
  }

  // Values already named, by their printed form (which is exact, so equal text means equal
  // structure): a phase reuses a temporary of its own or of an earlier phase.
  std::map<std::string, std::string> named;
  for (Phase& phase : result.phases) {
    for (const ScalarDef& def : phase.prologue) named.emplace(print_expr(def.value), def.name);
    std::vector<ScalarDef> hoisted;
    auto hoist = [&](const Expr& e) -> Expr {
      if (!is_scalar(e) || e->kind == NodeKind::kVar || e->kind == NodeKind::kConst) return e;
      std::string text = print_expr(e);
      auto found = named.find(text);
      if (found == named.end()) {
        std::string name;
        do {
          name = temporary_name(next++);
        } while (taken.count(name) != 0);
        found = named.emplace(text, std::move(name)).first;
        hoisted.push_back({found->second, e});
      }
      return make_var(found->second, e->type);
    };
    // Only the outermost scalar node of each element expression is hoisted: its operands
    // are host code already, computed as part of the temporary.
    std::unordered_map<const ExprNode*, Expr> done;
    std::function<Expr(const Expr&)> rewrite = [&](const Expr& e) -> Expr {
      if (is_scalar(e)) return hoist(e);
      auto found = done.find(e.get());
      if (found != done.end()) return found->second;
      std::vector<Expr> operands;
      for (const Expr& operand : e->operands) operands.push_back(rewrite(operand));
      Expr rewritten = with_operands(e, std::move(operands));
      done.emplace(e.get(), rewritten);
      return rewritten;
    };
    for (Reduction& reduction : phase.reductions) reduction.body = rewrite(reduction.body);
    for (Store& store : phase.stores) store.value = rewrite(store.value);
    phase.prologue.insert(phase.prologue.end(), hoisted.begin(), hoisted.end());
  }
  return result;
}

}  // namespace fuseopt::ir

// Pass: turns the single phase of a freshly lowered kernel into a sequence of element passes.
// A reduction can only be used once a whole pass over the elements has computed it, so each
// value's phase is 1 + the latest phase of the reductions it uses (through temporaries too).
#include "ir/passes/split_phases.h"

#include <algorithm>
#include <functional>
#include <map>
#include <set>
#include <string>

#include "ir/rewrite.h"
#include "support/error.h"

namespace fuseopt::ir {
namespace {

// Computes the earliest phase in which a value can be computed ("ready"): 0 when it uses no
// reduction, else 1 + the level of the latest reduction it uses. A reduction's level is the
// readiness of its body.
class Levels {
 public:
  explicit Levels(const Phase& phase) {
    for (const ScalarDef& def : phase.prologue) temporaries_[def.name] = def.value;
    for (const Reduction& reduction : phase.reductions) reductions_[reduction.name] = reduction.body;
  }

  int ready(const Expr& e) {
    std::set<std::string> names;
    collect_var_names(e, names);
    int result = 0;
    for (const std::string& name : names) {
      if (reductions_.count(name) != 0) result = std::max(result, level(name) + 1);
      if (temporaries_.count(name) != 0) result = std::max(result, ready_of(name));
    }
    return result;
  }

  int level(const std::string& reduction) { return memo(reduction, reductions_.at(reduction)); }
  int ready_of(const std::string& temporary) {
    return memo(temporary, temporaries_.at(temporary));
  }

 private:
  int memo(const std::string& name, const Expr& value) {
    auto found = memo_.find(name);
    if (found != memo_.end()) {
      FUSEOPT_CHECK(found->second >= 0, "'" + name + "' depends on itself");
      return found->second;
    }
    memo_[name] = -1;  // on the current path
    int result = ready(value);
    memo_[name] = result;
    return result;
  }

  std::map<std::string, Expr> temporaries_;
  std::map<std::string, Expr> reductions_;
  std::map<std::string, int> memo_;
};

}  // namespace

Kernel split_phases(const Kernel& kernel) {
  if (kernel.is_split) return kernel;
  FUSEOPT_CHECK(kernel.phases.size() == 1, "an unsplit kernel has exactly one phase");
  const Phase& input = kernel.phases[0];
  Levels levels(input);

  int last = 0;
  for (const Reduction& reduction : input.reductions) {
    last = std::max(last, levels.level(reduction.name));
  }
  for (const Store& store : input.stores) last = std::max(last, levels.ready(store.value));

  Kernel result = kernel;
  result.is_split = true;
  result.phases.assign(static_cast<size_t>(last) + 1, Phase{});
  // A temporary that needs the last phase's reductions is only used by scalar stores (any
  // element use would have pushed `last` further); there is no prologue after the last
  // phase, so it is substituted into the scalar stores instead.
  std::map<std::string, Expr> after_last;
  for (const ScalarDef& def : input.prologue) {
    int phase = levels.ready_of(def.name);
    if (phase > last) {
      after_last[def.name] = def.value;
    } else {
      result.phases[static_cast<size_t>(phase)].prologue.push_back(def);
    }
  }
  for (const Reduction& reduction : input.reductions) {
    result.phases[static_cast<size_t>(levels.level(reduction.name))].reductions.push_back(
        reduction);
  }
  result.phases.back().stores = input.stores;

  if (!after_last.empty()) {
    std::function<Expr(const Expr&)> substitute;
    ExprRewriter rewriter([&](const Expr& e) -> Expr {
      if (e->kind != NodeKind::kVar) return e;
      auto found = after_last.find(e->name);
      return found == after_last.end() ? e : substitute(found->second);
    });
    substitute = std::ref(rewriter);
    for (Store& store : result.scalar_stores) store.value = substitute(store.value);
  }
  return result;
}

}  // namespace fuseopt::ir

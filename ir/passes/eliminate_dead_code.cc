// Pass: removes host temporaries and reductions that no store needs (a dead reduction would
// cost a whole pass over the elements). Liveness starts at the buffer and scalar stores and
// follows uses through temporaries and reductions until nothing new becomes live.
#include "ir/passes/eliminate_dead_code.h"

#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "ir/rewrite.h"

namespace fuseopt::ir {

Kernel eliminate_dead_code(const Kernel& kernel) {
  std::map<std::string, const Expr*> definitions;
  for (const Phase& phase : kernel.phases) {
    for (const ScalarDef& def : phase.prologue) definitions[def.name] = &def.value;
    for (const Reduction& reduction : phase.reductions) {
      definitions[reduction.name] = &reduction.body;
    }
  }

  std::set<std::string> live;
  std::vector<std::string> worklist;
  auto use = [&](const Expr& e) {
    std::set<std::string> names;
    collect_var_names(e, names);
    for (const std::string& name : names) {
      if (definitions.count(name) != 0 && live.insert(name).second) worklist.push_back(name);
    }
  };
  for (const Phase& phase : kernel.phases) {
    for (const Store& store : phase.stores) use(store.value);
  }
  for (const Store& store : kernel.scalar_stores) use(store.value);
  while (!worklist.empty()) {
    std::string name = std::move(worklist.back());
    worklist.pop_back();
    use(*definitions.at(name));
  }

  Kernel result = kernel;
  result.phases.clear();
  std::vector<ScalarDef> carried;  // the prologue of a dropped phase, run one phase later
  for (size_t k = 0; k < kernel.phases.size(); ++k) {
    Phase phase;
    phase.prologue = std::move(carried);
    carried.clear();
    for (const ScalarDef& def : kernel.phases[k].prologue) {
      if (live.count(def.name) != 0) phase.prologue.push_back(def);
    }
    for (const Reduction& reduction : kernel.phases[k].reductions) {
      if (live.count(reduction.name) != 0) phase.reductions.push_back(reduction);
    }
    phase.stores = kernel.phases[k].stores;
    // A split phase left with no element work would be an empty pass over the elements:
    // its host work moves to the next phase, where nothing reads it earlier than before.
    bool is_last = k + 1 == kernel.phases.size();
    if (kernel.is_split && !is_last && phase.reductions.empty() && phase.stores.empty()) {
      carried = std::move(phase.prologue);
      continue;
    }
    result.phases.push_back(std::move(phase));
  }
  return result;
}

}  // namespace fuseopt::ir

#include "rules/builtin_rules.h"

namespace fuseopt::rules {

const BuiltinRule* find_builtin_rule(const std::string& name) {
  for (const BuiltinRule& rule : builtin_rules()) {
    if (rule.name == name) return &rule;
  }
  return nullptr;
}

}  // namespace fuseopt::rules

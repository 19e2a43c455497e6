// The built-in rules (rules/*.opt), embedded into the library at build time.
#pragma once

#include <string>
#include <vector>

namespace fuseopt::rules {

struct BuiltinRule {
  std::string name;  ///< the file's stem, which is also the rule's name
  std::string text;  ///< the whole .opt file
};

/// Every built-in rule, sorted by name.
const std::vector<BuiltinRule>& builtin_rules();
/// The built-in rule called `name`, or nullptr.
const BuiltinRule* find_builtin_rule(const std::string& name);

}  // namespace fuseopt::rules

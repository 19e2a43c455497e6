// Independent reference implementations of fuseopt's built-in update rules, written as plain
// loops straight from the optimizer catalog (optimizers.md, sections 0-18 and 24) and the names
// table in rules/README.md, never from the rule files themselves. Tests use it to check the rule
// interpreter.
//
// Numerics mirror PyTorch's single-tensor (foreach=False) path: per-step scalars (bias
// corrections, step sizes, rho_t, mu_t, ...) are computed in double, as Python floats are, and
// are rounded to float where they meet the tensors; element math is float32, in the order the
// PyTorch code performs it. Per-tensor norms (lamb, lars) are accumulated in double, in index
// order.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace fuseopt::reference {

using Options = std::map<std::string, int64_t>;
using Hypers = std::map<std::string, double>;

struct TensorState {
  std::vector<float> param;
  // Created by step() at t == 1, named as in rules/README.md. A state that does not exist for
  // the options (e.g. max_exp_avg_sq without amsgrad) is absent.
  std::map<std::string, std::vector<float>> states;
  std::map<std::string, double> scalars;  // per-tensor scalar state, e.g. nadam's mu_product
};

// The 16 rules, in the order of the rules/README.md table.
std::vector<std::string> rule_names();

// Every hyper of the rule with its default from the rules/README.md table.
Hypers default_hypers(const std::string& rule);

// Each option of the rule and the values worth testing ({0, 1} for every boolean option).
std::vector<std::pair<std::string, std::vector<int64_t>>> option_space(const std::string& rule);

// Every option of the rule with its default (bools as 0/1).
Options default_options(const std::string& rule);

// One update step of `rule` on one tensor. `t` is 1 on the first step; at t == 1 the states
// and scalars are (re)created. `options` may leave options out (their defaults apply);
// `hypers` must hold exactly the rule's hypers. Throws std::invalid_argument on an unknown
// rule, an unknown option or hyper, a missing hyper, a non-boolean option value, t < 1,
// missing state at t > 1, or a grad whose size differs from the param's.
void step(const std::string& rule, const Options& options, const Hypers& hypers,
          TensorState& tensor, const std::vector<float>& grad, int64_t t);

}  // namespace fuseopt::reference

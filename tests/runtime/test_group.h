// Test helpers shared by the runtime and API tests: compiling built-in rules, random tensor
// groups, the whole-step oracle (ir::Interpreter over the same group) and bitwise checks.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <map>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "frontend/rule.h"
#include "ir/interpreter.h"
#include "ir/kernel.h"
#include "runtime/optimizer.h"
#include "support/error.h"

namespace fuseopt::test {

inline ir::Kernel compile_kernel(const std::string& rule,
                                 const std::map<std::string, std::string>& options = {}) {
  frontend::Rule r = frontend::load_rule(rule);
  return r.compile(r.resolve_options(options));
}

inline bool has_reductions(const ir::Kernel& k) {
  for (const ir::Phase& p : k.phases) {
    if (!p.reductions.empty()) return true;
  }
  return false;
}

inline std::vector<float> random_values(size_t n, uint32_t seed, float lo = -1, float hi = 1) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = dist(gen);
  return v;
}

inline uint32_t seed_of(size_t tensor, int64_t step, uint32_t salt = 0) {
  return static_cast<uint32_t>(1000003u * tensor + 7919u * static_cast<uint32_t>(step) + salt);
}

/// The hypers of step `t`: the defaults, with lr following a schedule (hypers are run-time
/// arguments, so a changing lr must reach every backend).
inline std::map<std::string, double> hypers_at(const ir::Kernel& k, int64_t t) {
  std::map<std::string, double> hypers;
  for (const ir::HyperDecl& h : k.hypers) {
    hypers[h.name] = h.name == "lr" ? h.default_value * (1 + 0.25 * static_cast<double>(t))
                                    : h.default_value;
  }
  return hypers;
}

inline std::vector<double> hyper_vector(const ir::Kernel& k,
                                        const std::map<std::string, double>& hypers) {
  std::vector<double> v;
  for (const ir::HyperDecl& h : k.hypers) v.push_back(hypers.at(h.name));
  return v;
}

/// Equal bits (so NaNs of the same payload are equal and -0 differs from +0).
inline ::testing::AssertionResult same_bits(std::span<const float> a, std::span<const float> b) {
  if (a.size() != b.size()) {
    return ::testing::AssertionFailure() << "sizes " << a.size() << " and " << b.size();
  }
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::memcmp(&a[i], &b[i], sizeof(float)) != 0) {
      return ::testing::AssertionFailure() << "element " << i << " of " << a.size() << ": "
                                           << a[i] << " vs " << b[i];
    }
  }
  return ::testing::AssertionSuccess();
}

/// |a - b| <= relative * max(|a|, |b|, floor): near zero, differences are measured against
/// `floor` (states that cancel, like a momentum near 0, lose their relative precision).
inline ::testing::AssertionResult close_values(std::span<const float> a, std::span<const float> b,
                                               double relative, double floor = 1e-3) {
  if (a.size() != b.size()) {
    return ::testing::AssertionFailure() << "sizes " << a.size() << " and " << b.size();
  }
  for (size_t i = 0; i < a.size(); ++i) {
    const double x = a[i], y = b[i];
    if (std::isnan(x) && std::isnan(y)) continue;
    if (std::fabs(x - y) > relative * std::max({std::fabs(x), std::fabs(y), floor})) {
      return ::testing::AssertionFailure() << "element " << i << " of " << a.size() << ": " << x
                                           << " vs " << y;
    }
  }
  return ::testing::AssertionSuccess();
}

/// A group run by ir::Interpreter::step, the oracle: it owns every buffer.
class OracleGroup {
 public:
  OracleGroup(const ir::Kernel& kernel, const std::vector<std::vector<float>>& params)
      : kernel_(kernel), interpreter_(kernel) {
    buffers_.resize(params.size());
    args_.resize(params.size());
    for (size_t t = 0; t < params.size(); ++t) {
      for (size_t b = 0; b < kernel.buffers.size(); ++b) {
        buffers_[t].push_back(b == 0 ? params[t] : std::vector<float>(params[t].size(), 0.0f));
      }
      args_[t].numel = static_cast<int64_t>(params[t].size());
      for (auto& buffer : buffers_[t]) args_[t].buffers.push_back(buffer.data());
    }
  }

  /// Before step 1; `filled` per tensor, indexed like Kernel::buffers.
  void initialize(const std::map<std::string, double>& hypers,
                  const std::vector<std::vector<bool>>& filled = {}) {
    const std::vector<double> h = hyper_vector(kernel_, hypers);
    for (size_t t = 0; t < args_.size(); ++t) {
      interpreter_.initialize(args_[t], h, t < filled.size() ? filled[t] : std::vector<bool>{});
    }
  }

  void step(const std::vector<std::vector<float>>& grads,
            const std::map<std::string, double>& hypers, int64_t t) {
    for (size_t i = 0; i < args_.size(); ++i) buffers_[i][1] = grads[i];
    for (size_t i = 0; i < args_.size(); ++i) args_[i].buffers[1] = buffers_[i][1].data();
    interpreter_.step(args_, hyper_vector(kernel_, hypers), t);
  }

  std::vector<float>& buffer(size_t tensor, size_t b) { return buffers_[tensor][b]; }
  std::vector<float>& buffer(size_t tensor, const std::string& name) {
    return buffers_[tensor][static_cast<size_t>(kernel_.buffer_index(name))];
  }
  const std::vector<double>& scalars(size_t tensor) const { return args_[tensor].scalars; }
  size_t size() const { return args_.size(); }

 private:
  ir::Kernel kernel_;
  ir::Interpreter interpreter_;
  std::vector<std::vector<std::vector<float>>> buffers_;
  std::vector<ir::TensorArgs> args_;
};

/// Runs `f`, expecting a UserError whose message contains each of `parts`.
template <typename F>
void expect_user_error(F f, const std::vector<std::string>& parts) {
  try {
    f();
    ADD_FAILURE() << "no UserError; expected one mentioning '" << parts.front() << "'";
  } catch (const UserError& e) {
    for (const std::string& part : parts) {
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos)
          << "message: " << e.what() << "\nexpected to contain: " << part;
    }
  }
}

/// Every tensor's parameter, states and scalar states (as float), in tensor order: one
/// vector to compare two runs bit for bit.
inline std::vector<float> everything_of(const Optimizer& optimizer) {
  std::vector<float> all;
  for (size_t i = 0; i < optimizer.tensor_count(); ++i) {
    const std::vector<float> p = optimizer.read_param(i);
    all.insert(all.end(), p.begin(), p.end());
    for (const std::string& s : optimizer.state_names()) {
      const std::vector<float> v = optimizer.read_state(i, s);
      all.insert(all.end(), v.begin(), v.end());
    }
    for (const std::string& s : optimizer.scalar_names()) {
      all.push_back(static_cast<float>(optimizer.scalar(i, s)));
    }
  }
  return all;
}

/// Every state, scalar and parameter of `optimizer` against the oracle.
inline void expect_matches_oracle(Optimizer& optimizer, OracleGroup& oracle, bool bitwise,
                                  const std::string& context, double relative = 1e-5) {
  const ir::Kernel& k = optimizer.kernel().ir;
  for (size_t t = 0; t < oracle.size(); ++t) {
    auto check = [&](std::span<const float> got, std::span<const float> want,
                     const std::string& what) {
      if (bitwise) {
        EXPECT_TRUE(same_bits(got, want)) << context << ", tensor " << t << ", " << what;
      } else {
        EXPECT_TRUE(close_values(got, want, relative)) << context << ", tensor " << t << ", "
                                                       << what;
      }
    };
    // The copying accessors work for host and device kernels alike.
    check(optimizer.read_param(t), oracle.buffer(t, 0), "param");
    for (const std::string& name : optimizer.state_names()) {
      check(optimizer.read_state(t, name), oracle.buffer(t, name), "state " + name);
    }
    for (size_t s = 0; s < k.scalars.size(); ++s) {
      const double got = static_cast<const Optimizer&>(optimizer).scalar(t, k.scalars[s].name);
      if (bitwise) {
        EXPECT_EQ(std::memcmp(&got, &oracle.scalars(t)[s], sizeof got), 0)
            << context << ", tensor " << t << ", scalar " << k.scalars[s].name << ": " << got
            << " vs " << oracle.scalars(t)[s];
      } else {
        EXPECT_NEAR(got, oracle.scalars(t)[s], 1e-9 * std::fabs(oracle.scalars(t)[s]))
            << context << ", scalar " << k.scalars[s].name;
      }
    }
  }
}

}  // namespace fuseopt::test

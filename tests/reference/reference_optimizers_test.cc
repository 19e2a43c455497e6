// Sanity tests of the reference optimizers themselves, against closed forms derived by hand
// (in double) from optimizers.md. They check the reference, not the rule interpreter.
#include "tests/reference/reference_optimizers.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace fuseopt::reference {
namespace {

const std::vector<float> kParam = {1.0f, -0.5f, 0.25f, 2.0f, -3.0f, 0.75f};
const std::vector<float> kGrad = {0.5f, -0.25f, 2.0f, -1.5f, 0.125f, 0.01f};

double sgn(double x) { return x > 0 ? 1.0 : (x < 0 ? -1.0 : 0.0); }

double l2(const std::vector<double>& x) {
  double s = 0;
  for (double v : x) s += v * v;
  return std::sqrt(s);
}

TensorState tensor(const std::vector<float>& param = kParam) {
  TensorState s;
  s.param = param;
  return s;
}

Hypers with(const std::string& rule, const Hypers& overrides) {
  Hypers h = default_hypers(rule);
  for (const auto& [name, value] : overrides) h[name] = value;
  return h;
}

// |got - want| <= rel * max(|want|, 1e-30) + abs.
void expect_close(double got, double want, double rel = 1e-6, double abs = 0.0) {
  EXPECT_LE(std::fabs(got - want), rel * std::fabs(want) + abs)
      << "got " << got << " want " << want;
}

std::set<std::string> state_names(const TensorState& s) {
  std::set<std::string> names;
  for (const auto& entry : s.states) names.insert(entry.first);
  return names;
}

// --- Tables -----------------------------------------------------------------------------------

TEST(ReferenceTables, SixteenRulesWithTheirNames) {
  const std::vector<std::string> expected = {
      "sgd",     "adam",  "adamw", "nadam",     "radam",       "adamax", "adagrad", "adadelta",
      "rmsprop", "rprop", "lion",  "adabelief", "adamomentum", "lamb",   "lars",    "ademamix"};
  EXPECT_EQ(rule_names(), expected);
  EXPECT_EQ(default_hypers("adamw").at("weight_decay"), 1e-2);
  EXPECT_EQ(default_hypers("nadam").at("momentum_decay"), 4e-3);
  EXPECT_EQ(default_hypers("adabelief").at("eps"), 1e-16);
  EXPECT_EQ(default_hypers("ademamix").size(), 9u);
  EXPECT_EQ(default_options("adabelief").at("rectify"), 1);
  EXPECT_EQ(default_options("adamomentum").at("rectify"), 0);
  EXPECT_EQ(default_options("lamb").at("bias_correction"), 1);
  EXPECT_TRUE(default_options("ademamix").empty());
  EXPECT_TRUE(option_space("ademamix").empty());
  for (const auto& [name, values] : option_space("lars")) {
    EXPECT_EQ(values, (std::vector<int64_t>{0, 1})) << name;
  }
  EXPECT_EQ(option_space("lars").size(), 3u);
}

TEST(ReferenceTables, BadInputsThrow) {
  TensorState s = tensor();
  const Hypers h = default_hypers("adam");
  EXPECT_THROW(default_hypers("adamz"), std::invalid_argument);
  EXPECT_THROW(step("adamz", {}, h, s, kGrad, 1), std::invalid_argument);
  EXPECT_THROW(step("adam", {{"nesterov", 1}}, h, s, kGrad, 1), std::invalid_argument);
  EXPECT_THROW(step("adam", {{"amsgrad", 2}}, h, s, kGrad, 1), std::invalid_argument);
  Hypers missing = h;
  missing.erase("eps");
  EXPECT_THROW(step("adam", {}, missing, s, kGrad, 1), std::invalid_argument);
  Hypers extra = h;
  extra["momentum"] = 0.9;
  EXPECT_THROW(step("adam", {}, extra, s, kGrad, 1), std::invalid_argument);
  EXPECT_THROW(step("adam", {}, h, s, kGrad, 0), std::invalid_argument);
  EXPECT_THROW(step("adam", {}, h, s, {1.0f}, 1), std::invalid_argument);
  // No states yet at t = 2.
  EXPECT_THROW(step("adam", {}, h, s, kGrad, 2), std::invalid_argument);
  EXPECT_EQ(s.param, kParam);  // nothing was touched
}

// Every rule, every option combination: finite results and the states of rules/README.md.
TEST(ReferenceTables, AllOptionCombinationsRunAndCreateTheNamedStates) {
  for (const std::string& rule : rule_names()) {
    const auto space = option_space(rule);
    const size_t combos = size_t{1} << space.size();
    for (size_t bits = 0; bits < combos; ++bits) {
      Options o;
      for (size_t k = 0; k < space.size(); ++k) o[space[k].first] = (bits >> k) & 1;
      Hypers h = default_hypers(rule);
      if (h.count("momentum")) h["momentum"] = 0.9;
      if (h.count("weight_decay")) h["weight_decay"] = 0.01;
      if (rule == "sgd" || rule == "lars") h["dampening"] = 0.0;
      TensorState s = tensor();
      for (int64_t t = 1; t <= 8; ++t) {
        std::vector<float> g = kGrad;
        for (size_t i = 0; i < g.size(); ++i) g[i] *= (t % 3 == 0 ? -1.0f : 1.0f) + 0.1f * i;
        step(rule, o, h, s, g, t);
      }
      for (float x : s.param) EXPECT_TRUE(std::isfinite(x)) << rule << " options " << bits;
      EXPECT_NE(s.param, kParam) << rule << " options " << bits;

      std::set<std::string> want;
      const auto opt = [&](const char* name) { return o.count(name) && o.at(name) == 1; };
      if (rule == "sgd" || rule == "lars") want = {"momentum_buffer"};
      if (rule == "adam" || rule == "adamw" || rule == "adamomentum") {
        want = {"exp_avg", "exp_avg_sq"};
        if (opt("amsgrad")) want.insert("max_exp_avg_sq");
      }
      if (rule == "nadam" || rule == "radam" || rule == "lamb") want = {"exp_avg", "exp_avg_sq"};
      if (rule == "adamax") want = {"exp_avg", "exp_inf"};
      if (rule == "adagrad") want = {"sum"};
      if (rule == "adadelta") want = {"square_avg", "acc_delta"};
      if (rule == "rmsprop") {
        want = {"square_avg", "momentum_buffer"};
        if (opt("centered")) want.insert("grad_avg");
      }
      if (rule == "rprop") want = {"prev", "step_size"};
      if (rule == "lion") want = {"exp_avg"};
      if (rule == "adabelief") {
        want = {"exp_avg", "exp_avg_var"};
        if (opt("amsgrad")) want.insert("max_exp_avg_var");
      }
      if (rule == "ademamix") want = {"exp_avg", "exp_avg_sq", "exp_avg_slow"};
      EXPECT_EQ(state_names(s), want) << rule << " options " << bits;
      EXPECT_EQ(s.scalars.count("mu_product"), rule == "nadam" ? 1u : 0u) << rule;
    }
  }
}

// --- SGD --------------------------------------------------------------------------------------

TEST(ReferenceSgd, PlainStepIsExactlyPMinusLrG) {
  TensorState s = tensor();
  const float lr = 0.1f;
  step("sgd", {}, with("sgd", {{"lr", 0.1}}), s, kGrad, 1);
  for (size_t i = 0; i < kParam.size(); ++i) EXPECT_EQ(s.param[i], kParam[i] - lr * kGrad[i]);
  EXPECT_EQ(s.states.at("momentum_buffer"), std::vector<float>(kParam.size(), 0.0f));
}

TEST(ReferenceSgd, MaximizeAndWeightDecay) {
  TensorState s = tensor();
  step("sgd", {{"maximize", 1}}, with("sgd", {{"lr", 0.1}, {"weight_decay", 0.5}}), s, kGrad, 1);
  for (size_t i = 0; i < kParam.size(); ++i) {
    expect_close(s.param[i], kParam[i] - 0.1 * (-kGrad[i] + 0.5 * kParam[i]), 1e-6, 1e-7);
  }
}

TEST(ReferenceSgd, MomentumBufferStartsAsGradThenDampens) {
  const double lr = 0.1, mu = 0.9, damp = 0.25;
  const Hypers h = with("sgd", {{"lr", lr}, {"momentum", mu}, {"dampening", damp}});
  TensorState s = tensor();
  step("sgd", {}, h, s, kGrad, 1);
  EXPECT_EQ(s.states.at("momentum_buffer"), kGrad);  // no dampening on the first step
  step("sgd", {}, h, s, kGrad, 2);
  for (size_t i = 0; i < kParam.size(); ++i) {
    const double b2 = mu * kGrad[i] + (1 - damp) * kGrad[i];
    expect_close(s.states.at("momentum_buffer")[i], b2);
    expect_close(s.param[i], kParam[i] - lr * kGrad[i] - lr * b2, 1e-6, 1e-7);
  }
  // Nesterov: d = g + mu*b.
  TensorState n = tensor();
  const Hypers hn = with("sgd", {{"lr", lr}, {"momentum", mu}});
  step("sgd", {{"nesterov", 1}}, hn, n, kGrad, 1);
  for (size_t i = 0; i < kParam.size(); ++i) {
    expect_close(n.param[i], kParam[i] - lr * (1 + mu) * kGrad[i], 1e-6, 1e-7);
  }
}

// --- Adam family ------------------------------------------------------------------------------

TEST(ReferenceAdam, ConstantGradientMovesLrSignGPerStep) {
  // With a constant g, m/bc1 = g and v/bc2 = g^2 at every t, so each step is -lr*g/(|g|+eps).
  const double lr = 1e-2;
  TensorState s = tensor();
  for (int64_t t = 1; t <= 4; ++t) {
    step("adam", {}, with("adam", {{"lr", lr}}), s, kGrad, t);
    for (size_t i = 0; i < kParam.size(); ++i) {
      const double g = kGrad[i];
      expect_close(s.param[i], kParam[i] - t * lr * g / (std::fabs(g) + 1e-8), 2e-6, 1e-7);
    }
  }
  expect_close(s.states.at("exp_avg")[0], (1 - std::pow(0.9, 4)) * kGrad[0]);
  expect_close(s.states.at("exp_avg_sq")[0], (1 - std::pow(0.999, 4)) * kGrad[0] * kGrad[0]);
}

TEST(ReferenceAdam, MaximizeIsANegatedGradient) {
  TensorState a = tensor(), b = tensor();
  std::vector<float> neg = kGrad;
  for (float& x : neg) x = -x;
  step("adam", {{"maximize", 1}}, default_hypers("adam"), a, kGrad, 1);
  step("adam", {}, default_hypers("adam"), b, neg, 1);
  EXPECT_EQ(a.param, b.param);
  EXPECT_EQ(a.states, b.states);
}

TEST(ReferenceAdam, AdamWDecaysBeforeTheStep) {
  const double lr = 1e-2, wd = 0.1;
  TensorState s = tensor();
  step("adamw", {}, with("adamw", {{"lr", lr}, {"weight_decay", wd}}), s, kGrad, 1);
  for (size_t i = 0; i < kParam.size(); ++i) {
    const double g = kGrad[i];
    expect_close(s.param[i], kParam[i] * (1 - lr * wd) - lr * g / (std::fabs(g) + 1e-8), 1e-6,
                 1e-7);
  }
  // Adam's L2 form feeds wd*p into the moments instead.
  TensorState l2s = tensor();
  step("adam", {}, with("adam", {{"lr", lr}, {"weight_decay", wd}}), l2s, kGrad, 1);
  for (size_t i = 0; i < kParam.size(); ++i) {
    const double g = kGrad[i] + wd * kParam[i];
    expect_close(l2s.param[i], kParam[i] - lr * g / (std::fabs(g) + 1e-8), 1e-6, 1e-7);
  }
}

TEST(ReferenceAdam, AmsgradKeepsTheMaxOfRawV) {
  const double b2 = 0.999, lr = 1e-2;
  TensorState s = tensor({1.0f});
  const Hypers h = with("adam", {{"lr", lr}});
  step("adam", {{"amsgrad", 1}}, h, s, {1.0f}, 1);
  step("adam", {{"amsgrad", 1}}, h, s, {0.0f}, 2);
  const double v1 = (1 - b2), v2 = b2 * v1;
  expect_close(s.states.at("exp_avg_sq")[0], v2);
  expect_close(s.states.at("max_exp_avg_sq")[0], v1);  // v shrank, the max did not
  const double m2 = 0.9 * 0.1;
  const double bc1 = 1 - 0.81, bc2 = 1 - b2 * b2;
  const double p1 = 1.0 - lr * 1.0 / (1.0 + 1e-8);
  expect_close(s.param[0], p1 - lr / bc1 * m2 / (std::sqrt(v1) / std::sqrt(bc2) + 1e-8));
}

TEST(ReferenceNadam, FirstStepByHand) {
  const double lr = 2e-3, b1 = 0.9, psi = 4e-3, eps = 1e-8;
  const double mu1 = b1 * (1 - 0.5 * std::pow(0.96, psi));
  const double mu2 = b1 * (1 - 0.5 * std::pow(0.96, 2 * psi));
  EXPECT_NEAR(mu1, 0.450073, 1e-6);
  EXPECT_NEAR(mu2, 0.450147, 1e-6);
  TensorState s = tensor();
  step("nadam", {}, default_hypers("nadam"), s, kGrad, 1);
  EXPECT_DOUBLE_EQ(s.scalars.at("mu_product"), mu1);
  for (size_t i = 0; i < kParam.size(); ++i) {
    const double g = kGrad[i];
    const double denom = std::fabs(g) + eps;  // sqrt(v/bc2) = |g| at t = 1
    const double want = kParam[i] - lr * (1 - mu1) / (1 - mu1) * g / denom -
                        lr * mu2 / (1 - mu1 * mu2) * (1 - b1) * g / denom;
    expect_close(s.param[i], want, 1e-6, 1e-7);
  }
}

TEST(ReferenceRadam, SgdBranchUpToT5ThenRectified) {
  // rho_t = 1, 2, 3, 4, 4.996 for t = 1..5 (<= 5: p -= lr*m_hat), 5.994 at t = 6.
  const double lr = 1e-2, b2 = 0.999, eps = 1e-8;
  TensorState s = tensor();
  for (int64_t t = 1; t <= 6; ++t) {
    step("radam", {}, with("radam", {{"lr", lr}}), s, kGrad, t);
    if (t <= 5) {
      for (size_t i = 0; i < kParam.size(); ++i) {
        expect_close(s.param[i], kParam[i] - t * lr * kGrad[i], 1e-6, 1e-7);
      }
    }
  }
  const double bc2 = 1 - std::pow(b2, 6);
  const double rho_inf = 2 / (1 - b2) - 1;
  const double rho = rho_inf - 2 * 6 * std::pow(b2, 6) / bc2;
  EXPECT_NEAR(rho, 5.994, 1e-3);
  const double r =
      std::sqrt((rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho));
  for (size_t i = 0; i < kParam.size(); ++i) {
    const double g = kGrad[i];
    // m_hat = g, sqrt(v) = sqrt(bc2)*|g|, and eps is added to the raw sqrt(v).
    const double l = std::sqrt(bc2) / (std::sqrt(bc2) * std::fabs(g) + eps);
    expect_close(s.param[i], kParam[i] - 5 * lr * g - lr * g * r * l, 1e-6, 1e-7);
  }
}

TEST(ReferenceAdamax, FirstStep) {
  const double lr = 2e-3, eps = 1e-8;
  TensorState s = tensor();
  step("adamax", {}, default_hypers("adamax"), s, kGrad, 1);
  for (size_t i = 0; i < kParam.size(); ++i) {
    const double g = kGrad[i];
    expect_close(s.states.at("exp_inf")[i], std::fabs(g) + eps);
    expect_close(s.param[i], kParam[i] - lr * g / (std::fabs(g) + eps), 1e-6, 1e-7);
  }
}

// --- Adagrad, Adadelta, RMSprop, Rprop, Lion --------------------------------------------------

TEST(ReferenceAdagrad, AccumulatorAndLrDecay) {
  const double lr = 0.1, iav = 0.5, decay = 0.5, eps = 1e-10;
  const Hypers h =
      with("adagrad", {{"lr", lr}, {"initial_accumulator_value", iav}, {"lr_decay", decay}});
  TensorState s = tensor();
  step("adagrad", {}, h, s, kGrad, 1);
  step("adagrad", {}, h, s, kGrad, 2);
  for (size_t i = 0; i < kParam.size(); ++i) {
    const double g = kGrad[i];
    const double s1 = iav + g * g, s2 = iav + 2 * g * g;
    expect_close(s.states.at("sum")[i], s2);
    const double want =
        kParam[i] - lr * g / (std::sqrt(s1) + eps) - lr / (1 + decay) * g / (std::sqrt(s2) + eps);
    expect_close(s.param[i], want, 1e-6, 1e-7);
  }
}

TEST(ReferenceAdadelta, FirstStep) {
  const double rho = 0.9, eps = 1e-6;
  TensorState s = tensor();
  step("adadelta", {}, default_hypers("adadelta"), s, kGrad, 1);
  for (size_t i = 0; i < kParam.size(); ++i) {
    const double g = kGrad[i];
    const double v = (1 - rho) * g * g;
    const double delta = std::sqrt(eps) / std::sqrt(v + eps) * g;
    expect_close(s.states.at("acc_delta")[i], (1 - rho) * delta * delta, 1e-5);
    expect_close(s.param[i], kParam[i] - delta, 1e-6, 1e-7);
  }
}

TEST(ReferenceRmsprop, PlainCenteredAndMomentum) {
  const double lr = 1e-2, a = 0.99, eps = 1e-8, mu = 0.5;
  TensorState s = tensor(), c = tensor(), m = tensor();
  step("rmsprop", {}, default_hypers("rmsprop"), s, kGrad, 1);
  step("rmsprop", {{"centered", 1}}, default_hypers("rmsprop"), c, kGrad, 1);
  const Hypers hm = with("rmsprop", {{"momentum", mu}});
  step("rmsprop", {}, hm, m, kGrad, 1);
  step("rmsprop", {}, hm, m, kGrad, 2);
  for (size_t i = 0; i < kParam.size(); ++i) {
    const double g = kGrad[i];
    const double v1 = (1 - a) * g * g;
    expect_close(s.param[i], kParam[i] - lr * g / (std::sqrt(v1) + eps), 1e-6, 1e-7);
    const double ga = (1 - a) * g;
    expect_close(c.param[i], kParam[i] - lr * g / (std::sqrt(v1 - ga * ga) + eps), 1e-6, 1e-7);
    const double v2 = a * v1 + (1 - a) * g * g;
    const double b1 = g / (std::sqrt(v1) + eps), b2 = mu * b1 + g / (std::sqrt(v2) + eps);
    expect_close(m.states.at("momentum_buffer")[i], b2);
    expect_close(m.param[i], kParam[i] - lr * b1 - lr * b2, 1e-6, 1e-7);
  }
}

TEST(ReferenceRprop, StepSizeGrowsShrinksAndSkips) {
  const float lr = 0.01f;
  TensorState s = tensor({1.0f, 1.0f, 1.0f});
  const Hypers h = default_hypers("rprop");
  step("rprop", {}, h, s, {1.0f, -2.0f, 0.0f}, 1);
  EXPECT_EQ(s.states.at("step_size"), std::vector<float>(3, lr));
  EXPECT_EQ(s.param, (std::vector<float>{1.0f - lr, 1.0f + lr, 1.0f}));
  step("rprop", {}, h, s, {3.0f, 2.0f, 1.0f}, 2);  // same sign, flipped sign, from zero
  const std::vector<float> eta = s.states.at("step_size");
  EXPECT_FLOAT_EQ(eta[0], lr * 1.2f);
  EXPECT_FLOAT_EQ(eta[1], lr * 0.5f);
  EXPECT_FLOAT_EQ(eta[2], lr);
  EXPECT_FLOAT_EQ(s.param[0], 1.0f - lr - lr * 1.2f);
  EXPECT_FLOAT_EQ(s.param[1], 1.0f + lr);  // skipped: the grad is zeroed after a sign flip
  EXPECT_FLOAT_EQ(s.param[2], 1.0f - lr);
  EXPECT_EQ(s.states.at("prev"), (std::vector<float>{3.0f, 0.0f, 1.0f}));
  // The clamp applies at every step.
  TensorState big = tensor({0.0f});
  step("rprop", {}, with("rprop", {{"lr", 100.0}}), big, {1.0f}, 1);
  EXPECT_EQ(big.states.at("step_size")[0], 50.0f);
  EXPECT_EQ(big.param[0], -50.0f);
}

TEST(ReferenceLion, TwoSteps) {
  const double lr = 1e-2, wd = 0.1, b1 = 0.9, b2 = 0.99;
  const Hypers h = with("lion", {{"lr", lr}, {"weight_decay", wd}});
  TensorState s = tensor();
  step("lion", {}, h, s, kGrad, 1);
  std::vector<float> g2 = kGrad;
  for (float& x : g2) x = -0.05f * x;
  step("lion", {}, h, s, g2, 2);
  for (size_t i = 0; i < kParam.size(); ++i) {
    const double g = kGrad[i];
    const double m1 = (1 - b2) * g;
    const double p1 = kParam[i] * (1 - lr * wd) - lr * sgn(g);
    // c = 0.9*0.01g - 0.1*0.05g = 0.004g: still the sign of g.
    const double c = b1 * m1 + (1 - b1) * g2[i];
    expect_close(s.param[i], p1 * (1 - lr * wd) - lr * sgn(c), 1e-6, 1e-7);
    expect_close(s.states.at("exp_avg")[i], b2 * m1 + (1 - b2) * g2[i]);
  }
}

// --- AdaBelief, AdaMomentum -------------------------------------------------------------------

TEST(ReferenceAdabelief, FirstStepOfEachBranch) {
  const double lr = 1e-3, b1 = 0.9, b2 = 0.999, eps = 1e-16;
  // Default (rectify, degenerated_to_sgd): N_sma = 1 < 5, so p -= lr/bc1*m = lr*g.
  TensorState s = tensor();
  step("adabelief", {}, default_hypers("adabelief"), s, kGrad, 1);
  // Not rectified: s = (1-b2)(g - m)^2 + eps, m = (1-b1)g.
  TensorState n = tensor();
  step("adabelief", {{"rectify", 0}}, default_hypers("adabelief"), n, kGrad, 1);
  // Rectified without degeneration: no update below N_sma = 5.
  TensorState z = tensor();
  step("adabelief", {{"degenerated_to_sgd", 0}}, default_hypers("adabelief"), z, kGrad, 1);
  EXPECT_EQ(z.param, kParam);
  for (size_t i = 0; i < kParam.size(); ++i) {
    const double g = kGrad[i];
    expect_close(s.param[i], kParam[i] - lr * g, 1e-6, 1e-7);
    const double m = (1 - b1) * g, var = (1 - b2) * (g - m) * (g - m) + eps;
    expect_close(s.states.at("exp_avg_var")[i], var);
    const double denom = std::sqrt(var) / std::sqrt(1 - b2) + eps;
    expect_close(n.param[i], kParam[i] - lr / (1 - b1) * m / denom, 1e-6, 1e-7);
  }
}

TEST(ReferenceAdabelief, EpsAccumulatesIntoTheState) {
  // g = 0 keeps m and the residual at 0, so var is eps*(1 + b2 + b2^2).
  const double eps = 1e-3, b2 = 0.999;
  TensorState s = tensor({1.0f});
  const Hypers h = with("adabelief", {{"eps", eps}});
  for (int64_t t = 1; t <= 3; ++t) step("adabelief", {{"amsgrad", 1}}, h, s, {0.0f}, t);
  expect_close(s.states.at("exp_avg_var")[0], eps * (1 + b2 + b2 * b2));
  expect_close(s.states.at("max_exp_avg_var")[0], eps * (1 + b2 + b2 * b2));
  EXPECT_EQ(s.param[0], 1.0f);
}

TEST(ReferenceAdabelief, NotRectifiedAddsEpsInsideAndOutside) {
  // A large eps makes both of its places visible: stored into s, then again after sqrt(s/bc2).
  const double lr = 1e-3, b1 = 0.9, b2 = 0.999, eps = 1e-3;
  TensorState s = tensor();
  step("adabelief", {{"rectify", 0}}, with("adabelief", {{"eps", eps}}), s, kGrad, 1);
  for (size_t i = 0; i < kParam.size(); ++i) {
    const double g = kGrad[i], m = (1 - b1) * g;
    const double var = (1 - b2) * (g - m) * (g - m) + eps;
    const double denom = std::sqrt(var) / std::sqrt(1 - b2) + eps;
    expect_close(s.param[i], kParam[i] - lr / (1 - b1) * m / denom, 1e-6, 1e-7);
  }
}

TEST(ReferenceAdabelief, DecayModes) {
  const double lr = 1e-2, wd = 0.1;
  const Hypers h = with("adabelief", {{"lr", lr}, {"weight_decay", wd}});
  TensorState d = tensor(), f = tensor(), c = tensor();
  step("adabelief", {}, h, d, kGrad, 1);
  step("adabelief", {{"fixed_decay", 1}}, h, f, kGrad, 1);
  step("adabelief", {{"weight_decouple", 0}}, h, c, kGrad, 1);
  for (size_t i = 0; i < kParam.size(); ++i) {
    const double p = kParam[i], g = kGrad[i];
    expect_close(d.param[i], p * (1 - lr * wd) - lr * g, 1e-6, 1e-7);
    expect_close(f.param[i], p * (1 - wd) - lr * g, 1e-6, 1e-7);
    expect_close(c.param[i], p - lr * (g + wd * p), 1e-6, 1e-7);
  }
}

TEST(ReferenceAdamomentum, FirstStepByHandInDouble) {
  const double lr = 1e-3, b1 = 0.9, b2 = 0.999, eps = 1e-16;
  TensorState s = tensor();
  step("adamomentum", {}, default_hypers("adamomentum"), s, kGrad, 1);
  for (size_t i = 0; i < kParam.size(); ++i) {
    const double g = kGrad[i];
    const double m = (1 - b1) * g;
    const double v = (1 - b2) * m * m + eps;  // moment of m, eps stored, no eps outside
    const double want = kParam[i] - lr / (1 - b1) * m / (std::sqrt(v) / std::sqrt(1 - b2));
    expect_close(s.states.at("exp_avg_sq")[i], v);
    expect_close(s.param[i], want, 1e-6, 1e-7);
    // m_hat = g and v_hat = (1-b1)^2 g^2 at t = 1, so the first step is 10*lr*sign(g).
    expect_close(s.param[i], kParam[i] - 10 * lr * sgn(g), 1e-5, 1e-7);
  }
}

TEST(ReferenceAdamomentum, SecondStepKeepsEpsInV) {
  const double lr = 1e-3, b1 = 0.9, b2 = 0.999, eps = 1e-4;
  const Hypers h = with("adamomentum", {{"eps", eps}});
  TensorState s = tensor();
  TensorState a = tensor();
  for (int64_t t = 1; t <= 2; ++t) {
    step("adamomentum", {}, h, s, kGrad, t);
    step("adamomentum", {{"amsgrad", 1}}, h, a, kGrad, t);
  }
  for (size_t i = 0; i < kParam.size(); ++i) {
    const double g = kGrad[i];
    const double m1 = (1 - b1) * g, m2 = b1 * m1 + (1 - b1) * g;
    const double v1 = (1 - b2) * m1 * m1 + eps, v2 = b2 * v1 + (1 - b2) * m2 * m2 + eps;
    double p = kParam[i] - lr / (1 - b1) * m1 / (std::sqrt(v1) / std::sqrt(1 - b2));
    const double bc1 = 1 - b1 * b1, bc2 = 1 - b2 * b2;
    p -= lr / bc1 * m2 / (std::sqrt(v2) / std::sqrt(bc2));
    expect_close(s.states.at("exp_avg_sq")[i], v2);
    expect_close(s.param[i], p, 1e-6, 1e-7);
    expect_close(a.states.at("max_exp_avg_sq")[i], std::max(v1, v2));
    expect_close(a.param[i], p, 1e-6, 1e-7);  // v grows here, so the max is v
  }
}

TEST(ReferenceAdamomentum, RectifiedSgdBranchThenAdaptive) {
  const double lr = 1e-3, b1 = 0.9, b2 = 0.999, eps = 1e-16;
  TensorState s = tensor();
  std::vector<double> m(kParam.size(), 0.0), v(kParam.size(), 0.0), p(kParam.begin(), kParam.end());
  for (int64_t t = 1; t <= 6; ++t) {
    step("adamomentum", {{"rectify", 1}}, default_hypers("adamomentum"), s, kGrad, t);
    const double bc1 = 1 - std::pow(b1, t), beta2_t = std::pow(b2, t);
    const double n_inf = 2 / (1 - b2) - 1;
    const double n_t = n_inf - 2 * t * beta2_t / (1 - beta2_t);
    EXPECT_EQ(n_t >= 5, t == 6);
    for (size_t i = 0; i < p.size(); ++i) {
      m[i] = b1 * m[i] + (1 - b1) * kGrad[i];
      v[i] = b2 * v[i] + (1 - b2) * m[i] * m[i] + eps;
      if (n_t >= 5) {
        const double k = std::sqrt((1 - beta2_t) * (n_t - 4) / (n_inf - 4) * (n_t - 2) / n_t *
                                   n_inf / (n_inf - 2)) /
                         bc1;
        p[i] -= lr * k * m[i] / (std::sqrt(v[i]) + eps);
      } else {
        p[i] -= lr / bc1 * m[i];  // = lr*g with a constant gradient
      }
      expect_close(s.param[i], p[i], 1e-6, 1e-7);
    }
  }
}

// --- LAMB, LARS -------------------------------------------------------------------------------

TEST(ReferenceLamb, TrustRatioOnTheFirstStep) {
  const double lr = 1e-2, wd = 0.01, eps = 1e-6;
  const Hypers h = with("lamb", {{"lr", lr}});
  TensorState s = tensor(), clip = tensor(), none = tensor();
  step("lamb", {}, h, s, kGrad, 1);
  step("lamb", {{"trust_clip", 1}}, h, clip, kGrad, 1);
  step("lamb", {}, with("lamb", {{"lr", lr}, {"weight_decay", 0.0}}), none, kGrad, 1);
  std::vector<double> u(kParam.size()), p(kParam.begin(), kParam.end());
  for (size_t i = 0; i < u.size(); ++i) {
    u[i] = kGrad[i] / (std::fabs(kGrad[i]) + eps) + wd * kParam[i];
  }
  const double ratio = l2(p) / l2(u);
  EXPECT_GT(ratio, 1.0);
  for (size_t i = 0; i < u.size(); ++i) {
    expect_close(s.param[i], p[i] - lr * ratio * u[i], 1e-6, 1e-7);
    expect_close(clip.param[i], p[i] - lr * u[i], 1e-6, 1e-7);
    // No weight decay and no always_adapt: a plain Adam-direction step.
    expect_close(none.param[i], p[i] - lr * kGrad[i] / (std::fabs(kGrad[i]) + eps), 1e-6, 1e-7);
  }
}

TEST(ReferenceLamb, NoBiasCorrectionNoGradAveraging) {
  const double lr = 1e-2, b2 = 0.999, eps = 1e-6;
  const Hypers h = with("lamb", {{"lr", lr}, {"weight_decay", 0.0}});
  TensorState s = tensor();
  step("lamb", {{"bias_correction", 0}, {"grad_averaging", 0}}, h, s, kGrad, 1);
  for (size_t i = 0; i < kParam.size(); ++i) {
    const double g = kGrad[i];
    EXPECT_EQ(s.states.at("exp_avg")[i], kGrad[i]);  // m = beta1*0 + g
    const double u = g / (std::sqrt((1 - b2) * g * g) + eps);
    expect_close(s.param[i], kParam[i] - lr * u, 1e-6, 1e-7);
  }
}

TEST(ReferenceLamb, DecoupledDecayShrinksPBeforeItsNorm) {
  const double lr = 1e-2, wd = 0.5, eps = 1e-6;
  TensorState s = tensor();
  step("lamb", {{"decoupled_decay", 1}}, with("lamb", {{"lr", lr}, {"weight_decay", wd}}), s, kGrad,
       1);
  std::vector<double> p(kParam.begin(), kParam.end()), u(kParam.size());
  for (size_t i = 0; i < u.size(); ++i) {
    p[i] *= 1 - lr * wd;
    u[i] = kGrad[i] / (std::fabs(kGrad[i]) + eps);  // the decay stays out of u
  }
  const double ratio = l2(p) / l2(u);
  for (size_t i = 0; i < u.size(); ++i)
    expect_close(s.param[i], p[i] - lr * ratio * u[i], 1e-6, 1e-7);
}

TEST(ReferenceLars, PlainSgdWithoutDecayAndRatioWithIt) {
  const double lr = 0.5, wd = 0.1, tc = 1e-3, eps = 1e-8;
  TensorState plain = tensor(), s = tensor(), clip = tensor();
  step("lars", {}, with("lars", {{"lr", lr}}), plain, kGrad, 1);
  const Hypers h = with("lars", {{"lr", lr}, {"weight_decay", wd}});
  step("lars", {}, h, s, kGrad, 1);
  step("lars", {{"trust_clip", 1}}, h, clip, kGrad, 1);
  const std::vector<double> p(kParam.begin(), kParam.end()), g(kGrad.begin(), kGrad.end());
  const double ratio = tc * l2(p) / (l2(g) + wd * l2(p) + eps);
  const double clipped = std::min(ratio / lr, 1.0);
  for (size_t i = 0; i < p.size(); ++i) {
    EXPECT_EQ(plain.param[i], kParam[i] - static_cast<float>(lr) * kGrad[i]);
    expect_close(s.param[i], p[i] - lr * ratio * (g[i] + wd * p[i]), 1e-6, 1e-7);
    expect_close(clip.param[i], p[i] - lr * clipped * (g[i] + wd * p[i]), 1e-6, 1e-7);
  }
}

TEST(ReferenceLars, MomentumLikeSgd) {
  const double lr = 0.5, mu = 0.9;
  const Hypers h = with("lars", {{"lr", lr}, {"momentum", mu}});
  TensorState a = tensor(), b = tensor();
  for (int64_t t = 1; t <= 3; ++t) {
    step("lars", {{"nesterov", 1}}, h, a, kGrad, t);
    step("sgd", {{"nesterov", 1}}, with("sgd", {{"lr", lr}, {"momentum", mu}}), b, kGrad, t);
  }
  EXPECT_EQ(a.param, b.param);
  EXPECT_EQ(a.states, b.states);
}

// --- AdEMAMix ---------------------------------------------------------------------------------

TEST(ReferenceAdemamix, FirstStepAndWarmups) {
  const double lr = 1e-3, b1 = 0.9, b3 = 0.9999, alpha = 2.0, eps = 1e-8;
  TensorState s = tensor(), w = tensor();
  step("ademamix", {}, default_hypers("ademamix"), s, kGrad, 1);
  const Hypers hw = with("ademamix", {{"alpha_warmup", 4.0}, {"beta3_warmup", 2.0}});
  step("ademamix", {}, hw, w, kGrad, 1);
  // beta3 at t = 1 of a 2-step half-life warmup from beta1 to beta3.
  const auto f = [](double beta) { return std::log(0.5) / std::log(beta + 1e-8) - 1; };
  const double b3w = std::pow(0.5, 1 / (0.5 * f(b1) + 0.5 * f(b3) + 1));
  EXPECT_GT(b3w, b1);
  EXPECT_LT(b3w, b3);
  for (size_t i = 0; i < kParam.size(); ++i) {
    const double g = kGrad[i];
    // m1/bc1 = g, v/bc2 = g^2, m2 = (1-beta3)g, never bias-corrected.
    const double want = kParam[i] - lr * (g + alpha * (1 - b3) * g) / (std::fabs(g) + eps);
    expect_close(s.param[i], want, 1e-6, 1e-7);
    expect_close(s.states.at("exp_avg_slow")[i], (1 - b3) * g, 1e-4);
    expect_close(w.states.at("exp_avg_slow")[i], (1 - b3w) * g);
    const double want_w = kParam[i] - lr * (g + alpha / 4 * (1 - b3w) * g) / (std::fabs(g) + eps);
    expect_close(w.param[i], want_w, 1e-6, 1e-7);
  }
}

TEST(ReferenceAdemamix, WeightDecayIsAddedToTheUpdate) {
  const double lr = 1e-2, wd = 0.5;
  TensorState s = tensor();
  step("ademamix", {}, with("ademamix", {{"lr", lr}, {"weight_decay", wd}, {"alpha", 0.0}}), s,
       kGrad, 1);
  for (size_t i = 0; i < kParam.size(); ++i) {
    const double g = kGrad[i];
    expect_close(s.param[i], kParam[i] - lr * (g / (std::fabs(g) + 1e-8) + wd * kParam[i]), 1e-6,
                 1e-7);
  }
}

}  // namespace
}  // namespace fuseopt::reference

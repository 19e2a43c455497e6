// Reference update rules as plain loops; see reference_optimizers.h.
//
// Conventions used throughout (optimizers.md section 0):
//  - Scalars that depend only on t and the hypers are computed once per step in double, the way
//    PyTorch computes them in Python floats, and rounded with F() where they meet a tensor,
//    because a Python float passed to a float32 kernel is cast to float there.
//  - Element math is float32 and follows the order of operations of PyTorch's single-tensor
//    path, as its CPU kernels compute without vectorised FMA (ATEN_CPU_CAPABILITY=default):
//    `a.add_(b, alpha=s)` is a + s*b, `a.addcmul_(b, c, value=s)` is a + (s*b)*c,
//    `a.addcdiv_(b, c, value=s)` is a + (s*b)/c, and `a.lerp_(b, w)` is taken as a + w*(b-a)
//    (torch itself switches to b - (b-a)*(1-w) when w >= 0.5).
//  - Every rule here is elementwise except lamb and lars, so one loop per element that performs
//    an element's operations in PyTorch's order gives the same floats as PyTorch's sequence of
//    whole-tensor operations.
#include "tests/reference/reference_optimizers.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <stdexcept>
#include <utility>

namespace fuseopt::reference {
namespace {

using Vec = std::vector<float>;

// ---------------------------------------------------------------------------------------------
// The names table of rules/README.md.

struct RuleSpec {
  std::string name;
  std::vector<std::pair<std::string, double>> hypers;    // name, default
  std::vector<std::pair<std::string, int64_t>> options;  // name, default (all boolean)
};

std::vector<std::pair<std::string, double>> adam_hypers(double lr, double eps, double wd) {
  return {{"lr", lr}, {"beta1", 0.9}, {"beta2", 0.999}, {"eps", eps}, {"weight_decay", wd}};
}

const std::vector<RuleSpec>& specs() {
  static const std::vector<RuleSpec> table = {
      {"sgd",
       {{"lr", 1e-3}, {"momentum", 0.0}, {"dampening", 0.0}, {"weight_decay", 0.0}},
       {{"nesterov", 0}, {"maximize", 0}}},
      {"adam", adam_hypers(1e-3, 1e-8, 0.0), {{"amsgrad", 0}, {"maximize", 0}}},
      {"adamw", adam_hypers(1e-3, 1e-8, 1e-2), {{"amsgrad", 0}, {"maximize", 0}}},
      {"nadam",
       [] {
         auto h = adam_hypers(2e-3, 1e-8, 0.0);
         h.emplace_back("momentum_decay", 4e-3);
         return h;
       }(),
       {{"decoupled_weight_decay", 0}, {"maximize", 0}}},
      {"radam", adam_hypers(1e-3, 1e-8, 0.0), {{"decoupled_weight_decay", 0}, {"maximize", 0}}},
      {"adamax", adam_hypers(2e-3, 1e-8, 0.0), {{"maximize", 0}}},
      {"adagrad",
       {{"lr", 1e-2},
        {"lr_decay", 0.0},
        {"weight_decay", 0.0},
        {"initial_accumulator_value", 0.0},
        {"eps", 1e-10}},
       {{"maximize", 0}}},
      {"adadelta",
       {{"lr", 1.0}, {"rho", 0.9}, {"eps", 1e-6}, {"weight_decay", 0.0}},
       {{"maximize", 0}}},
      {"rmsprop",
       {{"lr", 1e-2}, {"alpha", 0.99}, {"eps", 1e-8}, {"weight_decay", 0.0}, {"momentum", 0.0}},
       {{"centered", 0}, {"maximize", 0}}},
      {"rprop",
       {{"lr", 1e-2},
        {"etaminus", 0.5},
        {"etaplus", 1.2},
        {"step_size_min", 1e-6},
        {"step_size_max", 50.0}},
       {{"maximize", 0}}},
      {"lion",
       {{"lr", 1e-4}, {"beta1", 0.9}, {"beta2", 0.99}, {"weight_decay", 0.0}},
       {{"maximize", 0}}},
      {"adabelief",
       adam_hypers(1e-3, 1e-16, 0.0),
       {{"amsgrad", 0},
        {"weight_decouple", 1},
        {"fixed_decay", 0},
        {"rectify", 1},
        {"degenerated_to_sgd", 1}}},
      {"adamomentum",
       adam_hypers(1e-3, 1e-16, 0.0),
       {{"amsgrad", 0}, {"weight_decouple", 1}, {"fixed_decay", 0}, {"rectify", 0}}},
      {"lamb",
       adam_hypers(1e-3, 1e-6, 1e-2),
       {{"bias_correction", 1},
        {"grad_averaging", 1},
        {"trust_clip", 0},
        {"always_adapt", 0},
        {"decoupled_decay", 0}}},
      {"lars",
       {{"lr", 1.0},
        {"momentum", 0.0},
        {"dampening", 0.0},
        {"weight_decay", 0.0},
        {"trust_coeff", 1e-3},
        {"eps", 1e-8}},
       {{"nesterov", 0}, {"trust_clip", 0}, {"always_adapt", 0}}},
      {"ademamix",
       {{"lr", 1e-3},
        {"beta1", 0.9},
        {"beta2", 0.999},
        {"beta3", 0.9999},
        {"alpha", 2.0},
        {"beta3_warmup", 0.0},
        {"alpha_warmup", 0.0},
        {"eps", 1e-8},
        {"weight_decay", 0.0}},
       {}},
  };
  return table;
}

const RuleSpec& find_spec(const std::string& rule) {
  for (const RuleSpec& spec : specs()) {
    if (spec.name == rule) return spec;
  }
  throw std::invalid_argument("reference: unknown rule '" + rule + "'");
}

// The hypers and options of one step, checked against the table.
class Args {
 public:
  Args(const RuleSpec& spec, const Options& options, const Hypers& hypers) : rule_(spec.name) {
    for (const auto& [name, value] : hypers) {
      if (!has(spec.hypers, name)) fail("unknown hyper '" + name + "'");
      hypers_[name] = value;
    }
    for (const auto& [name, unused] : spec.hypers) {
      if (hypers_.count(name) == 0) fail("missing hyper '" + name + "'");
    }
    for (const auto& [name, value] : spec.options) options_[name] = value != 0;
    for (const auto& [name, value] : options) {
      if (!has(spec.options, name)) fail("unknown option '" + name + "'");
      if (value != 0 && value != 1) fail("option '" + name + "' must be 0 or 1");
      options_[name] = value != 0;
    }
  }

  double h(const std::string& name) const { return hypers_.at(name); }
  bool o(const std::string& name) const { return options_.at(name); }

 private:
  template <typename T>
  static bool has(const std::vector<std::pair<std::string, T>>& list, const std::string& name) {
    for (const auto& entry : list) {
      if (entry.first == name) return true;
    }
    return false;
  }
  [[noreturn]] void fail(const std::string& what) const {
    throw std::invalid_argument("reference: rule '" + rule_ + "': " + what);
  }

  std::string rule_;
  std::map<std::string, double> hypers_;
  std::map<std::string, bool> options_;
};

// ---------------------------------------------------------------------------------------------
// Element and tensor helpers.

// A Python float meeting a float32 tensor.
float F(double x) { return static_cast<float>(x); }

// torch.sign: sign(0) = 0 (and NaN gives 0, as (0 < x) - (x < 0) does).
float sign(float x) { return x > 0.0f ? 1.0f : (x < 0.0f ? -1.0f : 0.0f); }

// torch.maximum propagates NaN.
float maximum(float a, float b) {
  if (std::isnan(a) || std::isnan(b)) return std::numeric_limits<float>::quiet_NaN();
  return a > b ? a : b;
}

// torch.clamp(x, lo, hi) keeps NaN.
float clamp(float x, float lo, float hi) {
  if (std::isnan(x)) return x;
  if (x < lo) x = lo;
  if (x > hi) x = hi;
  return x;
}

float lerp(float a, float b, float w) { return a + w * (b - a); }

// `self.addcdiv_(t1, t2, value=v)`. PyTorch's CPU kernel computes self + v * t1 / t2, that is
// (v*t1)/t2; its CUDA kernel computes v * (t1/t2). We follow the CPU one, which can be checked
// bit for bit.
float addcdiv(float self, float value, float t1, float t2) { return self + value * t1 / t2; }

// L2 norm accumulated in double, in index order.
double norm(const Vec& x) {
  double sum = 0.0;
  for (float v : x) sum += static_cast<double>(v) * static_cast<double>(v);
  return std::sqrt(sum);
}

double pow_t(double base, int64_t t) { return std::pow(base, static_cast<double>(t)); }

// Creates a state at t == 1 (step() clears the tensor's states first).
void create(TensorState& s, const std::string& name, float init = 0.0f) {
  s.states[name] = Vec(s.param.size(), init);
}

Vec& state(TensorState& s, const std::string& name) {
  auto it = s.states.find(name);
  if (it == s.states.end()) {
    throw std::invalid_argument("reference: state '" + name + "' is missing at t > 1");
  }
  if (it->second.size() != s.param.size()) {
    throw std::invalid_argument("reference: state '" + name + "' has the wrong size");
  }
  return it->second;
}

double& scalar(TensorState& s, const std::string& name) {
  auto it = s.scalars.find(name);
  if (it == s.scalars.end()) {
    throw std::invalid_argument("reference: scalar state '" + name + "' is missing");
  }
  return it->second;
}

// ---------------------------------------------------------------------------------------------
// The rules. Each takes the gradient by value: PyTorch rebinds a local `grad` and never writes it
// back, so neither do we.

// optimizers.md section 1; torch/optim/sgd.py _single_tensor_sgd.
void sgd(const Args& a, TensorState& s, Vec g, int64_t t) {
  const double lr = a.h("lr"), mu = a.h("momentum"), damp = a.h("dampening");
  const double wd = a.h("weight_decay");
  const bool nesterov = a.o("nesterov"), maximize = a.o("maximize");
  if (t == 1) create(s, "momentum_buffer");  // stays 0 while momentum == 0
  Vec& p = s.param;
  Vec& b = state(s, "momentum_buffer");
  for (size_t i = 0; i < p.size(); ++i) {
    float gi = maximize ? -g[i] : g[i];
    if (wd != 0) gi = gi + F(wd) * p[i];
    float d = gi;
    if (mu != 0) {
      // The first buffer is a clone of g: dampening is not applied to it.
      b[i] = t == 1 ? gi : b[i] * F(mu) + F(1.0 - damp) * gi;
      d = nesterov ? gi + F(mu) * b[i] : b[i];
    }
    p[i] = p[i] + F(-lr) * d;
  }
}

// optimizers.md sections 2 and 3; torch/optim/adam.py _single_tensor_adam. AdamW is Adam with
// decoupled weight decay.
void adam_family(const Args& a, TensorState& s, Vec g, int64_t t, bool decoupled) {
  const double lr = a.h("lr"), b1 = a.h("beta1"), b2 = a.h("beta2"), eps = a.h("eps");
  const double wd = a.h("weight_decay");
  const bool amsgrad = a.o("amsgrad"), maximize = a.o("maximize");
  if (t == 1) {
    create(s, "exp_avg");
    create(s, "exp_avg_sq");
    if (amsgrad) create(s, "max_exp_avg_sq");
  }
  const double bc1 = 1.0 - pow_t(b1, t);
  const double bc2 = 1.0 - pow_t(b2, t);
  const double step_size = lr / bc1;
  const double bc2_sqrt = std::pow(bc2, 0.5);  // `bias_correction2 ** 0.5`
  Vec& p = s.param;
  Vec& m = state(s, "exp_avg");
  Vec& v = state(s, "exp_avg_sq");
  Vec* vmax = amsgrad ? &state(s, "max_exp_avg_sq") : nullptr;
  for (size_t i = 0; i < p.size(); ++i) {
    float gi = maximize ? -g[i] : g[i];
    if (wd != 0) {
      if (decoupled) {
        p[i] = p[i] * F(1.0 - lr * wd);
      } else {
        gi = gi + F(wd) * p[i];
      }
    }
    m[i] = lerp(m[i], gi, F(1.0 - b1));
    v[i] = v[i] * F(b2) + F(1.0 - b2) * gi * gi;
    float second = v[i];
    if (vmax != nullptr) {
      // amsgrad keeps the max of the raw v and divides it by the current sqrt(bc2).
      (*vmax)[i] = maximum((*vmax)[i], v[i]);
      second = (*vmax)[i];
    }
    // eps is added after dividing by sqrt(bc2), not to the raw sqrt(v).
    const float denom = std::sqrt(second) / F(bc2_sqrt) + F(eps);
    p[i] = addcdiv(p[i], F(-step_size), m[i], denom);
  }
}

void adam(const Args& a, TensorState& s, Vec g, int64_t t) {
  adam_family(a, s, std::move(g), t, false);
}

void adamw(const Args& a, TensorState& s, Vec g, int64_t t) {
  adam_family(a, s, std::move(g), t, true);
}

// optimizers.md section 4; torch/optim/nadam.py _single_tensor_nadam.
void nadam(const Args& a, TensorState& s, Vec g, int64_t t) {
  const double lr = a.h("lr"), b1 = a.h("beta1"), b2 = a.h("beta2"), eps = a.h("eps");
  const double wd = a.h("weight_decay"), psi = a.h("momentum_decay");
  const bool decoupled = a.o("decoupled_weight_decay"), maximize = a.o("maximize");
  if (t == 1) {
    create(s, "exp_avg");
    create(s, "exp_avg_sq");
    s.scalars["mu_product"] = 1.0;
  }
  const double td = static_cast<double>(t);
  const double bc2 = 1.0 - pow_t(b2, t);
  const double mu = b1 * (1.0 - 0.5 * std::pow(0.96, td * psi));
  const double mu_next = b1 * (1.0 - 0.5 * std::pow(0.96, (td + 1.0) * psi));
  Vec& p = s.param;
  Vec& m = state(s, "exp_avg");
  Vec& v = state(s, "exp_avg_sq");
  double& mu_product = scalar(s, "mu_product");
  mu_product *= mu;
  const double mu_product_next = mu_product * mu_next;
  // PyTorch applies the Nesterov step as two addcdivs, one on g and one on m.
  const double g_coeff = -lr * (1.0 - mu) / (1.0 - mu_product);
  const double m_coeff = (-lr * mu_next) / (1.0 - mu_product_next);
  for (size_t i = 0; i < p.size(); ++i) {
    float gi = maximize ? -g[i] : g[i];
    if (wd != 0) {
      if (decoupled) {
        p[i] = p[i] * F(1.0 - lr * wd);
      } else {
        gi = gi + F(wd) * p[i];
      }
    }
    m[i] = lerp(m[i], gi, F(1.0 - b1));
    v[i] = v[i] * F(b2) + F(1.0 - b2) * gi * gi;
    // sqrt(v / bc2), unlike Adam's sqrt(v) / sqrt(bc2).
    const float denom = std::sqrt(v[i] / F(bc2)) + F(eps);
    p[i] = addcdiv(p[i], F(g_coeff), gi, denom);
    p[i] = addcdiv(p[i], F(m_coeff), m[i], denom);
  }
}

// optimizers.md section 5; torch/optim/radam.py _single_tensor_radam.
void radam(const Args& a, TensorState& s, Vec g, int64_t t) {
  const double lr = a.h("lr"), b1 = a.h("beta1"), b2 = a.h("beta2"), eps = a.h("eps");
  const double wd = a.h("weight_decay");
  const bool decoupled = a.o("decoupled_weight_decay"), maximize = a.o("maximize");
  if (t == 1) {
    create(s, "exp_avg");
    create(s, "exp_avg_sq");
  }
  const double td = static_cast<double>(t);
  const double bc1 = 1.0 - pow_t(b1, t);
  const double bc2 = 1.0 - pow_t(b2, t);
  const double rho_inf = 2.0 / (1.0 - b2) - 1.0;
  const double rho_t = rho_inf - 2.0 * td * pow_t(b2, t) / bc2;
  const bool adaptive = rho_t > 5.0;  // torch uses > 5 (AdaBelief's fork uses >= 5)
  const double rect = adaptive ? std::pow((rho_t - 4.0) * (rho_t - 2.0) * rho_inf /
                                              ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t),
                                          0.5)
                               : 0.0;
  const double bc2_sqrt = std::pow(bc2, 0.5);
  Vec& p = s.param;
  Vec& m = state(s, "exp_avg");
  Vec& v = state(s, "exp_avg_sq");
  for (size_t i = 0; i < p.size(); ++i) {
    float gi = maximize ? -g[i] : g[i];
    if (wd != 0) {
      if (decoupled) {
        p[i] = p[i] * F(1.0 - lr * wd);
      } else {
        gi = gi + F(wd) * p[i];
      }
    }
    m[i] = lerp(m[i], gi, F(1.0 - b1));
    v[i] = v[i] * F(b2) + F(1.0 - b2) * gi * gi;
    const float m_hat = m[i] / F(bc1);
    if (adaptive) {
      // `sqrt(bc2) / (sqrt(v) + eps)`: a Python float divided by a tensor is
      // tensor.reciprocal() * float. eps goes on the un-normalised sqrt(v), unlike Adam.
      const float adaptive_lr = (1.0f / (std::sqrt(v[i]) + F(eps))) * F(bc2_sqrt);
      p[i] = p[i] - ((m_hat * F(lr)) * adaptive_lr) * F(rect);
    } else {
      p[i] = p[i] - m_hat * F(lr);
    }
  }
}

// optimizers.md section 6; torch/optim/adamax.py _single_tensor_adamax.
void adamax(const Args& a, TensorState& s, Vec g, int64_t t) {
  const double lr = a.h("lr"), b1 = a.h("beta1"), b2 = a.h("beta2"), eps = a.h("eps");
  const double wd = a.h("weight_decay");
  const bool maximize = a.o("maximize");
  if (t == 1) {
    create(s, "exp_avg");
    create(s, "exp_inf");
  }
  const double clr = lr / (1.0 - pow_t(b1, t));
  Vec& p = s.param;
  Vec& m = state(s, "exp_avg");
  Vec& u = state(s, "exp_inf");
  for (size_t i = 0; i < p.size(); ++i) {
    float gi = maximize ? -g[i] : g[i];
    if (wd != 0) gi = gi + F(wd) * p[i];
    m[i] = lerp(m[i], gi, F(1.0 - b1));
    u[i] = maximum(u[i] * F(b2), std::fabs(gi) + F(eps));  // eps inside the max
    p[i] = addcdiv(p[i], F(-clr), m[i], u[i]);
  }
}

// optimizers.md section 7; torch/optim/adagrad.py _single_tensor_adagrad.
void adagrad(const Args& a, TensorState& s, Vec g, int64_t t) {
  const double lr = a.h("lr"), lr_decay = a.h("lr_decay"), wd = a.h("weight_decay");
  const double eps = a.h("eps");
  const bool maximize = a.o("maximize");
  if (t == 1) create(s, "sum", F(a.h("initial_accumulator_value")));
  const double clr = lr / (1.0 + static_cast<double>(t - 1) * lr_decay);
  Vec& p = s.param;
  Vec& sum = state(s, "sum");
  for (size_t i = 0; i < p.size(); ++i) {
    float gi = maximize ? -g[i] : g[i];
    if (wd != 0) gi = gi + F(wd) * p[i];
    sum[i] = sum[i] + gi * gi;  // addcmul_(g, g, value=1)
    const float std_dev = std::sqrt(sum[i]) + F(eps);
    p[i] = addcdiv(p[i], F(-clr), gi, std_dev);
  }
}

// optimizers.md section 8; torch/optim/adadelta.py _single_tensor_adadelta.
void adadelta(const Args& a, TensorState& s, Vec g, int64_t t) {
  const double lr = a.h("lr"), rho = a.h("rho"), eps = a.h("eps"), wd = a.h("weight_decay");
  const bool maximize = a.o("maximize");
  if (t == 1) {
    create(s, "square_avg");
    create(s, "acc_delta");
  }
  Vec& p = s.param;
  Vec& v = state(s, "square_avg");
  Vec& u = state(s, "acc_delta");
  for (size_t i = 0; i < p.size(); ++i) {
    float gi = maximize ? -g[i] : g[i];
    if (wd != 0) gi = gi + F(wd) * p[i];
    v[i] = v[i] * F(rho) + F(1.0 - rho) * gi * gi;
    const float std_dev = std::sqrt(v[i] + F(eps));
    // `delta = acc_delta.add(eps).sqrt_(); delta.div_(std).mul_(grad)`
    const float delta = std::sqrt(u[i] + F(eps)) / std_dev * gi;
    u[i] = u[i] * F(rho) + F(1.0 - rho) * delta * delta;
    p[i] = p[i] + F(-lr) * delta;
  }
}

// optimizers.md section 9; torch/optim/rmsprop.py _single_tensor_rmsprop.
void rmsprop(const Args& a, TensorState& s, Vec g, int64_t t) {
  const double lr = a.h("lr"), alpha = a.h("alpha"), eps = a.h("eps");
  const double wd = a.h("weight_decay"), momentum = a.h("momentum");
  const bool centered = a.o("centered"), maximize = a.o("maximize");
  if (t == 1) {
    create(s, "square_avg");
    create(s, "momentum_buffer");  // zero-initialised, unlike SGD's; stays 0 while momentum == 0
    if (centered) create(s, "grad_avg");
  }
  Vec& p = s.param;
  Vec& v = state(s, "square_avg");
  Vec& b = state(s, "momentum_buffer");
  Vec* g_avg = centered ? &state(s, "grad_avg") : nullptr;
  for (size_t i = 0; i < p.size(); ++i) {
    float gi = maximize ? -g[i] : g[i];
    if (wd != 0) gi = gi + F(wd) * p[i];
    v[i] = v[i] * F(alpha) + F(1.0 - alpha) * gi * gi;
    float avg;
    if (g_avg != nullptr) {
      float& ga = (*g_avg)[i];
      ga = lerp(ga, gi, F(1.0 - alpha));
      avg = std::sqrt(v[i] + (-1.0f * ga) * ga);  // addcmul(ga, ga, value=-1)
    } else {
      avg = std::sqrt(v[i]);
    }
    avg = avg + F(eps);  // eps outside the sqrt
    if (momentum > 0) {
      b[i] = addcdiv(b[i] * F(momentum), 1.0f, gi, avg);
      p[i] = p[i] + F(-lr) * b[i];
    } else {
      p[i] = addcdiv(p[i], F(-lr), gi, avg);
    }
  }
}

// optimizers.md section 10; torch/optim/rprop.py _single_tensor_rprop.
void rprop(const Args& a, TensorState& s, Vec g, int64_t t) {
  const float etaminus = F(a.h("etaminus")), etaplus = F(a.h("etaplus"));
  const float step_min = F(a.h("step_size_min")), step_max = F(a.h("step_size_max"));
  const bool maximize = a.o("maximize");
  if (t == 1) {
    create(s, "prev");
    create(s, "step_size", F(a.h("lr")));
  }
  Vec& p = s.param;
  Vec& prev = state(s, "prev");
  Vec& eta = state(s, "step_size");
  for (size_t i = 0; i < p.size(); ++i) {
    float gi = maximize ? -g[i] : g[i];
    // The three masked assignments of torch, in torch's order:
    // sign[sign>0] = etaplus; sign[sign<0] = etaminus; sign[sign==0] = 1.
    float f = sign(gi * prev[i]);
    if (f > 0.0f) f = etaplus;
    if (f < 0.0f) f = etaminus;
    if (f == 0.0f) f = 1.0f;
    eta[i] = clamp(eta[i] * f, step_min, step_max);  // clamped every step, t == 1 included
    if (f == etaminus) gi = 0.0f;                    // grad[sign.eq(etaminus)] = 0
    p[i] = p[i] + (-1.0f * sign(gi)) * eta[i];       // addcmul_(sign(g), eta, value=-1)
    prev[i] = gi;
  }
}

// optimizers.md section 12; google/automl lion_pytorch.py.
void lion(const Args& a, TensorState& s, Vec g, int64_t t) {
  const double lr = a.h("lr"), b1 = a.h("beta1"), b2 = a.h("beta2"), wd = a.h("weight_decay");
  const bool maximize = a.o("maximize");
  if (t == 1) create(s, "exp_avg");
  Vec& p = s.param;
  Vec& m = state(s, "exp_avg");
  for (size_t i = 0; i < p.size(); ++i) {
    const float gi = maximize ? -g[i] : g[i];
    p[i] = p[i] * F(1.0 - lr * wd);  // unconditional in the official code
    const float c = m[i] * F(b1) + gi * F(1.0 - b1);
    p[i] = p[i] + F(-lr) * sign(c);
    m[i] = m[i] * F(b2) + F(1.0 - b2) * gi;
  }
}

// Weight decay of adabelief and adamomentum (both from the AdaBelief code base): decoupled,
// p *= 1 - lr*wd (or 1 - wd with fixed_decay) unconditionally; coupled only when wd != 0.
struct BeliefDecay {
  bool decouple;
  double factor;  // p multiplier when decoupled
  double l2;      // g += l2 * p when coupled (0: none)
};

BeliefDecay belief_decay(const Args& a) {
  const double lr = a.h("lr"), wd = a.h("weight_decay");
  if (a.o("weight_decouple")) return {true, a.o("fixed_decay") ? 1.0 - wd : 1.0 - lr * wd, 0.0};
  return {false, 1.0, wd};
}

// The RAdam-style rectification of AdaBelief (forked from RAdam, with N_sma >= 5 and sqrt(bc2)
// inside the step size, unlike torch's RAdam).
struct Rectified {
  bool adaptive;     // N_sma >= 5
  double step_size;  // multiplies lr
};

Rectified rectification(double b1, double b2, int64_t t, bool degenerated_to_sgd) {
  const double beta2_t = pow_t(b2, t);
  const double n_max = 2.0 / (1.0 - b2) - 1.0;
  const double n_sma = n_max - 2.0 * static_cast<double>(t) * beta2_t / (1.0 - beta2_t);
  if (n_sma >= 5.0) {
    const double k = std::sqrt((1.0 - beta2_t) * (n_sma - 4.0) / (n_max - 4.0) * (n_sma - 2.0) /
                               n_sma * n_max / (n_max - 2.0)) /
                     (1.0 - pow_t(b1, t));
    return {true, k};
  }
  if (degenerated_to_sgd) return {false, 1.0 / (1.0 - pow_t(b1, t))};
  return {false, -1.0};  // no update at all
}

// optimizers.md section 16(a); adabelief-pytorch 0.2.1 AdaBelief.step.
void adabelief(const Args& a, TensorState& s, Vec g, int64_t t) {
  const double lr = a.h("lr"), b1 = a.h("beta1"), b2 = a.h("beta2"), eps = a.h("eps");
  const bool amsgrad = a.o("amsgrad"), rectify = a.o("rectify");
  if (t == 1) {
    create(s, "exp_avg");
    create(s, "exp_avg_var");
    if (amsgrad) create(s, "max_exp_avg_var");
  }
  const BeliefDecay decay = belief_decay(a);
  const double bc1 = 1.0 - pow_t(b1, t);
  const double bc2_sqrt = std::sqrt(1.0 - pow_t(b2, t));  // math.sqrt(bias_correction2)
  const Rectified rect = rectification(b1, b2, t, a.o("degenerated_to_sgd"));
  Vec& p = s.param;
  Vec& m = state(s, "exp_avg");
  Vec& var = state(s, "exp_avg_var");
  Vec* vmax = amsgrad ? &state(s, "max_exp_avg_var") : nullptr;
  for (size_t i = 0; i < p.size(); ++i) {
    float gi = g[i];
    // Weight decay comes before the step counter is incremented; it does not matter here.
    if (decay.decouple) {
      p[i] = p[i] * F(decay.factor);
    } else if (decay.l2 != 0) {
      gi = gi + F(decay.l2) * p[i];
    }
    m[i] = m[i] * F(b1) + F(1.0 - b1) * gi;
    const float residual = gi - m[i];  // uses the updated m
    var[i] = var[i] * F(b2) + F(1.0 - b2) * residual * residual;
    var[i] = var[i] + F(eps);  // in place: eps accumulates into the state every step
    float second = var[i];
    if (vmax != nullptr) {
      // amsgrad: the max of the var that already holds +eps. As in the official code it
      // feeds only the un-rectified denominator; the rectified branch reads exp_avg_var.
      (*vmax)[i] = maximum((*vmax)[i], var[i]);
      second = (*vmax)[i];
    }
    if (!rectify) {
      const float denom = std::sqrt(second) / F(bc2_sqrt) + F(eps);  // eps again, outside
      p[i] = addcdiv(p[i], F(-(lr / bc1)), m[i], denom);
    } else if (rect.adaptive) {
      const float denom = std::sqrt(var[i]) + F(eps);
      p[i] = addcdiv(p[i], F(-rect.step_size * lr), m[i], denom);
    } else if (rect.step_size > 0) {
      p[i] = p[i] + F(-rect.step_size * lr) * m[i];
    }
  }
}

// optimizers.md section 24; the AdaM3 authors' code (an AdaBelief fork).
void adamomentum(const Args& a, TensorState& s, Vec g, int64_t t) {
  const double lr = a.h("lr"), b1 = a.h("beta1"), b2 = a.h("beta2"), eps = a.h("eps");
  const bool amsgrad = a.o("amsgrad"), rectify = a.o("rectify");
  if (t == 1) {
    create(s, "exp_avg");
    create(s, "exp_avg_sq");
    if (amsgrad) create(s, "max_exp_avg_sq");
  }
  const BeliefDecay decay = belief_decay(a);
  const double bc1 = 1.0 - pow_t(b1, t);
  const double bc2_sqrt = std::sqrt(1.0 - pow_t(b2, t));
  // No degenerated_to_sgd option: below N_sma = 5 the rectified variant always takes the
  // un-adapted step lr/bc1 * m.
  const Rectified rect = rectification(b1, b2, t, true);
  Vec& p = s.param;
  Vec& m = state(s, "exp_avg");
  Vec& v = state(s, "exp_avg_sq");
  Vec* vmax = amsgrad ? &state(s, "max_exp_avg_sq") : nullptr;
  for (size_t i = 0; i < p.size(); ++i) {
    float gi = g[i];
    if (decay.decouple) {
      p[i] = p[i] * F(decay.factor);
    } else if (decay.l2 != 0) {
      gi = gi + F(decay.l2) * p[i];
    }
    m[i] = m[i] * F(b1) + F(1.0 - b1) * gi;
    v[i] = v[i] * F(b2) + F(1.0 - b2) * m[i] * m[i];  // second moment of the updated m, not g
    v[i] = v[i] + F(eps);                             // eps stored in the state, inside the sqrt
    float second = v[i];
    if (vmax != nullptr) {
      // As in adabelief: the max feeds only the un-rectified branch; the authors'
      // rectified branch reads v.
      (*vmax)[i] = maximum((*vmax)[i], v[i]);
      second = (*vmax)[i];
    }
    if (!rectify) {
      const float denom = std::sqrt(second) / F(bc2_sqrt);  // no eps outside the sqrt
      p[i] = addcdiv(p[i], F(-(lr / bc1)), m[i], denom);
    } else if (rect.adaptive) {
      const float denom = std::sqrt(v[i]) + F(eps);
      p[i] = addcdiv(p[i], F(-rect.step_size * lr), m[i], denom);
    } else {
      p[i] = p[i] + F(-rect.step_size * lr) * m[i];
    }
  }
}

// optimizers.md section 13(a); timm/optim/lamb.py, without the global max_grad_norm clipping.
void lamb(const Args& a, TensorState& s, Vec g, int64_t t) {
  const double lr = a.h("lr"), b1 = a.h("beta1"), b2 = a.h("beta2"), eps = a.h("eps");
  const double wd = a.h("weight_decay");
  const bool bias_correction = a.o("bias_correction"), always_adapt = a.o("always_adapt");
  if (t == 1) {
    create(s, "exp_avg");
    create(s, "exp_avg_sq");
  }
  // With grad_averaging timm lerps m towards g by 1 - beta1; without it, it writes
  // `exp_avg.mul_(beta1).add_(grad, alpha=1)`, i.e. m = beta1*m + g.
  const bool grad_averaging = a.o("grad_averaging");
  const double bc1 = bias_correction ? 1.0 - pow_t(b1, t) : 1.0;
  const double bc2 = bias_correction ? 1.0 - pow_t(b2, t) : 1.0;
  const double bc2_sqrt = std::pow(bc2, 0.5);  // `bias_correction2 ** 0.5`
  Vec& p = s.param;
  Vec& m = state(s, "exp_avg");
  Vec& v = state(s, "exp_avg_sq");
  Vec u(p.size());
  // Phase 1: moments and the Adam direction.
  for (size_t i = 0; i < p.size(); ++i) {
    m[i] = grad_averaging ? lerp(m[i], g[i], F(1.0 - b1)) : m[i] * F(b1) + g[i];
    v[i] = v[i] * F(b2) + F(1.0 - b2) * g[i] * g[i];
    const float denom = std::sqrt(v[i]) / F(bc2_sqrt) + F(eps);
    u[i] = (m[i] / F(bc1)) / denom;
  }
  if (wd != 0) {
    const bool decoupled = a.o("decoupled_decay");
    for (size_t i = 0; i < p.size(); ++i) {
      if (decoupled) {
        // timm writes `p.add_(p, alpha=-lr*wd)`, i.e. p*(1 - lr*wd) rounded as p + (-lr*wd)*p.
        // The decayed p is what ||p|| sees below.
        p[i] = p[i] + F(-lr * wd) * p[i];
      } else {
        u[i] = u[i] + F(wd) * p[i];
      }
    }
  }
  // Phase 2: the per-tensor trust ratio ||p|| / ||u||, 1 when either norm is 0.
  if (wd != 0 || always_adapt) {
    const double w_norm = norm(p), u_norm = norm(u);
    double ratio = (w_norm > 0 && u_norm > 0) ? w_norm / u_norm : 1.0;
    if (a.o("trust_clip")) ratio = std::min(ratio, 1.0);
    for (float& x : u) x = x * F(ratio);
  }
  for (size_t i = 0; i < p.size(); ++i) p[i] = p[i] + F(-lr) * u[i];
}

// optimizers.md section 14(a); timm/optim/lars.py.
void lars(const Args& a, TensorState& s, Vec g, int64_t t) {
  const double lr = a.h("lr"), mu = a.h("momentum"), damp = a.h("dampening");
  const double wd = a.h("weight_decay"), trust_coeff = a.h("trust_coeff"), eps = a.h("eps");
  const bool nesterov = a.o("nesterov");
  if (t == 1) create(s, "momentum_buffer");  // stays 0 while momentum == 0
  Vec& p = s.param;
  Vec& b = state(s, "momentum_buffer");
  // Phase 1: the per-tensor LARS ratio from the norms of the inputs, with weight decay folded
  // into the gradient.
  if (wd != 0 || a.o("always_adapt")) {
    const double w_norm = norm(p), g_norm = norm(g);
    double ratio = trust_coeff * w_norm / (g_norm + w_norm * wd + eps);
    if (!(w_norm > 0 && g_norm > 0)) ratio = 1.0;
    if (a.o("trust_clip")) ratio = std::min(ratio / lr, 1.0);  // LARC; applies to a ratio of 1 too
    for (size_t i = 0; i < p.size(); ++i) g[i] = (g[i] + F(wd) * p[i]) * F(ratio);
  }
  // Phase 2: SGD exactly as torch's (section 1).
  for (size_t i = 0; i < p.size(); ++i) {
    float d = g[i];
    if (mu != 0) {
      b[i] = t == 1 ? g[i] : b[i] * F(mu) + F(1.0 - damp) * g[i];
      d = nesterov ? g[i] + F(mu) * b[i] : b[i];
    }
    p[i] = p[i] + F(-lr) * d;
  }
}

// apple/ml-ademamix pytorch/ademamix.py schedulers; `step` is the 1-based t.
double linear_warmup(double step, double end, double start, double warmup) {
  if (step < warmup) {
    const double a = step / warmup;
    return (1.0 - a) * start + a * end;
  }
  return end;
}

double half_life_warmup(double step, double end, double start, double warmup) {
  const auto f = [](double beta) { return std::log(0.5) / std::log(beta + 1e-8) - 1.0; };
  const auto f_inv = [](double x) { return std::pow(0.5, 1.0 / (x + 1.0)); };
  if (step < warmup) {
    const double a = step / warmup;
    return f_inv((1.0 - a) * f(start) + a * f(end));
  }
  return end;
}

// optimizers.md section 18; apple/ml-ademamix pytorch/ademamix.py.
void ademamix(const Args& a, TensorState& s, Vec g, int64_t t) {
  const double lr = a.h("lr"), b1 = a.h("beta1"), b2 = a.h("beta2"), eps = a.h("eps");
  const double wd = a.h("weight_decay");
  const double td = static_cast<double>(t);
  if (t == 1) {
    create(s, "exp_avg");
    create(s, "exp_avg_sq");
    create(s, "exp_avg_slow");
  }
  const double bc1 = 1.0 - pow_t(b1, t);
  const double bc2_sqrt = std::sqrt(1.0 - pow_t(b2, t));
  // A warmup of 0 stands for PyTorch's None.
  const double alpha_warmup = a.h("alpha_warmup"), beta3_warmup = a.h("beta3_warmup");
  const double alpha =
      alpha_warmup != 0 ? linear_warmup(td, a.h("alpha"), 0.0, alpha_warmup) : a.h("alpha");
  const double beta3 =
      beta3_warmup != 0 ? half_life_warmup(td, a.h("beta3"), b1, beta3_warmup) : a.h("beta3");
  Vec& p = s.param;
  Vec& m1 = state(s, "exp_avg");
  Vec& v = state(s, "exp_avg_sq");
  Vec& m2 = state(s, "exp_avg_slow");
  for (size_t i = 0; i < p.size(); ++i) {
    // With beta1 == 0 the official code uses g itself as the fast EMA.
    m1[i] = b1 != 0 ? m1[i] * F(b1) + F(1.0 - b1) * g[i] : g[i];
    m2[i] = m2[i] * F(beta3) + F(1.0 - beta3) * g[i];  // slow EMA, never bias-corrected
    v[i] = v[i] * F(b2) + F(1.0 - b2) * g[i] * g[i];
    const float denom = std::sqrt(v[i]) / F(bc2_sqrt) + F(eps);
    float u = (m1[i] / F(bc1) + F(alpha) * m2[i]) / denom;
    u = u + F(wd) * p[i];
    p[i] = p[i] + F(-lr) * u;  // `p.add_(-lr * update)`
  }
}

using StepFn = void (*)(const Args&, TensorState&, Vec, int64_t);

StepFn find_step(const std::string& rule) {
  static const std::map<std::string, StepFn> table = {
      {"sgd", sgd},
      {"adam", adam},
      {"adamw", adamw},
      {"nadam", nadam},
      {"radam", radam},
      {"adamax", adamax},
      {"adagrad", adagrad},
      {"adadelta", adadelta},
      {"rmsprop", rmsprop},
      {"rprop", rprop},
      {"lion", lion},
      {"adabelief", adabelief},
      {"adamomentum", adamomentum},
      {"lamb", lamb},
      {"lars", lars},
      {"ademamix", ademamix},
  };
  auto it = table.find(rule);
  if (it == table.end()) throw std::invalid_argument("reference: unknown rule '" + rule + "'");
  return it->second;
}

}  // namespace

std::vector<std::string> rule_names() {
  std::vector<std::string> names;
  for (const RuleSpec& spec : specs()) names.push_back(spec.name);
  return names;
}

Hypers default_hypers(const std::string& rule) {
  const RuleSpec& spec = find_spec(rule);
  return Hypers(spec.hypers.begin(), spec.hypers.end());
}

std::vector<std::pair<std::string, std::vector<int64_t>>> option_space(const std::string& rule) {
  std::vector<std::pair<std::string, std::vector<int64_t>>> space;
  for (const auto& option : find_spec(rule).options) {
    space.emplace_back(option.first, std::vector<int64_t>{0, 1});
  }
  return space;
}

Options default_options(const std::string& rule) {
  const RuleSpec& spec = find_spec(rule);
  return Options(spec.options.begin(), spec.options.end());
}

void step(const std::string& rule, const Options& options, const Hypers& hypers,
          TensorState& tensor, const std::vector<float>& grad, int64_t t) {
  const Args args(find_spec(rule), options, hypers);
  const StepFn fn = find_step(rule);
  if (t < 1) throw std::invalid_argument("reference: t must be >= 1");
  if (grad.size() != tensor.param.size()) {
    throw std::invalid_argument("reference: grad and param sizes differ");
  }
  if (t == 1) {
    tensor.states.clear();
    tensor.scalars.clear();
  }
  fn(args, tensor, grad, t);
}

}  // namespace fuseopt::reference

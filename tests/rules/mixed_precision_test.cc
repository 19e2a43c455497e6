// Storage types in rules, run by the reference interpreter: what a bf16/f16 store keeps, master
// weights, and stochastic rounding (reproducible, independent of chunking, unbiased), checked
// against formulas written here with support/low_precision.h's conversions.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <map>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "frontend/rule.h"
#include "ir/grad_transform.h"
#include "ir/interpreter.h"
#include "ir/printer.h"
#include "support/error.h"
#include "support/low_precision.h"

namespace fuseopt {
namespace {

struct RuleRun {
  ir::Kernel kernel;
  std::vector<std::vector<float>> buffers;
  ir::TensorArgs tensor;
  std::vector<double> hypers;

  RuleRun(const std::string& text, int64_t numel, const std::vector<float>& param)
      : kernel(frontend::rule_from_text(text).compile({})) {
    buffers.assign(kernel.buffers.size(), std::vector<float>(static_cast<size_t>(numel)));
    buffers[0] = param;
    tensor.numel = numel;
    for (auto& b : buffers) tensor.buffers.push_back(b.data());
    for (const auto& h : kernel.hypers) hypers.push_back(h.default_value);
  }
  void set_hyper(const std::string& name, double value) {
    hypers[static_cast<size_t>(kernel.hyper_index(name))] = value;
  }
  std::vector<float>& buffer(const std::string& name) {
    return buffers[static_cast<size_t>(kernel.buffer_index(name))];
  }
  // Steps 1..steps with the gradient `grad(t)`.
  template <typename GradFn>
  void steps(int count, GradFn grad) {
    ir::Interpreter interpreter(kernel);
    interpreter.initialize(tensor, hypers);
    for (int t = 1; t <= count; ++t) {
      buffers[1] = grad(t);
      tensor.buffers[1] = buffers[1].data();
      interpreter.step(std::span(&tensor, 1), hypers, t);
    }
  }
};

std::vector<float> representable(StorageType type, int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-2.0f, 2.0f);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = round_to_storage(dist(rng), type);
  return v;
}

constexpr const char* kSgdBf16 = R"(rule sgd_bf16 "sgd on a bf16 parameter"
hyper lr = 0.01
param : bf16
step {
  param = param - lr * grad
}
)";

TEST(MixedPrecision, Bf16ParamStoresTheNearestBf16) {
  const int64_t n = 1000;
  const std::vector<float> p0 = representable(StorageType::kBF16, n, 1);
  const std::vector<float> g = representable(StorageType::kF32, n, 2);
  RuleRun run(kSgdBf16, n, p0);
  EXPECT_EQ(run.kernel.buffers[0].storage, StorageType::kBF16);
  EXPECT_FALSE(run.kernel.has_stochastic_store());
  EXPECT_EQ(run.kernel.hyper_index(ir::kRoundingSeedHyper), -1);
  run.steps(1, [&](int) { return g; });
  for (size_t i = 0; i < p0.size(); ++i) {
    // The expression in f32 (the hyper rounded to f32, as every element use of it), then
    // rounded to nearest even bf16.
    const float expected = round_to_storage(p0[i] - 0.01f * g[i], StorageType::kBF16);
    ASSERT_EQ(run.buffers[0][i], expected) << i;
  }
}

TEST(MixedPrecision, StatesRoundToTheirTypeAndStartRounded) {
  const char* text = R"(rule ema_f16 "an f16 moving average"
hyper lr = 0.1
hyper beta = 0.9
state m = 0.1 : f16
step {
  m = beta * m + (1 - beta) * grad
  param = param - lr * m
}
)";
  const int64_t n = 64;
  const std::vector<float> p0 = representable(StorageType::kF32, n, 3);
  const std::vector<float> g = representable(StorageType::kF32, n, 4);
  RuleRun run(text, n, p0);
  ir::Interpreter interpreter(run.kernel);
  interpreter.initialize(run.tensor, run.hypers);
  for (float m : run.buffer("m")) ASSERT_EQ(m, round_to_storage(0.1f, StorageType::kF16));
  run.buffers[1] = g;
  interpreter.step(std::span(&run.tensor, 1), run.hypers, 1);
  const float m0 = round_to_storage(0.1f, StorageType::kF16);
  for (size_t i = 0; i < static_cast<size_t>(n); ++i) {
    // The param update sees the step's f32 value of m; only the stored m is rounded.
    // (1 - beta) is host arithmetic in f64, rounded to f32 once.
    const float m_f32 = 0.9f * m0 + static_cast<float>(1 - 0.9) * g[i];
    ASSERT_EQ(run.buffer("m")[i], round_to_storage(m_f32, StorageType::kF16)) << i;
    ASSERT_EQ(run.buffers[0][i], p0[i] - 0.1f * m_f32) << i;
  }
}

TEST(MixedPrecision, MasterWeightsKeepWhatBf16Loses) {
  // An f32 master copy of a bf16 parameter: the master accumulates updates far below bf16's
  // spacing, and the parameter is always the master rounded.
  const char* text = R"(rule sgd_master "sgd with f32 master weights for a bf16 parameter"
hyper lr = 1e-4
param : bf16
state master = param : f32
step {
  master = master - lr * grad
  param = master
}
)";
  const int64_t n = 16;
  const std::vector<float> p0(static_cast<size_t>(n), 1.0f);
  RuleRun run(text, n, p0);
  run.steps(100, [&](int) { return std::vector<float>(static_cast<size_t>(n), 1.0f); });
  float master = 1.0f;
  for (int t = 0; t < 100; ++t) master = master - 1e-4f * 1.0f;
  for (size_t i = 0; i < static_cast<size_t>(n); ++i) {
    EXPECT_EQ(run.buffer("master")[i], master);
    EXPECT_EQ(run.buffers[0][i], round_to_storage(master, StorageType::kBF16));
  }
  EXPECT_LT(run.buffers[0][0], 1.0f);  // 0.99 is below 1 - 2^-8: bf16 moved

  // Without the master, every update is below half a spacing and the parameter never moves.
  RuleRun plain(kSgdBf16, n, p0);
  plain.set_hyper("lr", 1e-4);
  plain.steps(100, [&](int) { return std::vector<float>(static_cast<size_t>(n), 1.0f); });
  EXPECT_EQ(plain.buffers[0][0], 1.0f);
}

constexpr const char* kSgdStochastic = R"(rule sgd_sr "sgd on a bf16 parameter, rounded stochastically"
hyper lr = 1e-4
param : bf16 stochastic
step {
  param = param - lr * grad
}
)";

TEST(MixedPrecision, StochasticStoresAreReproducibleAndSeeded) {
  const int64_t n = 4096;
  const std::vector<float> p0 = representable(StorageType::kBF16, n, 5);
  const std::vector<float> g = representable(StorageType::kF32, n, 6);
  auto run_with_seed = [&](double seed) {
    RuleRun run(kSgdStochastic, n, p0);
    run.set_hyper("lr", 1e-3);
    run.set_hyper(ir::kRoundingSeedHyper, seed);
    run.steps(3, [&](int) { return g; });
    return run.buffers[0];
  };
  RuleRun probe(kSgdStochastic, n, p0);
  EXPECT_TRUE(probe.kernel.has_stochastic_store());
  EXPECT_EQ(probe.kernel.hypers.back().name, ir::kRoundingSeedHyper);
  EXPECT_NE(ir::print_kernel(probe.kernel).find("bf16 stochastic"), std::string::npos);

  const std::vector<float> a = run_with_seed(7), b = run_with_seed(7), c = run_with_seed(8);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  // Each element is one of the two bf16 neighbours of the exact f32 update of the last step.
  int differing = 0;
  for (size_t i = 0; i < a.size(); ++i) differing += a[i] != c[i];
  EXPECT_GT(differing, 100);
}

TEST(MixedPrecision, StochasticStoresDoNotDependOnChunking) {
  // The whole tensor at once (step) and the same step cut into uneven chunks
  // (run_phase_chunk with each chunk's first index) give the same bits.
  const int64_t n = 1001;
  const std::vector<float> p0 = representable(StorageType::kBF16, n, 9);
  const std::vector<float> g = representable(StorageType::kF32, n, 10);
  RuleRun whole(kSgdStochastic, n, p0);
  whole.set_hyper(ir::kRoundingSeedHyper, 99);
  whole.steps(1, [&](int) { return g; });

  RuleRun pieces(kSgdStochastic, n, p0);
  pieces.set_hyper(ir::kRoundingSeedHyper, 99);
  pieces.buffers[1] = g;
  pieces.tensor.buffers[1] = pieces.buffers[1].data();
  ir::Interpreter interpreter(pieces.kernel);
  interpreter.initialize(pieces.tensor, pieces.hypers);
  ASSERT_EQ(pieces.kernel.phases.size(), 1u);
  ir::Interpreter::HostStep host(interpreter);
  host.start(pieces.hypers, 1, n, {});
  host.run_prologue(0);
  std::vector<double> inputs(ir::phase_scalar_inputs(pieces.kernel.phases[0]).size());
  host.scalar_inputs(0, inputs);
  const uint64_t seed = ir::rounding_seed(pieces.kernel, pieces.hypers);
  std::vector<uint32_t> keys;
  for (size_t b = 0; b < pieces.kernel.buffers.size(); ++b) {
    keys.push_back(rounding_stream_key(seed, 1, ir::rounding_stream(0, b)));
  }
  for (int64_t start = 0; start < n;) {
    const int64_t count = std::min<int64_t>(start % 7 == 0 ? 300 : 77, n - start);
    std::vector<float*> at;
    for (auto& b : pieces.buffers) at.push_back(b.data() + start);
    interpreter.run_phase_chunk(0, count, at.data(), inputs, nullptr, start, keys);
    start += count;
  }
  EXPECT_EQ(pieces.buffers[0], whole.buffers[0]);
  // Without a position, a stochastic kernel cannot be cut into chunks.
  std::vector<float*> at;
  for (auto& b : pieces.buffers) at.push_back(b.data());
  EXPECT_THROW(interpreter.run_phase_chunk(0, 1, at.data(), inputs, nullptr), UserError);
}

TEST(MixedPrecision, StochasticKeepsTinyUpdatesOnAverage) {
  // lr * grad = 1e-4 per step on a bf16 1.0 (spacing 2^-7 above 1, 2^-8 below): after 200
  // steps round to nearest is still 1.0; stochastic rounding moved each element by -0.02 in
  // expectation, and the mean over 4096 elements is within a few standard errors of it.
  const int64_t n = 4096;
  const std::vector<float> ones(static_cast<size_t>(n), 1.0f);
  RuleRun sr(kSgdStochastic, n, ones);
  sr.steps(200, [&](int) { return ones; });
  RuleRun nearest(kSgdBf16, n, ones);
  nearest.set_hyper("lr", 1e-4);
  nearest.steps(200, [&](int) { return ones; });
  double mean = 0;
  for (float p : sr.buffers[0]) mean += p;
  mean /= static_cast<double>(n);
  EXPECT_EQ(nearest.buffers[0][0], 1.0f);
  // Each step is a +-1 spacing (2^-8) move with probability ~2.6%: an element's variance
  // after 200 steps is about 200 * 0.026 * 2^-16 ~ 7.9e-5, so the mean's standard error is
  // sqrt(7.9e-5 / 4096) ~ 1.4e-4; 0.002 is over 10 of them.
  EXPECT_NEAR(mean, 1.0 - 200 * 1e-4, 2e-3);
}

TEST(MixedPrecision, SeedMustBeAnInteger) {
  RuleRun run(kSgdStochastic, 4, std::vector<float>(4, 1.0f));
  for (double bad : {-1.0, 0.5, 1e17}) {
    run.set_hyper(ir::kRoundingSeedHyper, bad);
    EXPECT_THROW(run.steps(1, [](int) { return std::vector<float>(4, 1.0f); }), UserError) << bad;
  }
}

TEST(MixedPrecision, SetBufferStorageChecksItsArguments) {
  ir::Kernel kernel = frontend::rule_from_text(kSgdBf16).compile({});
  EXPECT_THROW(ir::set_buffer_storage(kernel, "nope", StorageType::kBF16, false), UserError);
  EXPECT_THROW(ir::set_buffer_storage(kernel, "param", StorageType::kF32, true), UserError);
  EXPECT_THROW(ir::set_buffer_storage(kernel, "grad", StorageType::kBF16, true), UserError);
  ir::set_buffer_storage(kernel, "grad", StorageType::kF16, false);
  ir::set_buffer_storage(kernel, "param", StorageType::kF16, true);
  EXPECT_EQ(kernel.hyper_index(ir::kRoundingSeedHyper), static_cast<int>(kernel.hypers.size()) - 1);
  ir::set_buffer_storage(kernel, "param", StorageType::kBF16, true);  // no second seed
  EXPECT_EQ(kernel.hypers.size(), 2u);
}

}  // namespace
}  // namespace fuseopt

// ---- Loss scaling and gradient clipping (ir/grad_transform.h) ---------------------------------

namespace fuseopt {
namespace {

struct Group {
  ir::Kernel kernel;
  std::vector<std::vector<std::vector<float>>> buffers;  // [tensor][buffer]
  std::vector<ir::TensorArgs> tensors;
  std::vector<double> hypers;

  Group(ir::Kernel k, const std::vector<std::vector<float>>& params) : kernel(std::move(k)) {
    for (const auto& p : params) {
      auto& b = buffers.emplace_back(kernel.buffers.size(), std::vector<float>(p.size()));
      b[0] = p;
    }
    for (auto& b : buffers) {
      ir::TensorArgs& tensor = tensors.emplace_back();
      tensor.numel = static_cast<int64_t>(b[0].size());
      for (auto& v : b) tensor.buffers.push_back(v.data());
    }
    for (const auto& h : kernel.hypers) hypers.push_back(h.default_value);
  }
  void set_hyper(const std::string& name, double value) {
    hypers[static_cast<size_t>(kernel.hyper_index(name))] = value;
  }
  void set_grads(const std::vector<std::vector<float>>& grads) {
    for (size_t i = 0; i < grads.size(); ++i) buffers[i][1] = grads[i];
    for (size_t i = 0; i < grads.size(); ++i) tensors[i].buffers[1] = buffers[i][1].data();
  }
};

ir::Kernel transformed(const std::string& rule_name, ir::GradTransform transform,
                       const std::map<std::string, std::string>& options = {}) {
  const frontend::Rule rule = frontend::load_rule(rule_name);
  ir::Kernel kernel = rule.compile(rule.resolve_options(options));
  ir::apply_grad_transform(kernel, transform);
  return kernel;
}

std::vector<std::vector<float>> scaled(std::vector<std::vector<float>> v, float factor) {
  for (auto& t : v) {
    for (float& x : t) x *= factor;
  }
  return v;
}

TEST(GradTransform, UnscalingAPowerOfTwoScaleIsExact) {
  // Adam on grads scaled by 2^10 with grad_scale = 1024 gives the bits of Adam on the
  // unscaled grads, over 5 steps and two tensors.
  const std::vector<std::vector<float>> p0 = {representable(StorageType::kF32, 300, 1),
                                              representable(StorageType::kF32, 77, 2)};
  Group plain(transformed("adam", {}), p0);
  Group scaled_run(transformed("adam", {true, false}), p0);
  scaled_run.set_hyper(ir::kGradScaleHyper, 1024);
  ir::Interpreter a(plain.kernel), b(scaled_run.kernel);
  for (auto& t : plain.tensors) a.initialize(t, plain.hypers);
  for (auto& t : scaled_run.tensors) b.initialize(t, scaled_run.hypers);
  for (int t = 1; t <= 5; ++t) {
    const std::vector<std::vector<float>> g = {representable(StorageType::kF32, 300, 10 + t),
                                               representable(StorageType::kF32, 77, 20 + t)};
    plain.set_grads(g);
    scaled_run.set_grads(scaled(g, 1024.0f));
    EXPECT_TRUE(a.step(plain.tensors, plain.hypers, t));
    EXPECT_TRUE(b.step(scaled_run.tensors, scaled_run.hypers, t));
  }
  for (size_t i = 0; i < plain.buffers.size(); ++i) {
    for (size_t buffer = 0; buffer < plain.buffers[i].size(); ++buffer) {
      if (buffer == 1) continue;  // the grads differ: one run's are scaled
      EXPECT_EQ(plain.buffers[i][buffer], scaled_run.buffers[i][buffer]) << i << " " << buffer;
    }
  }
}

TEST(GradTransform, ANonFiniteGradientSkipsTheWholeStep) {
  const std::vector<std::vector<float>> p0 = {representable(StorageType::kF32, 50, 3),
                                              representable(StorageType::kF32, 60, 4)};
  for (float bad : {std::numeric_limits<float>::infinity(), std::nanf("")}) {
    Group group(transformed("adam", {true, true}), p0);
    ir::Interpreter interpreter(group.kernel);
    for (auto& t : group.tensors) interpreter.initialize(t, group.hypers);
    std::vector<std::vector<float>> g = {representable(StorageType::kF32, 50, 5),
                                         representable(StorageType::kF32, 60, 6)};
    group.set_grads(g);
    ASSERT_TRUE(interpreter.step(group.tensors, group.hypers, 1));
    const auto before = group.buffers;
    g[1][59] = bad;  // only the second tensor's last element
    group.set_grads(g);
    EXPECT_FALSE(interpreter.step(group.tensors, group.hypers, 2));
    for (size_t i = 0; i < before.size(); ++i) {
      for (size_t b = 0; b < before[i].size(); ++b) {
        if (b == 1) continue;  // the grads themselves
        EXPECT_EQ(group.buffers[i][b], before[i][b]) << i << " " << b;
      }
    }
    // A large but finite scale that makes no gradient overflow steps normally.
    g[1][59] = 1.0f;
    group.set_grads(g);
    group.set_hyper(ir::kGradScaleHyper, 65536);
    // found_inf, what a GradScaler found elsewhere, skips a step whose gradients are finite.
    group.set_hyper(ir::kFoundInfHyper, 1);
    const auto finite_before = group.buffers;
    EXPECT_FALSE(interpreter.step(group.tensors, group.hypers, 2));
    EXPECT_EQ(group.buffers, finite_before);
    group.set_hyper(ir::kFoundInfHyper, 0);
    EXPECT_TRUE(interpreter.step(group.tensors, group.hypers, 2));
  }
}

TEST(GradTransform, ClippingFollowsClipGradNorm) {
  // SGD with lr 1 and clipping: param = param - clip * grad, clip computed here as
  // torch.nn.utils.clip_grad_norm_ does (total norm over the group, coefficient clamped to 1,
  // rounded to float32, one float32 multiplication).
  const std::vector<std::vector<float>> p0 = {representable(StorageType::kF32, 40, 7),
                                              representable(StorageType::kF32, 9, 8)};
  const std::vector<std::vector<float>> g = {representable(StorageType::kF32, 40, 9),
                                             representable(StorageType::kF32, 9, 10)};
  double sum = 0;
  for (const auto& t : g) {
    for (float x : t) sum += static_cast<double>(x * x);
  }
  const double total = std::sqrt(sum);
  for (double max_norm : {0.5, total * 0.25, total * 4.0}) {
    Group group(transformed("sgd", {false, true}), p0);
    group.set_hyper("lr", 1.0);
    group.set_hyper(ir::kMaxGradNormHyper, max_norm);
    group.set_grads(g);
    ir::Interpreter interpreter(group.kernel);
    for (auto& t : group.tensors) interpreter.initialize(t, group.hypers);
    const ir::GradFactors factors = interpreter.grad_factors_for(group.tensors, group.hypers);
    EXPECT_NEAR(factors.total_norm, total, 1e-12 * total);
    const float clip = static_cast<float>(std::min(1.0, max_norm / (total + 1e-6)));
    EXPECT_EQ(factors.clip, clip);
    ASSERT_TRUE(interpreter.step(group.tensors, group.hypers, 1));
    for (size_t i = 0; i < g.size(); ++i) {
      for (size_t k = 0; k < g[i].size(); ++k) {
        const float clipped = (g[i][k] * 1.0f) * clip;  // unscale 1, then clip
        ASSERT_EQ(group.buffers[i][0][k], p0[i][k] - 1.0f * clipped) << max_norm;
      }
    }
  }
}

TEST(GradTransform, NamesPrintingAndBadUse) {
  ir::Kernel kernel = transformed("adam", {true, true});
  EXPECT_EQ(kernel.config_name(), "adam_amsgrad0_maximize0_unscale_clipnorm");
  EXPECT_NE(ir::print_kernel(kernel).find("grad_transform unscale clip_norm"), std::string::npos);
  EXPECT_TRUE(ir::is_user_hyper(ir::kGradScaleHyper));
  EXPECT_FALSE(ir::is_user_hyper(ir::kGradClipInput));
  // Applying twice, or to a rule with a state that starts as the gradient, is refused.
  EXPECT_THROW(ir::apply_grad_transform(kernel, {true, false}), InternalError);
  ir::Kernel from_grad = frontend::rule_from_text(R"(rule first_grad "a state that starts as grad"
hyper lr = 0.1
state m = grad
step {
  m = m + grad
  param = param - lr * m
}
)").compile({});
  EXPECT_THROW(ir::apply_grad_transform(from_grad, {true, false}), UserError);
  ir::Kernel clash = frontend::rule_from_text(R"(rule clash "a rule with a hyper of a reserved name"
hyper grad_scale = 2
step {
  param = param - grad_scale * grad
}
)").compile({});
  EXPECT_THROW(ir::apply_grad_transform(clash, {true, false}), UserError);
  // Bad hyper values are user errors at the step.
  Group group(transformed("sgd", {true, true}), {std::vector<float>(4, 1.0f)});
  group.set_grads({std::vector<float>(4, 1.0f)});
  ir::Interpreter interpreter(group.kernel);
  group.set_hyper(ir::kGradScaleHyper, 0);
  EXPECT_THROW(interpreter.step(group.tensors, group.hypers, 1), UserError);
  group.set_hyper(ir::kGradScaleHyper, 1);
  group.set_hyper(ir::kMaxGradNormHyper, -1);
  EXPECT_THROW(interpreter.step(group.tensors, group.hypers, 1), UserError);
  // Storage types show in the configuration name.
  ir::Kernel bf16 = frontend::rule_from_text(kSgdStochastic).compile({});
  EXPECT_EQ(bf16.config_name(), "sgd_sr_param_bf16sr");
}

}  // namespace
}  // namespace fuseopt

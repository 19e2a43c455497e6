// Loss scaling, global-norm clipping and storage choices through the C++ API: the runtime's
// optimizer (interp and cpu backends, chunked over threads) against the reference
// interpreter's whole-group step (ir::Interpreter::step), bit for bit.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "api/fuseopt.h"
#include "frontend/rule.h"
#include "ir/grad_transform.h"
#include "ir/interpreter.h"
#include "support/error.h"
#include "support/low_precision.h"
#include "tests/api/random_values.h"

namespace fuseopt {
namespace {

using api_testing::random_values;

// The reference: the interpreter stepping the same transformed kernel over the whole group.
struct Reference {
  ir::Kernel kernel;
  std::vector<std::vector<std::vector<float>>> buffers;
  std::vector<ir::TensorArgs> tensors;

  Reference(const std::string& rule, ir::GradTransform transform,
            const std::vector<std::vector<float>>& params) {
    const frontend::Rule r = frontend::load_rule(rule);
    kernel = r.compile(r.resolve_options());
    ir::apply_grad_transform(kernel, transform);
    for (const auto& p : params) {
      auto& b = buffers.emplace_back(kernel.buffers.size(), std::vector<float>(p.size()));
      b[0] = p;
    }
    for (auto& b : buffers) {
      ir::TensorArgs& t = tensors.emplace_back();
      t.numel = static_cast<int64_t>(b[0].size());
      for (auto& v : b) t.buffers.push_back(v.data());
    }
  }
};

class GradTransformApi : public ::testing::TestWithParam<Backend> {};

TEST_P(GradTransformApi, MatchesTheInterpreterStepSkipAndNorm) {
  const std::vector<size_t> sizes = {1000, 17, 40000, 3};
  std::vector<std::vector<float>> params;
  for (size_t i = 0; i < sizes.size(); ++i) params.push_back(random_values(sizes[i], 1 + i));

  CompileOptions options;
  options.backend = GetParam();
  options.loss_scaling = true;
  options.clip_grad_norm = true;
  options.cpu_schedule.chunk_elements = 4096;  // several chunks per large tensor
  const std::map<std::string, double> hypers = {
      {"lr", 1e-2}, {ir::kGradScaleHyper, 256.0}, {ir::kMaxGradNormHyper, 5.0}};
  for (int threads : {1, 2}) {
    Optimizer optimizer = make_optimizer("adam", options, hypers, threads);
    Reference reference("adam", {true, true}, params);
    std::vector<std::vector<float>> grads(sizes.size());
    for (size_t i = 0; i < sizes.size(); ++i) {
      optimizer.add_tensor(static_cast<int64_t>(sizes[i]));
      optimizer.write_param(i, params[i]);
    }
    // lr, betas, eps, wd, scale, found_inf, max norm
    EXPECT_EQ(optimizer.hyper_names().size(), 8u);
    EXPECT_THROW(optimizer.set_hyper(ir::kGradClipInput, 1.0), UserError);

    std::vector<double> ref_hypers;
    for (const auto& h : reference.kernel.hypers) {
      ref_hypers.push_back(hypers.count(h.name) ? hypers.at(h.name) : h.default_value);
    }
    ir::Interpreter interpreter(reference.kernel);
    for (auto& t : reference.tensors) interpreter.initialize(t, ref_hypers);

    int64_t taken = 0;
    for (int step = 1; step <= 6; ++step) {
      for (size_t i = 0; i < sizes.size(); ++i) {
        grads[i] = random_values(sizes[i], 100 * step + i, 256.0f * (step % 3 + 1));
      }
      if (step == 4) grads[2][12345] = std::numeric_limits<float>::infinity();
      for (size_t i = 0; i < sizes.size(); ++i) {
        optimizer.write_grad(i, grads[i]);
        reference.buffers[i][1] = grads[i];
      }
      // Step 5: finite gradients, but the caller (GradScaler) found an inf elsewhere.
      const double found_inf = step == 5 ? 1.0 : 0.0;
      optimizer.set_hyper(ir::kFoundInfHyper, found_inf);
      ref_hypers[static_cast<size_t>(reference.kernel.hyper_index(ir::kFoundInfHyper))] = found_inf;
      const bool expected = interpreter.step(reference.tensors, ref_hypers, taken + 1);
      const bool got = optimizer.step();
      ASSERT_EQ(got, expected) << "step " << step;
      EXPECT_EQ(got, step != 4 && step != 5);
      if (got) ++taken;
      EXPECT_EQ(optimizer.step_count(0), taken);
      if (got) {
        const ir::GradFactors factors = interpreter.grad_factors_for(reference.tensors, ref_hypers);
        EXPECT_NEAR(optimizer.last_grad_norm(), factors.total_norm, 1e-12 * factors.total_norm);
      }
      // The interp backend gives the interpreter's bits. The cpu backend's sums add 32
      // interleaved partials (codegen/halide/README.md), so the norm, and through the clip
      // factor every element, may differ in the last bits.
      const bool exact = GetParam() == Backend::kInterpreter;
      for (size_t i = 0; i < sizes.size(); ++i) {
        const std::vector<float> p = optimizer.read_param(i);
        const std::vector<float> m = optimizer.read_state(i, "exp_avg");
        for (size_t k = 0; k < p.size(); ++k) {
          const float want_p = reference.buffers[i][0][k], want_m = reference.buffers[i][2][k];
          if (exact) {
            ASSERT_EQ(p[k], want_p) << "threads " << threads << " step " << step << " tensor " << i;
            ASSERT_EQ(m[k], want_m);
          } else {
            // Errors scale with the update (lr), not with the parameter.
            ASSERT_NEAR(p[k], want_p, 1e-6f * (std::fabs(want_p) + 1e-2f)) << "step " << step;
            ASSERT_NEAR(m[k], want_m, 1e-5f * (std::fabs(want_m) + 1e-3f)) << "step " << step;
          }
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Backends, GradTransformApi,
                         ::testing::Values(Backend::kInterpreter, Backend::kCpu),
                         [](const ::testing::TestParamInfo<Backend>& p) {
                           return std::string(backend_name(p.param));
                         });

TEST(StorageApi, Bf16RoundToNearestRunsOnTheInterpAndCpuBackends) {
  CompileOptions options;
  options.backend = Backend::kInterpreter;
  options.storage = {{"exp_avg", "bf16"}, {"exp_avg_sq", "bf16"}};
  Optimizer optimizer = make_optimizer("adam", options, {}, 1);
  EXPECT_NE(optimizer.kernel().ir.config_name().find("exp_avg_bf16"), std::string::npos);
  optimizer.add_tensor(100);
  optimizer.write_param(0, random_values(100, 1));
  optimizer.write_grad(0, random_values(100, 2));
  optimizer.step();
  for (float m : optimizer.read_state(0, "exp_avg")) {
    EXPECT_EQ(m, round_to_storage(m, StorageType::kBF16));
  }
  // The cpu backend stores two-byte buffers too (tests/codegen/cpu_storage_kernel_test.cc).
  options.backend = Backend::kCpu;
  EXPECT_EQ(make_optimizer("adam", options).storage("exp_avg"), StorageType::kBF16);
  options.backend = Backend::kInterpreter;
  options.storage = {{"exp_avg", "bf17"}};
  EXPECT_THROW(make_optimizer("adam", options), UserError);
  options.storage = {{"nope", "bf16"}};
  EXPECT_THROW(make_optimizer("adam", options), UserError);
}

TEST(StorageApi, StochasticStoresThroughTheChunkedRuntimeMatchTheInterpreter) {
  // sgd on a bf16 parameter rounded stochastically, tiny updates: the interp backend cut into
  // 1000-element chunks on 1 and 2 threads gives the interpreter's whole-tensor bits, with the
  // streams of each tensor's index, for three tensors over 5 steps.
  const std::vector<size_t> sizes = {2500, 7, 1000};
  const frontend::Rule rule = frontend::load_rule("sgd");
  ir::Kernel kernel = rule.compile(rule.resolve_options());
  ir::set_buffer_storage(kernel, "param", StorageType::kBF16, true);
  std::vector<double> hypers;
  for (const auto& h : kernel.hypers) hypers.push_back(h.default_value);
  hypers[static_cast<size_t>(kernel.hyper_index("lr"))] = 1e-3;
  hypers[static_cast<size_t>(kernel.hyper_index(ir::kRoundingSeedHyper))] = 1234;

  for (int threads : {1, 2}) {
    CompileOptions options;
    options.backend = Backend::kInterpreter;
    options.storage = {{"param", "bf16 stochastic"}};
    options.cpu_schedule.chunk_elements = 1000;
    Optimizer optimizer =
        make_optimizer("sgd", options, {{"lr", 1e-3}, {"rounding_seed", 1234}}, threads);
    std::vector<std::vector<std::vector<float>>> buffers;
    std::vector<ir::TensorArgs> tensors;
    for (size_t i = 0; i < sizes.size(); ++i) {
      std::vector<float> p = random_values(sizes[i], 10 + i);
      for (float& x : p) x = round_to_storage(x, StorageType::kBF16);
      optimizer.add_tensor(static_cast<int64_t>(sizes[i]));
      optimizer.write_param(i, p);
      buffers.emplace_back(kernel.buffers.size(), std::vector<float>(sizes[i]));
      buffers.back()[0] = p;
    }
    for (auto& b : buffers) {
      ir::TensorArgs& t = tensors.emplace_back();
      t.numel = static_cast<int64_t>(b[0].size());
      for (auto& v : b) t.buffers.push_back(v.data());
    }
    ir::Interpreter interpreter(kernel);
    for (auto& t : tensors) interpreter.initialize(t, hypers);
    for (int step = 1; step <= 5; ++step) {
      for (size_t i = 0; i < sizes.size(); ++i) {
        const std::vector<float> g = random_values(sizes[i], 100 * step + i);
        std::copy(g.begin(), g.end(), buffers[i][1].begin());  // tensors[i] points into it
        optimizer.write_grad(i, g);
      }
      ASSERT_TRUE(optimizer.step());
      interpreter.step(tensors, hypers, step);
      for (size_t i = 0; i < sizes.size(); ++i) {
        ASSERT_EQ(optimizer.read_param(i), buffers[i][0])
            << "threads " << threads << " step " << step << " tensor " << i;
      }
    }
  }
}

TEST(StorageApi, LossScaledKernelsOnTheCpuGiveTheInterpretersBits) {
  // Without clipping the factors do not depend on how sums are added, so the cpu backend's
  // two-phase kernels (statistics, then the update) must give the interp backend's bits: this
  // fails if a later phase loses strict float semantics (codegen/halide/cpu_codegen.cc).
  const std::vector<size_t> sizes = {4097, 33, 20000};
  for (const std::map<std::string, std::string>& storage :
       {std::map<std::string, std::string>{}, {{"param", "bf16"}, {"grad", "bf16"}}}) {
    std::vector<std::vector<float>> params;
    std::vector<Optimizer> optimizers;
    for (Backend backend : {Backend::kInterpreter, Backend::kCpu}) {
      CompileOptions options;
      options.backend = backend;
      options.loss_scaling = true;
      options.storage = storage;
      options.cpu_schedule.chunk_elements = 4096;
      Optimizer& o = optimizers.emplace_back(
          make_optimizer("adamw", options, {{"lr", 1e-2}, {ir::kGradScaleHyper, 1024.0}}, 2));
      for (size_t i = 0; i < sizes.size(); ++i) {
        o.add_tensor(static_cast<int64_t>(sizes[i]));
        o.write_param(i, random_values(sizes[i], 40 + i));
      }
    }
    for (int step = 1; step <= 3; ++step) {
      for (Optimizer& o : optimizers) {
        for (size_t i = 0; i < sizes.size(); ++i) {
          o.write_grad(i, random_values(sizes[i], 50 * step + i, 1024.0f));
        }
        ASSERT_TRUE(o.step());
      }
      for (size_t i = 0; i < sizes.size(); ++i) {
        ASSERT_EQ(optimizers[1].read_param(i), optimizers[0].read_param(i)) << "step " << step;
        ASSERT_EQ(optimizers[1].read_state(i, "exp_avg_sq"),
                  optimizers[0].read_state(i, "exp_avg_sq"));
      }
    }
  }
}

}  // namespace
}  // namespace fuseopt

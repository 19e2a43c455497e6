// Tests of fuseopt::Optimizer with the chunked interpreter backend against the whole-step
// oracle (ir::Interpreter): every built-in rule, mixed sizes, caller- and optimizer-owned
// memory, aliasing and misaligned pointers, thread counts, save and load, and every misuse.
#include "runtime/optimizer.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "rules/builtin_rules.h"
#include "runtime/cpu_binary.h"
#include "runtime/state_file.h"
#include "support/error.h"
#include "tests/runtime/test_group.h"

namespace fuseopt {
namespace {

using test::compile_kernel;
using test::expect_user_error;
using test::hypers_at;
using test::OracleGroup;
using test::random_values;
using test::same_bits;
using test::seed_of;

enum class Memory { kCaller, kOptimizer, kMisaligned };

const char* spelling(Memory memory) {
  switch (memory) {
    case Memory::kCaller:
      return "caller memory";
    case Memory::kOptimizer:
      return "optimizer memory";
    case Memory::kMisaligned:
      return "misaligned caller memory";
  }
  return "?";
}

// Runs `steps` steps of `compiled` over a group of `sizes` and the oracle side by side,
// comparing everything after every step.
void run_against_oracle(std::shared_ptr<const runtime::CompiledKernel> compiled,
                        const std::vector<int64_t>& sizes, int threads, int steps, bool bitwise,
                        Memory memory, const std::string& context) {
  const ir::Kernel& k = compiled->ir;
  std::vector<std::vector<float>> initial;
  for (size_t i = 0; i < sizes.size(); ++i) {
    initial.push_back(random_values(static_cast<size_t>(sizes[i]), seed_of(i, 0, 99)));
  }
  OracleGroup oracle(k, initial);
  Optimizer optimizer(compiled, hypers_at(k, 1), threads);
  // Caller memory; misaligned memory starts one float into its vector.
  const size_t shift = memory == Memory::kMisaligned ? 1 : 0;
  std::vector<std::vector<float>> params(sizes.size()), grads(sizes.size());
  for (size_t i = 0; i < sizes.size(); ++i) {
    const size_t n = static_cast<size_t>(sizes[i]);
    if (memory == Memory::kOptimizer) {
      EXPECT_EQ(optimizer.add_tensor(sizes[i]), i);
      std::copy(initial[i].begin(), initial[i].end(), optimizer.param(i).begin());
    } else {
      params[i].assign(n + shift, 0.0f);
      grads[i].assign(n + shift, 0.0f);
      std::copy(initial[i].begin(), initial[i].end(), params[i].begin() + static_cast<long>(shift));
      EXPECT_EQ(optimizer.add_tensor(params[i].data() + shift, grads[i].data() + shift, sizes[i]),
                i);
    }
  }
  oracle.initialize(hypers_at(k, 1));
  for (int64_t t = 1; t <= steps; ++t) {
    const auto hypers = hypers_at(k, t);
    for (const auto& [name, value] : hypers) optimizer.set_hyper(name, value);
    std::vector<std::vector<float>> g;
    for (size_t i = 0; i < sizes.size(); ++i) {
      g.push_back(random_values(static_cast<size_t>(sizes[i]), seed_of(i, t)));
      float* to = memory == Memory::kOptimizer ? optimizer.grad(i).data() : grads[i].data() + shift;
      std::copy(g[i].begin(), g[i].end(), to);
    }
    optimizer.step();
    oracle.step(g, hypers, t);
    for (size_t i = 0; i < sizes.size(); ++i) ASSERT_EQ(optimizer.step_count(i), t);
    test::expect_matches_oracle(optimizer, oracle, bitwise,
                                context + ", " + spelling(memory) + ", step " + std::to_string(t));
    if (::testing::Test::HasFailure()) return;
  }
}

const std::vector<int64_t> kMixedSizes = {1, 7, 255, 256, 257, 1000, 5000, 16383, 16385, 40000};

TEST(Optimizer, EveryBuiltinRuleMatchesTheInterpreter) {
  for (const rules::BuiltinRule& rule : rules::builtin_rules()) {
    // One chunk per tensor: reductions combine exactly as the oracle's, so all bits agree.
    auto kernel = runtime::make_interpreter_kernel(compile_kernel(rule.name), 1 << 20);
    run_against_oracle(kernel, kMixedSizes, 2, 3, true, Memory::kCaller, rule.name);
    if (HasFailure()) return;
  }
}

TEST(Optimizer, SmallChunksMatchTheInterpreter) {
  for (const rules::BuiltinRule& rule : rules::builtin_rules()) {
    ir::Kernel k = compile_kernel(rule.name);
    // Reductions are now combined from several chunks: equal up to rounding.
    const bool bitwise = !test::has_reductions(k);
    auto kernel = runtime::make_interpreter_kernel(std::move(k), 1000);
    run_against_oracle(kernel, kMixedSizes, 3, 3, bitwise, Memory::kCaller, rule.name);
    if (HasFailure()) return;
  }
}

TEST(Optimizer, OptionVariants) {
  const std::vector<std::pair<std::string, std::map<std::string, std::string>>> variants = {
      {"adam", {{"amsgrad", "true"}}},
      {"adam", {{"maximize", "true"}}},
      {"nadam", {{"decoupled_weight_decay", "true"}}},
      {"lamb", {{"trust_clip", "true"}, {"decoupled_decay", "true"}}},
      {"sgd", {{"nesterov", "true"}}},
  };
  for (const auto& [rule, options] : variants) {
    auto kernel = runtime::make_interpreter_kernel(compile_kernel(rule, options), 1 << 16);
    run_against_oracle(kernel, {3, 300, 3000}, 2, 3, true, Memory::kCaller,
                       kernel->ir.config_name());
  }
}

TEST(Optimizer, MemoryOwnership) {
  for (const char* rule : {"adam", "lamb", "nadam", "adagrad"}) {
    auto kernel = runtime::make_interpreter_kernel(compile_kernel(rule), 1 << 20);
    for (Memory memory : {Memory::kOptimizer, Memory::kMisaligned}) {
      run_against_oracle(kernel, {1, 33, 1000, 20000}, 2, 3, true, memory, rule);
    }
  }
}

TEST(Optimizer, ThreadCountsGiveTheSameBits) {
  for (const char* rule : {"lamb", "nadam", "lars", "adam"}) {
    auto kernel = runtime::make_interpreter_kernel(compile_kernel(rule), 777);
    std::vector<std::vector<float>> results;
    for (int threads : {1, 2, 4}) {
      Optimizer optimizer(kernel, {}, threads);
      EXPECT_EQ(optimizer.threads(), threads);
      std::vector<int64_t> sizes = {5, 777, 778, 3000, 10, 1};
      for (size_t i = 0; i < sizes.size(); ++i) {
        optimizer.add_tensor(sizes[i]);
        auto init = random_values(static_cast<size_t>(sizes[i]), seed_of(i, 0));
        std::copy(init.begin(), init.end(), optimizer.param(i).begin());
      }
      for (int64_t t = 1; t <= 4; ++t) {
        for (size_t i = 0; i < sizes.size(); ++i) {
          auto g = random_values(static_cast<size_t>(sizes[i]), seed_of(i, t));
          std::copy(g.begin(), g.end(), optimizer.grad(i).begin());
        }
        optimizer.step();
      }
      std::vector<float> all;
      for (size_t i = 0; i < sizes.size(); ++i) {
        all.insert(all.end(), optimizer.param(i).begin(), optimizer.param(i).end());
        for (const std::string& s : optimizer.state_names()) {
          auto v = static_cast<const Optimizer&>(optimizer).state(i, s);
          all.insert(all.end(), v.begin(), v.end());
        }
      }
      results.push_back(std::move(all));
    }
    EXPECT_TRUE(same_bits(results[0], results[1])) << rule << ": 1 vs 2 threads";
    EXPECT_TRUE(same_bits(results[0], results[2])) << rule << ": 1 vs 4 threads";
  }
}

// A whole-group backend (as CUDA's) with host memory: the interpreter over every tensor,
// recording the group versions it is called with.
class InterpreterGroupPhase final : public runtime::GroupPhaseKernel {
 public:
  InterpreterGroupPhase(std::shared_ptr<const ir::Interpreter> interpreter, size_t phase)
      : interpreter_(std::move(interpreter)), phase_(phase) {
    const ir::Phase& p = interpreter_->kernel().phases[phase];
    inputs_ = ir::phase_scalar_inputs(p).size();
    reductions_ = p.reductions.size();
  }

  void run_group(const runtime::GroupArgs& args) const override {
    versions.push_back(args.group_version);
    const size_t buffers = interpreter_->kernel().buffers.size();
    for (size_t i = 0; i < args.tensor_count; ++i) {
      std::vector<double> scalars(args.scalars + i * inputs_, args.scalars + (i + 1) * inputs_);
      std::vector<float*> tensor(buffers);  // f32 buffers only
      for (size_t b = 0; b < buffers; ++b)
        tensor[b] = static_cast<float*>(args.buffers[i * buffers + b]);
      interpreter_->run_phase_chunk(phase_, args.numels[i], tensor.data(), scalars,
                                    args.partials + i * reductions_);
    }
  }

  mutable std::vector<uint64_t> versions;

 private:
  std::shared_ptr<const ir::Interpreter> interpreter_;
  size_t phase_;
  size_t inputs_ = 0;
  size_t reductions_ = 0;
};

std::shared_ptr<runtime::CompiledKernel> group_kernel(const ir::Kernel& k) {
  auto interpreter = std::make_shared<const ir::Interpreter>(k);
  auto kernel = std::make_shared<runtime::CompiledKernel>();
  kernel->ir = k;
  for (size_t p = 0; p < k.phases.size(); ++p) {
    kernel->group_phases.push_back(std::make_shared<InterpreterGroupPhase>(interpreter, p));
  }
  kernel->backend = "group";
  kernel->name = k.config_name() + "_group";
  return kernel;
}

TEST(Optimizer, WholeGroupKernelsMatchTheInterpreter) {
  for (const char* rule : {"lamb", "nadam", "adam", "lars"}) {
    // One call per phase for the whole tensor: reductions are exact, so all bits agree.
    run_against_oracle(group_kernel(compile_kernel(rule)), kMixedSizes, 2, 3, true, Memory::kCaller,
                       std::string(rule) + " (group kernel)");
  }
}

TEST(Optimizer, GroupVersionsChangeWithTheGroup) {
  auto kernel = group_kernel(compile_kernel("adam"));
  const auto& phase = static_cast<const InterpreterGroupPhase&>(*kernel->group_phases[0]);
  std::vector<float> p(8), g(8), q(8), h(8);
  Optimizer a(kernel, {}, 1);
  a.add_tensor(p.data(), g.data(), 8);
  a.step();
  a.step();
  ASSERT_EQ(phase.versions.size(), 2u);
  EXPECT_NE(phase.versions[0], 0u);
  EXPECT_EQ(phase.versions[0], phase.versions[1]);  // the same group: the same version
  a.add_tensor(4);
  a.step();
  EXPECT_NE(phase.versions[2], phase.versions[1]);  // added
  a.set_buffers(0, q.data(), h.data());
  a.step();
  EXPECT_NE(phase.versions[3], phase.versions[2]);  // re-pointed
  Optimizer b(kernel, {}, 1);                       // same kernel, another group: another version
  b.add_tensor(p.data(), g.data(), 8);
  b.step();
  for (size_t i = 0; i < 4; ++i) EXPECT_NE(phase.versions[4], phase.versions[i]);
}

TEST(Optimizer, RefusesDeviceMemoryKernels) {
  auto kernel = group_kernel(compile_kernel("adam"));
  kernel->device_memory = true;
  expect_user_error([&] { Optimizer optimizer(kernel); }, {"device memory"});
}

TEST(Optimizer, ManySmallTensors) {
  auto kernel = runtime::make_interpreter_kernel(compile_kernel("lamb"), 16384);
  std::vector<int64_t> sizes(300);
  for (size_t i = 0; i < sizes.size(); ++i) sizes[i] = 1 + static_cast<int64_t>(i % 50);
  run_against_oracle(kernel, sizes, 4, 2, true, Memory::kOptimizer, "300 small tensors");
}

// grad and param the same memory: every value of a block is computed before it is stored.
TEST(Optimizer, ParamAndGradMayAlias) {
  for (const char* rule : {"sgd", "adam", "lamb"}) {
    ir::Kernel k = compile_kernel(rule);
    auto kernel = runtime::make_interpreter_kernel(k, 300);
    const size_t n = 1000;
    std::vector<float> mine = random_values(n, 5);
    std::vector<float> theirs = mine;
    Optimizer optimizer(kernel, {}, 2);
    optimizer.add_tensor(mine.data(), mine.data(), static_cast<int64_t>(n));

    ir::Interpreter interpreter(k);
    std::vector<std::vector<float>> buffers(k.buffers.size(), std::vector<float>(n, 0.0f));
    ir::TensorArgs args;
    args.numel = static_cast<int64_t>(n);
    for (auto& b : buffers) args.buffers.push_back(b.data());
    args.buffers[0] = args.buffers[1] = theirs.data();
    std::vector<double> hypers;
    for (const auto& h : k.hypers) hypers.push_back(h.default_value);
    interpreter.initialize(args, hypers);
    for (int64_t t = 1; t <= 3; ++t) {
      optimizer.step();
      interpreter.step(std::span<ir::TensorArgs>(&args, 1), hypers, t);
      // Reductions over 1000 elements in chunks of 300 round differently from the oracle.
      if (test::has_reductions(k)) {
        EXPECT_TRUE(test::close_values(mine, theirs, 1e-5)) << rule << ", step " << t;
      } else {
        EXPECT_TRUE(same_bits(mine, theirs)) << rule << ", step " << t;
      }
    }
  }
}

TEST(Optimizer, StatesWrittenBeforeTheFirstStepAreKept) {
  ir::Kernel k = compile_kernel("adam");
  auto kernel = runtime::make_interpreter_kernel(k);
  const std::vector<int64_t> sizes = {100, 200};
  std::vector<std::vector<float>> initial = {random_values(100, 1), random_values(200, 2)};
  Optimizer optimizer(kernel, {}, 2);
  for (size_t i = 0; i < sizes.size(); ++i) {
    optimizer.add_tensor(sizes[i]);
    std::copy(initial[i].begin(), initial[i].end(), optimizer.param(i).begin());
  }
  OracleGroup oracle(k, initial);
  // Tensor 0: exp_avg through set_state; tensor 1: exp_avg_sq through state().
  const auto m = random_values(100, 3, 0, 1);
  optimizer.set_state(0, "exp_avg", m);
  oracle.buffer(0, "exp_avg") = m;
  const auto v = random_values(200, 4, 0, 1);
  std::span<float> state = optimizer.state(1, "exp_avg_sq");
  std::copy(v.begin(), v.end(), state.begin());
  oracle.buffer(1, "exp_avg_sq") = v;
  std::vector<std::vector<bool>> filled(2, std::vector<bool>(k.buffers.size(), false));
  filled[0][static_cast<size_t>(k.buffer_index("exp_avg"))] = true;
  filled[1][static_cast<size_t>(k.buffer_index("exp_avg_sq"))] = true;
  oracle.initialize(hypers_at(k, 1), filled);
  for (int64_t t = 1; t <= 2; ++t) {
    std::vector<std::vector<float>> g = {random_values(100, seed_of(0, t)),
                                         random_values(200, seed_of(1, t))};
    for (size_t i = 0; i < 2; ++i) std::copy(g[i].begin(), g[i].end(), optimizer.grad(i).begin());
    for (const auto& [name, value] : hypers_at(k, t)) optimizer.set_hyper(name, value);
    optimizer.step();
    oracle.step(g, hypers_at(k, t), t);
  }
  test::expect_matches_oracle(optimizer, oracle, true, "states set before step 1");
}

TEST(Optimizer, StatesStartFromAHyperRoundedToFloat) {
  auto kernel = runtime::make_interpreter_kernel(compile_kernel("adagrad"));
  Optimizer optimizer(kernel, {}, 1);
  optimizer.add_tensor(10);
  optimizer.step();  // sum starts at the value of initial_accumulator_value at step 1
  optimizer.set_hyper("initial_accumulator_value", 0.1);
  const size_t late = optimizer.add_tensor(10);
  // A zero gradient leaves the accumulator as it started: float(0.1).
  optimizer.step();
  const Optimizer& view = optimizer;
  for (float x : view.state(late, "sum")) EXPECT_EQ(x, 0.1f);
  for (float x : view.state(0, "sum")) EXPECT_EQ(x, 0.0f);
}

TEST(Optimizer, TensorsAddedLaterStartAtStepZero) {
  ir::Kernel k = compile_kernel("nadam");
  auto kernel = runtime::make_interpreter_kernel(k);
  Optimizer optimizer(kernel, {}, 2);
  optimizer.add_tensor(50);
  optimizer.step();
  optimizer.step();
  const size_t late = optimizer.add_tensor(60);
  EXPECT_EQ(optimizer.step_count(0), 2);
  EXPECT_EQ(optimizer.step_count(late), 0);
  EXPECT_EQ(optimizer.scalar(late, "mu_product"), 1.0);
  auto p = random_values(60, 9);
  std::copy(p.begin(), p.end(), optimizer.param(late).begin());
  auto g = random_values(60, 10);
  std::copy(g.begin(), g.end(), optimizer.grad(late).begin());
  optimizer.step();
  EXPECT_EQ(optimizer.step_count(0), 3);
  EXPECT_EQ(optimizer.step_count(late), 1);

  OracleGroup oracle(k, {p});
  oracle.initialize(hypers_at(k, 0));
  std::map<std::string, double> defaults;
  for (const auto& h : k.hypers) defaults[h.name] = h.default_value;
  oracle.step({g}, defaults, 1);
  EXPECT_TRUE(same_bits(optimizer.param(late), oracle.buffer(0, 0)));
  EXPECT_EQ(optimizer.scalar(late, "mu_product"), oracle.scalars(0)[0]);
}

// Element code with shared nodes (a DAG of 61 nodes, a tree of 2^60 leaves) is handled in
// time proportional to the DAG.
TEST(Optimizer, DeeplySharedElementCode) {
  ir::Kernel k;
  k.rule = "deep";
  k.buffers = {{"param", ir::BufferRole::kParam}, {"grad", ir::BufferRole::kGrad}};
  ir::Expr e = ir::make_load("param");
  for (int i = 0; i < 60; ++i) e = ir::make_binary(ir::BinaryOp::kAdd, e, e);
  k.phases.push_back({{}, {}, {{"param", e}}});
  k.is_split = true;
  Optimizer optimizer(runtime::make_interpreter_kernel(k), {}, 2);
  optimizer.add_tensor(3);
  optimizer.param(0)[1] = 1.0f;
  optimizer.step();
  EXPECT_EQ(optimizer.param(0)[1], std::ldexp(1.0f, 60));
}

TEST(Optimizer, HypersAndNames) {
  auto kernel = runtime::make_interpreter_kernel(compile_kernel("adam"));
  Optimizer optimizer(kernel, {{"lr", 0.5}}, 1);
  EXPECT_EQ(optimizer.hyper("lr"), 0.5);
  EXPECT_EQ(optimizer.hyper("beta1"), 0.9);
  optimizer.set_hyper("eps", 1e-3);
  EXPECT_EQ(optimizer.hyper("eps"), 1e-3);
  EXPECT_EQ(optimizer.hyper_names(),
            (std::vector<std::string>{"lr", "beta1", "beta2", "eps", "weight_decay"}));
  EXPECT_EQ(optimizer.state_names(), (std::vector<std::string>{"exp_avg", "exp_avg_sq"}));
  EXPECT_TRUE(optimizer.scalar_names().empty());
  EXPECT_EQ(&optimizer.kernel(), kernel.get());
  optimizer.set_threads(3);
  EXPECT_EQ(optimizer.threads(), 3);
  Optimizer moved = std::move(optimizer);
  EXPECT_EQ(moved.hyper("lr"), 0.5);
}

// ---- Misuse ---------------------------------------------------------------------------

TEST(Optimizer, MisuseIsAClearUserError) {
  auto kernel = runtime::make_interpreter_kernel(compile_kernel("adam"));
  Optimizer optimizer(kernel, {}, 1);
  std::vector<float> p(10), g(10);
  expect_user_error([&] { optimizer.step(); }, {"empty group", "add_tensor"});
  expect_user_error([&] { optimizer.add_tensor(nullptr, g.data(), 10); },
                    {"parameter pointer is null"});
  expect_user_error([&] { optimizer.add_tensor(p.data(), nullptr, 10); },
                    {"gradient pointer is null"});
  expect_user_error([&] { optimizer.add_tensor(p.data(), g.data(), 0); },
                    {"numel must be positive", "leave it out"});
  expect_user_error([&] { optimizer.add_tensor(-5); }, {"numel must be positive, not -5"});
  optimizer.add_tensor(p.data(), g.data(), 10);
  optimizer.add_tensor(20);
  expect_user_error([&] { optimizer.numel(2); }, {"tensor index 2 is out of range", "2 tensors"});
  expect_user_error([&] { optimizer.param(7); }, {"out of range"});
  expect_user_error([&] { optimizer.step_count(2); }, {"out of range"});
  expect_user_error([&] { optimizer.set_hyper("lr_", 1); },
                    {"unknown hyperparameter 'lr_'", "did you mean 'lr'"});
  expect_user_error([&] { optimizer.hyper("beta"); }, {"did you mean 'beta1'"});
  expect_user_error([&] { optimizer.state(0, "exp_avgs"); },
                    {"unknown state 'exp_avgs'", "did you mean 'exp_avg'"});
  expect_user_error([&] { optimizer.state(0, "param"); }, {"'param' is not a state"});
  expect_user_error([&] { optimizer.scalar(0, "mu_product"); },
                    {"unknown scalar state 'mu_product'", "none"});
  expect_user_error([&] { optimizer.set_state(0, "exp_avg", std::vector<float>(11)); },
                    {"has 10 elements; got 11 values"});
  expect_user_error([&] { optimizer.grad(0); }, {"caller owns"});
  expect_user_error([&] { optimizer.set_buffers(1, p.data(), g.data()); },
                    {"memory the optimizer owns"});
  expect_user_error([&] { optimizer.set_buffers(0, nullptr, g.data()); }, {"null"});
  expect_user_error([&] { optimizer.set_threads(-2); }, {"threads"});
  expect_user_error(
      [&] {
        Optimizer(kernel, {{"betas", 0.9}});
      },
      {"unknown hyperparameter 'betas'", "did you mean"});
  expect_user_error([&] { Optimizer(nullptr); }, {"kernel is null"});
  EXPECT_EQ(optimizer.tensor_count(), 2u);  // the failed adds added nothing
}

TEST(Optimizer, SetBuffersMovesACallerTensor) {
  ir::Kernel k = compile_kernel("sgd");
  auto kernel = runtime::make_interpreter_kernel(k);
  Optimizer optimizer(kernel, {{"lr", 0.5}}, 1);
  std::vector<float> p1(4, 1.0f), g1(4, 1.0f), p2(4, 2.0f), g2(4, 2.0f);
  optimizer.add_tensor(p1.data(), g1.data(), 4);
  optimizer.step();
  EXPECT_EQ(p1[0], 0.5f);
  optimizer.set_buffers(0, p2.data(), g2.data());
  optimizer.step();
  EXPECT_EQ(p1[0], 0.5f);
  EXPECT_EQ(p2[0], 1.0f);
}

// ---- Save and load --------------------------------------------------------------------

class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "fuseopt-test-XXXXXX").string();
    path_ = mkdtemp(pattern.data());
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

// Everything save() writes, plus the parameters, for "unchanged" checks.
std::vector<double> snapshot(Optimizer& optimizer) {
  std::vector<double> all;
  for (const std::string& h : optimizer.hyper_names()) all.push_back(optimizer.hyper(h));
  const Optimizer& view = optimizer;
  for (size_t i = 0; i < optimizer.tensor_count(); ++i) {
    all.push_back(static_cast<double>(optimizer.step_count(i)));
    for (float x : optimizer.param(i)) all.push_back(x);
    for (const std::string& s : optimizer.state_names()) {
      for (float x : view.state(i, s)) all.push_back(x);
    }
    for (const std::string& s : optimizer.scalar_names()) all.push_back(view.scalar(i, s));
  }
  return all;
}

void fill_grads(Optimizer& optimizer, int64_t t) {
  for (size_t i = 0; i < optimizer.tensor_count(); ++i) {
    auto g = random_values(static_cast<size_t>(optimizer.numel(i)), seed_of(i, t));
    std::copy(g.begin(), g.end(), optimizer.grad(i).begin());
  }
}

Optimizer make_group(std::shared_ptr<const runtime::CompiledKernel> kernel,
                     const std::vector<int64_t>& sizes, int threads = 2) {
  Optimizer optimizer(std::move(kernel), {}, threads);
  for (size_t i = 0; i < sizes.size(); ++i) {
    optimizer.add_tensor(sizes[i]);
    auto p = random_values(static_cast<size_t>(sizes[i]), seed_of(i, 0, 5));
    std::copy(p.begin(), p.end(), optimizer.param(i).begin());
  }
  return optimizer;
}

TEST(Optimizer, SaveAndLoadContinueBitIdentically) {
  TempDir dir;
  for (const char* rule : {"nadam", "lamb", "adagrad"}) {
    auto kernel = runtime::make_interpreter_kernel(compile_kernel(rule), 500);
    const std::vector<int64_t> sizes = {3, 1200, 500};
    Optimizer a = make_group(kernel, sizes);
    a.set_hyper("lr", 0.01);
    for (int64_t t = 1; t <= 3; ++t) {
      fill_grads(a, t);
      a.step();
    }
    const std::string path = dir.file(std::string(rule) + ".state");
    a.save(path);
    std::vector<std::vector<float>> params_at_save;
    for (size_t i = 0; i < sizes.size(); ++i) {
      params_at_save.emplace_back(a.param(i).begin(), a.param(i).end());
    }
    for (int64_t t = 4; t <= 6; ++t) {
      fill_grads(a, t);
      a.step();
    }

    // A fresh optimizer with other hypers: load restores them with everything else. The
    // parameters belong to the model, not the optimizer's state, so they are copied back.
    Optimizer b = make_group(kernel, sizes, 1);
    b.set_hyper("lr", 123.0);
    b.load(path);
    EXPECT_EQ(b.hyper("lr"), 0.01);
    for (size_t i = 0; i < sizes.size(); ++i) {
      EXPECT_EQ(b.step_count(i), 3);
      std::copy(params_at_save[i].begin(), params_at_save[i].end(), b.param(i).begin());
    }
    for (int64_t t = 4; t <= 6; ++t) {
      fill_grads(b, t);
      b.step();
    }
    const std::vector<double> sa = snapshot(a), sb = snapshot(b);
    ASSERT_EQ(sa.size(), sb.size());
    EXPECT_EQ(std::memcmp(sa.data(), sb.data(), sa.size() * sizeof(double)), 0) << rule;
  }
}

TEST(Optimizer, SaveKeepsStatesFilledBeforeTheFirstStep) {
  TempDir dir;
  auto kernel = runtime::make_interpreter_kernel(compile_kernel("adam"));
  Optimizer a = make_group(kernel, {8});
  a.set_state(0, "exp_avg", std::vector<float>(8, 0.25f));
  a.save(dir.file("s"));
  Optimizer b = make_group(kernel, {8});
  b.load(dir.file("s"));
  fill_grads(a, 1);
  fill_grads(b, 1);
  a.step();
  b.step();
  EXPECT_EQ(snapshot(a), snapshot(b));
}

TEST(Optimizer, SaveBeforeTheStatesAreInitialisedKeepsThemPending) {
  // A step count restored from elsewhere (set_step_count) before any step: the states were
  // never initialised, and must be on the first step after loading too, not left at zero.
  TempDir dir;
  auto kernel = runtime::make_interpreter_kernel(compile_kernel("adagrad"), 100);
  Optimizer a = make_group(kernel, {8});
  a.set_hyper("initial_accumulator_value", 0.5);
  a.set_step_count(0, 7);
  a.save(dir.file("s"));
  Optimizer b = make_group(kernel, {8});
  b.load(dir.file("s"));
  EXPECT_EQ(b.step_count(0), 7);
  fill_grads(a, 8);
  fill_grads(b, 8);
  a.step();
  b.step();
  EXPECT_EQ(snapshot(a), snapshot(b));

  // Version 1 files (no flag) still load, the flag implied by the step count.
  Optimizer stepped = make_group(kernel, {8});
  fill_grads(stepped, 1);
  stepped.step();
  stepped.save(dir.file("v2"));
  std::string bytes = read_bytes(dir.file("v2"));
  // Drop the flag byte that follows the tensor's size and step count (the file's only
  // tensor: its 16 bytes end right before it), rewrite the version and the checksum.
  const std::string name = kernel->ir.config_name();
  size_t at = bytes.find(name);
  ASSERT_NE(at, std::string::npos);
  at = bytes.find(std::string("\x08\0\0\0\0\0\0\0\x01\0\0\0\0\0\0\0", 16), at);
  ASSERT_NE(at, std::string::npos);
  ASSERT_EQ(bytes[at + 16], 1);
  bytes.erase(at + 16, 1);
  bytes[8] = 1;
  bytes.resize(bytes.size() - 8);
  const uint64_t checksum = runtime::fnv1a64(bytes.data(), bytes.size());
  bytes.append(reinterpret_cast<const char*>(&checksum), sizeof checksum);
  write_bytes(dir.file("v1"), bytes);
  Optimizer old = make_group(kernel, {8});
  old.load(dir.file("v1"));
  EXPECT_EQ(old.step_count(0), 1);
  EXPECT_EQ(old.read_state(0, "sum"), stepped.read_state(0, "sum"));
}

TEST(Optimizer, BadStateFilesAreRefusedAndChangeNothing) {
  TempDir dir;
  auto kernel = runtime::make_interpreter_kernel(compile_kernel("nadam"), 100);
  Optimizer source = make_group(kernel, {10, 300});
  for (int64_t t = 1; t <= 2; ++t) {
    fill_grads(source, t);
    source.step();
  }
  const std::string good = dir.file("good");
  source.save(good);
  const std::string bytes = read_bytes(good);
  ASSERT_GT(bytes.size(), 100u);

  Optimizer target = make_group(kernel, {10, 300});
  fill_grads(target, 1);
  target.step();
  target.set_hyper("lr", 0.125);
  const std::vector<double> before = snapshot(target);
  auto expect_refused = [&](const std::string& path, const std::vector<std::string>& parts) {
    expect_user_error([&] { target.load(path); }, parts);
    EXPECT_EQ(snapshot(target), before) << "changed by loading " << path;
  };

  expect_refused(dir.file("missing"), {"cannot read optimizer state"});
  write_bytes(dir.file("text"), "hello, world, this is not a state file at all");
  expect_refused(dir.file("text"), {"not a fuseopt optimizer state file"});
  for (size_t size : {size_t{8}, size_t{12}, size_t{40}, bytes.size() / 2, bytes.size() - 1}) {
    const std::string path = dir.file("truncated" + std::to_string(size));
    write_bytes(path, bytes.substr(0, size));
    expect_refused(path, {"truncated or damaged"});
  }
  for (size_t at : {size_t{13}, size_t{20}, size_t{60}, bytes.size() / 2, bytes.size() - 3}) {
    std::string flipped = bytes;
    flipped[at] = static_cast<char>(flipped[at] ^ 0x10);
    const std::string path = dir.file("flipped" + std::to_string(at));
    write_bytes(path, flipped);
    expect_refused(path, {"damaged"});
  }
  std::string version = bytes;
  version[8] = 9;  // the format version follows the 8-byte magic
  write_bytes(dir.file("version"), version);
  expect_refused(dir.file("version"), {"format version 9"});

  // Another rule, other options, other sizes, another tensor count.
  auto adam = runtime::make_interpreter_kernel(compile_kernel("adam"), 100);
  Optimizer other = make_group(adam, {10, 300});
  other.save(dir.file("adam"));
  expect_refused(dir.file("adam"), {"kernel 'adam_", "not of 'nadam_"});
  auto variant = runtime::make_interpreter_kernel(
      compile_kernel("nadam", {{"decoupled_weight_decay", "true"}}), 100);
  make_group(variant, {10, 300}).save(dir.file("variant"));
  expect_refused(dir.file("variant"), {"decoupled_weight_decay1"});
  make_group(kernel, {10, 301}).save(dir.file("sizes"));
  expect_refused(dir.file("sizes"), {"301 elements for tensor 1"});
  make_group(kernel, {10}).save(dir.file("count"));
  expect_refused(dir.file("count"), {"holds 1 tensors; this optimizer has 2"});

  // And the good file still loads.
  target.load(good);
  EXPECT_EQ(snapshot(target).size(), before.size());
  EXPECT_EQ(target.step_count(0), 2);
}

TEST(Optimizer, SaveReportsAnUnwritablePath) {
  auto kernel = runtime::make_interpreter_kernel(compile_kernel("adam"));
  Optimizer optimizer = make_group(kernel, {4});
  expect_user_error([&] { optimizer.save("/nonexistent-dir/state"); },
                    {"cannot save the optimizer state to '/nonexistent-dir/state'"});
}

TEST(Optimizer, SaveLeavesNoTemporaryFiles) {
  TempDir dir;
  auto kernel = runtime::make_interpreter_kernel(compile_kernel("adam"));
  Optimizer optimizer = make_group(kernel, {4});
  optimizer.save(dir.file("state"));
  optimizer.save(dir.file("state"));  // replaces it
  size_t files = 0;
  for ([[maybe_unused]] const auto& entry :
       std::filesystem::directory_iterator(std::filesystem::path(dir.file("")))) {
    ++files;
  }
  EXPECT_EQ(files, 1u);
}

}  // namespace
}  // namespace fuseopt

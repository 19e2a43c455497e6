// Tests of how the Optimizer cuts its group: coalescing of adjacent tensors (the same bits
// as tensor by tensor, for elementwise and reduction rules, arena and caller memory, 1 and 2
// threads), re-checking adjacency after set_buffers, and the per-tensor controls
// set_enabled and set_step_count.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "runtime/cpu_binary.h"
#include "runtime/optimizer.h"
#include "support/error.h"
#include "tests/runtime/test_group.h"

namespace fuseopt {
namespace {

using test::compile_kernel;
using test::everything_of;
using test::expect_user_error;
using test::hypers_at;
using test::random_values;
using test::same_bits;
using test::seed_of;

// A phase that counts its calls and elements, then runs the wrapped one: how the runtime
// cut the group is visible, what it computes is not changed.
class CountingPhase final : public runtime::PhaseKernel {
 public:
  explicit CountingPhase(std::shared_ptr<const runtime::PhaseKernel> inner)
      : inner_(std::move(inner)) {}
  void run(const runtime::ChunkArgs& args) const override {
    calls.fetch_add(1);
    elements.fetch_add(args.count);
    inner_->run(args);
  }
  mutable std::atomic<int64_t> calls{0};
  mutable std::atomic<int64_t> elements{0};

 private:
  std::shared_ptr<const runtime::PhaseKernel> inner_;
};

struct Counted {
  std::shared_ptr<const runtime::CompiledKernel> kernel;
  std::vector<const CountingPhase*> phases;
  int64_t calls() const {
    int64_t n = 0;
    for (const CountingPhase* p : phases) n += p->calls.load();
    return n;
  }
  void reset() const {
    for (const CountingPhase* p : phases) p->calls = 0;
  }
};

Counted counted_interpreter(const std::string& rule, int64_t chunk_elements) {
  auto inner = runtime::make_interpreter_kernel(compile_kernel(rule), chunk_elements);
  auto kernel = std::make_shared<runtime::CompiledKernel>(*inner);
  Counted counted;
  for (auto& phase : kernel->phases) {
    auto wrapped = std::make_shared<CountingPhase>(phase);
    counted.phases.push_back(wrapped.get());
    phase = wrapped;
  }
  counted.kernel = kernel;
  return counted;
}

enum class Layout {
  kArena,      ///< add_tensor(numel): every buffer in the optimizer's arena
  kSeparate,   ///< caller memory, one allocation per tensor (never adjacent)
  kContiguous  ///< caller memory, all params in one array and all grads in another
};

// A group of `sizes` in `layout`, stepped `steps` times with fresh gradients each step.
// Returns every parameter, state and scalar value in tensor order.
std::vector<float> run_group(std::shared_ptr<const runtime::CompiledKernel> kernel,
                             const std::vector<int64_t>& sizes, Layout layout, int threads,
                             int steps) {
  const ir::Kernel& k = kernel->ir;
  Optimizer optimizer(kernel, hypers_at(k, 1), threads);
  std::vector<std::vector<float>> params, grads;
  std::vector<float> all_params, all_grads;
  int64_t total = 0;
  for (int64_t n : sizes) total += n;
  if (layout == Layout::kContiguous) {
    all_params.resize(static_cast<size_t>(total));
    all_grads.resize(static_cast<size_t>(total));
  }
  int64_t offset = 0;
  for (size_t i = 0; i < sizes.size(); ++i) {
    const std::vector<float> init = random_values(static_cast<size_t>(sizes[i]), seed_of(i, 0, 5));
    switch (layout) {
      case Layout::kArena:
        optimizer.add_tensor(sizes[i]);
        std::copy(init.begin(), init.end(), optimizer.param(i).begin());
        break;
      case Layout::kSeparate:
        params.push_back(init);
        grads.emplace_back(init.size());
        optimizer.add_tensor(params.back().data(), grads.back().data(), sizes[i]);
        break;
      case Layout::kContiguous:
        std::copy(init.begin(), init.end(), all_params.begin() + offset);
        optimizer.add_tensor(all_params.data() + offset, all_grads.data() + offset, sizes[i]);
        break;
    }
    offset += sizes[i];
  }
  for (int64_t t = 1; t <= steps; ++t) {
    for (const auto& [name, value] : hypers_at(k, t)) optimizer.set_hyper(name, value);
    for (size_t i = 0; i < sizes.size(); ++i) {
      const std::vector<float> g = random_values(static_cast<size_t>(sizes[i]), seed_of(i, t, 5));
      float* to = layout == Layout::kArena ? optimizer.grad(i).data()
                  : layout == Layout::kSeparate
                      ? grads[i].data()
                      : all_grads.data() + (optimizer.param_data(i) - all_params.data());
      std::copy(g.begin(), g.end(), to);
    }
    optimizer.step();
  }
  return everything_of(optimizer);
}

// Equal sizes (one scalar row per step), odd sizes and sizes across chunk boundaries.
const std::vector<int64_t> kSizes = {256, 256, 256, 100, 100, 3, 1000, 1000, 256, 17, 17, 17,
                                     5000, 1, 256, 256};

TEST(OptimizerGroup, CoalescedAndSeparateTensorsGiveTheSameBits) {
  for (const char* rule : {"adam", "lamb", "nadam", "sgd", "lars", "adagrad"}) {
    // Chunks of 700: coalesced runs and single tensors are both cut into several.
    Counted counted = counted_interpreter(rule, 700);
    const std::vector<float> reference = run_group(counted.kernel, kSizes, Layout::kSeparate, 1, 3);
    const int64_t separate_calls = counted.calls();
    for (Layout layout : {Layout::kArena, Layout::kContiguous, Layout::kSeparate}) {
      for (int threads : {1, 2}) {
        counted.reset();
        const std::vector<float> got = run_group(counted.kernel, kSizes, layout, threads, 3);
        EXPECT_TRUE(same_bits(got, reference))
            << rule << ", layout " << static_cast<int>(layout) << ", " << threads << " threads";
        if (layout == Layout::kSeparate) {
          EXPECT_EQ(counted.calls(), separate_calls) << rule;
        } else if (std::string(rule) != "lamb" && std::string(rule) != "lars") {
          // Elementwise rules: adjacent tensors with equal rows run as one.
          EXPECT_LT(counted.calls(), separate_calls) << rule << ": nothing was coalesced";
        }
      }
    }
  }
}

TEST(OptimizerGroup, OneRunForAGroupOfEqualAdjacentTensors) {
  Counted counted = counted_interpreter("adam", 1 << 14);
  Optimizer optimizer(counted.kernel, {}, 2);
  for (int i = 0; i < 512; ++i) optimizer.add_tensor(256);  // 2^17 elements
  counted.reset();
  optimizer.step();
  // 2^17 elements in chunks of 2^14 (the arena's blocks may split the run a few times).
  EXPECT_GE(counted.calls(), 8);
  EXPECT_LE(counted.calls(), 8 + 4);
  EXPECT_EQ(counted.phases[0]->elements.load(), int64_t{512} * 256);
}

TEST(OptimizerGroup, ReductionPhasesStayPerTensor) {
  // lamb's first phase reduces per tensor (norms): one call per tensor and chunk, whatever
  // the layout; its second phase is elementwise.
  Counted counted = counted_interpreter("lamb", 1 << 14);
  ASSERT_GE(counted.phases.size(), 2u);
  Optimizer optimizer(counted.kernel, {}, 1);
  for (int i = 0; i < 64; ++i) optimizer.add_tensor(100);
  counted.reset();
  optimizer.step();
  EXPECT_EQ(counted.phases[0]->calls.load(), 64);
}

TEST(OptimizerGroup, SetBuffersChecksAdjacencyAgain) {
  Counted counted = counted_interpreter("adam", 1 << 14);
  const std::vector<int64_t> sizes = {300, 300, 300, 300};
  std::vector<float> params(1200), grads(1200), moved_param(300), moved_grad(300);
  for (size_t i = 0; i < params.size(); ++i) params[i] = static_cast<float>(i) * 1e-3f;
  Optimizer optimizer(counted.kernel, {}, 2);
  Optimizer reference(counted.kernel, {}, 1);
  std::vector<std::vector<float>> ref_params, ref_grads;
  for (size_t i = 0; i < sizes.size(); ++i) {
    optimizer.add_tensor(params.data() + 300 * i, grads.data() + 300 * i, 300);
    ref_params.emplace_back(params.begin() + 300 * i, params.begin() + 300 * (i + 1));
    ref_grads.emplace_back(300);
    reference.add_tensor(ref_params[i].data(), ref_grads[i].data(), 300);
  }
  auto set_grads = [&](int64_t t) {
    for (size_t i = 0; i < sizes.size(); ++i) {
      const std::vector<float> g = random_values(300, seed_of(i, t));
      std::copy(g.begin(), g.end(), ref_grads[i].begin());
      float* to = i == 2 && t > 1 ? moved_grad.data() : grads.data() + 300 * i;
      std::copy(g.begin(), g.end(), to);
    }
  };
  set_grads(1);
  counted.reset();
  optimizer.step();
  EXPECT_EQ(counted.calls(), 1);  // the states follow in the arena: one run
  reference.step();
  // Tensor 2 moves out of line: three runs ({0, 1}, {2}, {3}).
  std::copy(params.begin() + 600, params.begin() + 900, moved_param.begin());
  optimizer.set_buffers(2, moved_param.data(), moved_grad.data());
  set_grads(2);
  counted.reset();
  optimizer.step();
  EXPECT_EQ(counted.calls(), 3);
  reference.step();
  for (size_t i = 0; i < sizes.size(); ++i) {
    EXPECT_TRUE(same_bits(optimizer.read_param(i), reference.read_param(i))) << "tensor " << i;
    for (const std::string& s : optimizer.state_names()) {
      EXPECT_TRUE(same_bits(optimizer.read_state(i, s), reference.read_state(i, s)))
          << "tensor " << i << ", " << s;
    }
  }
}

TEST(OptimizerGroup, DifferentStepCountsDoNotCoalesce) {
  // Tensor 1 added after a step has t = 1 while the others have t = 2: its row differs.
  Counted counted = counted_interpreter("adam", 1 << 14);
  Optimizer optimizer(counted.kernel, {}, 1);
  optimizer.add_tensor(64);
  optimizer.step();
  optimizer.add_tensor(64);
  optimizer.add_tensor(64);
  counted.reset();
  optimizer.step();
  EXPECT_EQ(counted.calls(), 2);  // {0}, {1, 2}
  EXPECT_EQ(optimizer.step_count(0), 2);
  EXPECT_EQ(optimizer.step_count(1), 1);
}

// Everything of tensor `i`: param, states, scalars, step count.
struct Snapshot {
  std::vector<float> values;
  int64_t steps = 0;
};
Snapshot snapshot(const Optimizer& optimizer, size_t i) {
  Snapshot s;
  s.values = optimizer.read_param(i);
  for (const std::string& name : optimizer.state_names()) {
    const std::vector<float> v = optimizer.read_state(i, name);
    s.values.insert(s.values.end(), v.begin(), v.end());
  }
  for (const std::string& name : optimizer.scalar_names()) {
    s.values.push_back(static_cast<float>(optimizer.scalar(i, name)));
  }
  s.steps = optimizer.step_count(i);
  return s;
}

TEST(OptimizerGroup, DisabledTensorsAreLeftAlone) {
  for (const char* rule : {"adam", "lamb", "adagrad"}) {
    auto kernel = runtime::make_interpreter_kernel(compile_kernel(rule), 500);
    const std::vector<int64_t> sizes = {300, 700, 300, 40};
    // `group` disables tensor 1 for steps 2 and 3; `others` has only tensors 0, 2 and 3;
    // `late` has only tensor 1, stepped as often as it was enabled.
    Optimizer group(kernel, {}, 2), others(kernel, {}, 2), late(kernel, {}, 1);
    for (size_t i = 0; i < sizes.size(); ++i) {
      group.add_tensor(sizes[i]);
      const std::vector<float> init = random_values(static_cast<size_t>(sizes[i]), seed_of(i, 0));
      group.write_param(i, init);
      Optimizer& other = i == 1 ? late : others;
      const size_t j = other.add_tensor(sizes[i]);
      other.write_param(j, init);
    }
    EXPECT_TRUE(group.enabled(1));
    auto grads = [&](int64_t t) {
      for (size_t i = 0; i < sizes.size(); ++i) {
        const std::vector<float> g = random_values(static_cast<size_t>(sizes[i]), seed_of(i, t));
        group.write_grad(i, g);
        if (i == 1) {
          late.write_grad(0, g);
        } else {
          others.write_grad(i == 0 ? 0 : i - 1, g);
        }
      }
    };
    // Tensor 1 is disabled from the start: no state initialisation, no step.
    group.set_enabled(1, false);
    EXPECT_FALSE(group.enabled(1));
    const Snapshot before = snapshot(group, 1);
    for (int64_t t = 1; t <= 3; ++t) {
      grads(t);
      group.step();
      others.step();
    }
    const Snapshot after = snapshot(group, 1);
    EXPECT_EQ(after.steps, 0) << rule;
    EXPECT_TRUE(same_bits(after.values, before.values)) << rule << ": memory was touched";
    // Enabled again: its first step, as in a group of its own.
    group.set_enabled(1, true);
    grads(4);
    group.step();
    others.step();
    late.step();
    EXPECT_EQ(group.step_count(1), 1);
    EXPECT_EQ(group.step_count(0), 4);
    EXPECT_TRUE(same_bits(snapshot(group, 1).values, snapshot(late, 0).values)) << rule;
    for (size_t i : {size_t{0}, size_t{2}, size_t{3}}) {
      EXPECT_TRUE(same_bits(snapshot(group, i).values, snapshot(others, i == 0 ? 0 : i - 1).values))
          << rule << ", tensor " << i;
    }
  }
}

TEST(OptimizerGroup, AllDisabledStepsNothing) {
  auto kernel = runtime::make_interpreter_kernel(compile_kernel("adam"), 1 << 14);
  Optimizer optimizer(kernel, {}, 2);
  optimizer.add_tensor(10);
  optimizer.write_grad(0, std::vector<float>(10, 1.0f));
  optimizer.set_enabled(0, false);
  optimizer.step();
  EXPECT_EQ(optimizer.step_count(0), 0);
  EXPECT_TRUE(same_bits(optimizer.read_param(0), std::vector<float>(10, 0.0f)));
  optimizer.set_enabled(0, true);
  optimizer.step();
  EXPECT_EQ(optimizer.step_count(0), 1);
  EXPECT_FALSE(same_bits(optimizer.read_param(0), std::vector<float>(10, 0.0f)));
}

TEST(OptimizerGroup, SetStepCountRestoresAnotherOptimizersState) {
  for (const char* rule : {"adam", "nadam", "lamb", "radam"}) {
    auto kernel = runtime::make_interpreter_kernel(compile_kernel(rule), 1 << 14);
    Optimizer a(kernel, {}, 1), b(kernel, {}, 2);
    a.add_tensor(123);
    b.add_tensor(123);
    a.write_param(0, random_values(123, 1));
    for (int64_t t = 1; t <= 3; ++t) {
      a.write_grad(0, random_values(123, seed_of(0, t)));
      a.step();
    }
    // b takes over a's state the way a torch state_dict is restored: values, then t.
    b.write_param(0, a.read_param(0));
    for (const std::string& s : a.state_names()) b.write_state(0, s, a.read_state(0, s));
    for (const std::string& s : a.scalar_names()) b.set_scalar(0, s, a.scalar(0, s));
    b.set_step_count(0, 3);
    EXPECT_EQ(b.step_count(0), 3);
    const std::vector<float> g = random_values(123, 99);
    a.write_grad(0, g);
    b.write_grad(0, g);
    a.step();
    b.step();
    EXPECT_EQ(b.step_count(0), 4);
    EXPECT_TRUE(same_bits(snapshot(a, 0).values, snapshot(b, 0).values)) << rule;
  }
}

TEST(OptimizerGroup, SetStepCountKeepsTheRulesInitialValues) {
  // A step count set before the first step does not skip the states' initialisation:
  // adagrad's accumulator starts from its hyper, not from the allocation's zeros. Its update
  // of `sum` does not depend on t, so it equals that of a tensor stepped from t = 0.
  auto kernel = runtime::make_interpreter_kernel(compile_kernel("adagrad"), 1 << 14);
  Optimizer restored(kernel, {{"initial_accumulator_value", 0.5}}, 1);
  Optimizer fresh(kernel, {{"initial_accumulator_value", 0.5}}, 1);
  restored.add_tensor(50);
  fresh.add_tensor(50);
  const std::vector<float> g = random_values(50, 3);
  restored.write_grad(0, g);
  fresh.write_grad(0, g);
  restored.set_step_count(0, 4);
  restored.step();
  fresh.step();
  EXPECT_EQ(restored.step_count(0), 5);
  EXPECT_EQ(fresh.step_count(0), 1);
  EXPECT_TRUE(same_bits(restored.read_state(0, "sum"), fresh.read_state(0, "sum")));
  EXPECT_GE(restored.read_state(0, "sum")[0], 0.5f);
}

TEST(OptimizerGroup, MisuseOfTheTensorControlsIsAUserError) {
  auto kernel = runtime::make_interpreter_kernel(compile_kernel("adam"), 1 << 14);
  Optimizer optimizer(kernel, {}, 1);
  optimizer.add_tensor(4);
  expect_user_error([&] { optimizer.set_step_count(0, -1); }, {"set_step_count", "-1"});
  expect_user_error([&] { optimizer.set_step_count(1, 2); }, {"tensor index 1", "out of range"});
  expect_user_error([&] { optimizer.set_enabled(3, false); }, {"tensor index 3"});
  expect_user_error([&] { (void)optimizer.enabled(1); }, {"tensor index 1"});
  EXPECT_EQ(optimizer.step_count(0), 0);
  EXPECT_TRUE(optimizer.enabled(0));
}

TEST(OptimizerGroup, SaveAndLoadKeepStepCountsSetByHand) {
  auto kernel = runtime::make_interpreter_kernel(compile_kernel("adam"), 1 << 14);
  Optimizer a(kernel, {}, 1), b(kernel, {}, 1);
  for (Optimizer* o : {&a, &b}) {
    o->add_tensor(20);
    o->add_tensor(30);
  }
  a.write_grad(0, random_values(20, 1));
  a.write_grad(1, random_values(30, 2));
  a.step();
  a.set_step_count(1, 7);
  a.set_enabled(0, false);
  const std::string path = ::testing::TempDir() + "fuseopt_group_test.state";
  a.save(path);
  b.load(path);
  EXPECT_EQ(b.step_count(0), 1);
  EXPECT_EQ(b.step_count(1), 7);
  for (size_t i = 0; i < 2; ++i) {
    for (const std::string& s : a.state_names()) {
      EXPECT_TRUE(same_bits(a.read_state(i, s), b.read_state(i, s)));
    }
  }
  std::remove(path.c_str());
}

}  // namespace
}  // namespace fuseopt

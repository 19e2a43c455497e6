// Loss scaling and clipping decided on the device (Optimizer::set_decide_on_device): the
// generated decide function and the gated phases, run on the emulated device through the
// real loader and Optimizer, against the interpreter backend deciding on the host, bit for
// bit: parameters, states, step counts, skips and the gradient norm, over steps that clip,
// skip for an inf gradient, skip for a device found_inf, read a device grad_scale and leave
// a tensor out. And the point of it: such a step reads nothing back from the device (the
// host-decided step does), its outcome coming back by an asynchronous copy.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "codegen/cuda/cuda_source.h"
#include "ir/grad_transform.h"
#include "runtime/cpu_binary.h"
#include "runtime/cuda/cuda_kernel.h"
#include "runtime/optimizer.h"
#include "support/error.h"
#include "tests/codegen_cuda/cuda_emulation.h"
#include "tests/gpu/decision_checks.h"

namespace fuseopt::emulation {
namespace {

std::vector<const EmulatedKernel*> transform_kernels() {
  std::vector<const EmulatedKernel*> out;
  for (const EmulatedKernel& emulated : emulated_kernels()) {
    if (transform_of(emulated.rule).any()) out.push_back(&emulated);
  }
  return out;
}

const EmulatedKernel& find_kernel(const std::string& rule) {
  for (const EmulatedKernel* emulated : transform_kernels()) {
    if (emulated->rule == rule) return *emulated;
  }
  throw std::runtime_error("no emulated kernel " + rule);
}

using gpu_testing::DeviceFloat;
using gpu_testing::first_difference;

TEST(DeviceDecision, OnlyKernelsWhoseLaterPhasesNeedNoHostDecide) {
  EmulatedDevice device;
  int deciding = 0;
  for (const EmulatedKernel* emulated : transform_kernels()) {
    const Loaded loaded = prepare(*emulated);
    SCOPED_TRACE(loaded.view.name);
    const bool can = ir::can_decide_on_device(loaded.kernel);
    EXPECT_EQ(!loaded.source.decide_function.empty(), can);
    EXPECT_EQ(can, emulated->rule.rfind("lamb", 0) != 0);  // LAMB's later phases reduce
    const auto compiled = runtime::load_cuda_kernel(loaded.kernel, loaded.view, device);
    EXPECT_EQ(compiled->decides_on_device, can);
    Optimizer optimizer(compiled);
    if (can) {
      EXPECT_EQ(loaded.source.text.find("gate->skip != 0.0) return;") != std::string::npos,
                loaded.kernel.phases.size() > 1);
      optimizer.set_decide_on_device(true);
      EXPECT_TRUE(optimizer.decides_on_device());
      ++deciding;
    } else {
      EXPECT_THROW(optimizer.set_decide_on_device(true), UserError);
    }
  }
  EXPECT_GE(deciding, 4);
  // Host kernels decide on the host.
  const Loaded loaded = prepare(find_kernel("adam+grad_transform"));
  Optimizer host(runtime::make_interpreter_kernel(loaded.kernel, 1024));
  EXPECT_THROW(host.set_decide_on_device(true), UserError);
  EXPECT_THROW(host.set_device_loss_scale(nullptr, nullptr), UserError);
}

TEST(DeviceDecision, StepsMatchTheHostDecisionBitForBit) {
  EmulatedDevice device;
  int checked = 0;
  for (const EmulatedKernel* emulated : transform_kernels()) {
    const Loaded loaded = prepare(*emulated);
    if (!ir::can_decide_on_device(loaded.kernel)) continue;
    SCOPED_TRACE(loaded.view.name);
    int steps = 0;
    // No host round trip: nothing read back synchronously and no wait (but where a new
    // tensor table is uploaded); one asynchronous copy of the decision.
    auto observe = [&](const std::function<void()>& step, bool group_changed) {
      const int downloads = device.downloads.load();
      const int synchronizations = device.synchronizations.load();
      const int async_downloads = device.async_downloads.load();
      step();
      EXPECT_EQ(device.downloads.load(), downloads);
      if (!group_changed) {
        EXPECT_EQ(device.synchronizations.load(), synchronizations);
      }
      EXPECT_EQ(device.async_downloads.load(), async_downloads + 1);
      ++steps;
    };
    // Around and across the 1024-element chunks, and a single element.
    EXPECT_EQ(gpu_testing::compare_device_decision(
                  runtime::load_cuda_kernel(loaded.kernel, loaded.view, device),
                  runtime::make_interpreter_kernel(loaded.kernel, loaded.shape.chunk_elements),
                  device, {1000, 3000, 1, 2500, 1024}, observe),
              "");
    EXPECT_GE(steps, 4);
    ++checked;
  }
  EXPECT_GE(checked, 4);
  EXPECT_EQ(device.allocated.load(), 0u) << "device memory leaked";
}

// The host-decided step of the same kernel waits for its statistics: the comparison above
// would see a round trip.
TEST(DeviceDecision, TheHostDecisionReadsTheStatisticsBack) {
  EmulatedDevice device;
  const Loaded loaded = prepare(find_kernel("adam+grad_transform"));
  ASSERT_TRUE(ir::can_decide_on_device(loaded.kernel));
  Optimizer optimizer(runtime::load_cuda_kernel(loaded.kernel, loaded.view, device));
  optimizer.add_tensor(5000);
  const int downloads = device.downloads.load();
  EXPECT_TRUE(optimizer.step());
  EXPECT_GT(device.downloads.load(), downloads);
}

// The outcome is read lazily: step counts advance at once and go back when a skip is read,
// by the next step or any call that needs them; a bad device grad_scale skips and is reported
// by the call that reads the outcome, once.
TEST(DeviceDecision, SkipsAreReadWhenNeeded) {
  EmulatedDevice device;
  const Loaded loaded = prepare(find_kernel("adam+grad_transform"));
  const auto compiled = runtime::load_cuda_kernel(loaded.kernel, loaded.view, device);
  Optimizer optimizer(compiled);
  optimizer.set_decide_on_device(true);
  optimizer.add_tensor(3000);
  optimizer.write_grad(0, std::vector<float>(3000, 0.5f));
  DeviceFloat found_inf(device, 1.0f);
  DeviceFloat scale(device, 2.0f);
  optimizer.set_device_loss_scale(scale.pointer(), found_inf.pointer());
  const std::vector<float> before = optimizer.read_param(0);
  EXPECT_TRUE(optimizer.step());
  EXPECT_EQ(optimizer.step_count(0), 0);  // read: skipped, put back
  EXPECT_TRUE(optimizer.last_step_skipped());
  EXPECT_EQ(first_difference(optimizer.read_param(0), before), "");

  found_inf.set(0.0f);
  EXPECT_TRUE(optimizer.step());
  EXPECT_FALSE(optimizer.last_step_skipped());
  EXPECT_EQ(optimizer.step_count(0), 1);
  EXPECT_NE(first_difference(optimizer.read_param(0), before), "");

  found_inf.set(1.0f);
  EXPECT_TRUE(optimizer.step());
  EXPECT_TRUE(optimizer.step());  // the skip before it is read here
  EXPECT_EQ(optimizer.step_count(0), 1);

  const std::vector<float> kept = optimizer.read_param(0);
  found_inf.set(0.0f);
  scale.set(0.0f);  // not a loss scale
  EXPECT_TRUE(optimizer.step());
  EXPECT_THROW(optimizer.last_step_skipped(), UserError);
  EXPECT_TRUE(optimizer.last_step_skipped());  // reported once
  EXPECT_EQ(found_inf.get(), 1.0f);            // the skip reported as to a GradScaler
  EXPECT_EQ(optimizer.step_count(0), 1);
  EXPECT_EQ(first_difference(optimizer.read_param(0), kept), "");

  // Back to the host: the hypers again, and the step waits for its statistics.
  optimizer.set_decide_on_device(false);
  EXPECT_FALSE(optimizer.decides_on_device());
  EXPECT_THROW(optimizer.set_device_loss_scale(scale.pointer(), nullptr), UserError);
  EXPECT_TRUE(optimizer.step());
  EXPECT_EQ(optimizer.step_count(0), 2);
}

// Optimizers sharing one device found_inf (fuseopt.torch's param groups) that all check their
// gradients before any of them steps skip or step together, with no host round trip; the
// check itself changes nothing.
TEST(DeviceDecision, OptimizersSharingFoundInfSkipTogether) {
  EmulatedDevice device;
  const Loaded loaded = prepare(find_kernel("adam+grad_transform"));
  const auto compiled = runtime::load_cuda_kernel(loaded.kernel, loaded.view, device);
  const auto reference =
      runtime::make_interpreter_kernel(loaded.kernel, loaded.shape.chunk_elements);
  DeviceFloat found_inf(device, 0.0f);
  DeviceFloat scale(device, 4.0f);
  const std::vector<std::vector<int64_t>> groups = {{1500, 20}, {700}};
  std::vector<std::unique_ptr<Optimizer>> on_device;
  std::vector<std::unique_ptr<Optimizer>> on_host;
  for (const std::vector<int64_t>& numels : groups) {
    on_device.push_back(std::make_unique<Optimizer>(compiled));
    on_host.push_back(std::make_unique<Optimizer>(reference));
    on_device.back()->set_decide_on_device(true);
    on_device.back()->set_device_loss_scale(scale.pointer(), found_inf.pointer());
    on_host.back()->set_hyper(ir::kGradScaleHyper, 4.0);
    for (int64_t numel : numels) {
      on_device.back()->add_tensor(numel);
      on_host.back()->add_tensor(numel);
    }
  }
  for (int step = 0; step < 4; ++step) {
    SCOPED_TRACE("step " + std::to_string(step));
    const bool poisoned = step == 1;  // an inf in the second group only
    for (size_t g = 0; g < groups.size(); ++g) {
      for (size_t t = 0; t < groups[g].size(); ++t) {
        std::vector<float> grad(static_cast<size_t>(groups[g][t]));
        for (size_t i = 0; i < grad.size(); ++i) {
          grad[i] = 4.0f * static_cast<float>((i * 37 + g * 11 + static_cast<size_t>(step)) % 17) /
                        17.0f -
                    2.0f;
        }
        if (poisoned && g == 1) grad[5] = std::numeric_limits<float>::infinity();
        on_device[g]->write_grad(t, grad);
        on_host[g]->write_grad(t, grad);
      }
    }
    found_inf.set(0.0f);
    const int downloads = device.downloads.load();
    for (auto& optimizer : on_device) optimizer->check_gradients_on_device();
    for (auto& optimizer : on_device) EXPECT_TRUE(optimizer->step());
    EXPECT_EQ(device.downloads.load(), downloads);
    EXPECT_EQ(found_inf.get(), poisoned ? 1.0f : 0.0f);
    for (size_t g = 0; g < groups.size(); ++g) {
      EXPECT_EQ(on_device[g]->last_step_skipped(), poisoned) << "group " << g;
      if (!poisoned) {
        EXPECT_TRUE(on_host[g]->step());
      }
      for (size_t t = 0; t < groups[g].size(); ++t) {
        EXPECT_EQ(on_device[g]->step_count(t), on_host[g]->step_count(t));
        EXPECT_EQ(first_difference(on_device[g]->read_param(t), on_host[g]->read_param(t)), "");
        for (const std::string& name : on_host[g]->state_names()) {
          EXPECT_EQ(
              first_difference(on_device[g]->read_state(t, name), on_host[g]->read_state(t, name)),
              "");
        }
      }
    }
  }
  EXPECT_EQ(on_device[0]->step_count(0), 3);
  Optimizer unset(compiled);
  EXPECT_THROW(unset.check_gradients_on_device(), UserError);
  unset.set_decide_on_device(true);
  EXPECT_THROW(unset.check_gradients_on_device(), UserError);  // no device found_inf
}

}  // namespace
}  // namespace fuseopt::emulation

#include "tests/gpu/decision_checks.h"

#include <bit>
#include <cstddef>
#include <limits>
#include <sstream>

#include "ir/grad_transform.h"
#include "runtime/optimizer.h"

namespace fuseopt::gpu_testing {
namespace {

uint32_t next_random(uint32_t& state) {
  state = state * 1664525u + 1013904223u;
  return state >> 8;
}

std::vector<float> random_values(int64_t count, uint32_t& state, float scale) {
  std::vector<float> values(static_cast<size_t>(count));
  for (float& v : values) {
    v = (static_cast<float>(next_random(state) % 20001u) / 10000.0f - 1.0f) * scale;
  }
  return values;
}

struct StepPlan {
  const char* what;
  float grad_scale = 1;        // the loss scale the gradients carry
  bool device_scale = false;   // the device optimizer reads it from a device float
  bool inf_gradient = false;   // one gradient element is inf
  bool found_inf = false;      // found elsewhere: hyper (host) or device float (device)
  size_t disabled = SIZE_MAX;  // a tensor without a gradient this step
  bool skipped = false;        // the expected outcome
};

}  // namespace

DeviceFloat::DeviceFloat(const runtime::CudaDevice& device, float value)
    : memory_(device, sizeof(float)), device_(device) {
  set(value);
}

void DeviceFloat::set(float value) const {
  device_.copy_to_device(memory_.get(), &value, sizeof(value));
}

float DeviceFloat::get() const {
  float value = 0;
  device_.copy_to_host(&value, memory_.get(), sizeof(value));
  return value;
}

std::string first_difference(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return "sizes differ";
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::bit_cast<uint32_t>(a[i]) != std::bit_cast<uint32_t>(b[i])) {
      std::ostringstream out;
      out << "element " << i << ": " << a[i] << " vs " << b[i];
      return out.str();
    }
  }
  return "";
}

std::string compare_device_decision(
    const std::shared_ptr<const runtime::CompiledKernel>& device_kernel,
    const std::shared_ptr<const runtime::CompiledKernel>& host_kernel,
    const runtime::CudaDevice& device, const std::vector<int64_t>& numels,
    const DecisionStepObserver& observe) {
  const ir::GradTransform transform = device_kernel->ir.grad_transform;
  Optimizer on_device(device_kernel);
  Optimizer on_host(host_kernel);
  on_device.set_decide_on_device(true);
  uint32_t state = 17;
  for (int64_t numel : numels) {
    on_device.add_tensor(numel);
    const size_t t = on_host.add_tensor(numel);
    const std::vector<float> param = random_values(numel, state, 1.0f);
    on_device.write_param(t, param);
    on_host.write_param(t, param);
  }
  if (transform.clip_norm) {
    on_device.set_hyper(ir::kMaxGradNormHyper, 0.25);
    on_host.set_hyper(ir::kMaxGradNormHyper, 0.25);
  }
  const DeviceFloat device_scale(device, 1.0f);
  const DeviceFloat device_found_inf(device, 0.0f);

  const size_t inf_tensor = numels.size() > 3 ? 3 : numels.size() - 1;
  const size_t left_out = numels.size() > 2 ? 2 : 0;
  std::vector<StepPlan> plans = {{"first step", 1024}, {"second step", 1024}};
  if (transform.unscale) {
    plans.push_back({"inf gradient", 1024, false, true, false, SIZE_MAX, true});
    plans.push_back({"found_inf", 1024, false, false, true, SIZE_MAX, true});
    plans.push_back({"device grad_scale", 512, true});
    plans.push_back({"device grad_scale and an inf", 512, true, true, false, SIZE_MAX, true});
  }
  plans.push_back({"a tensor left out", 1, false, false, false, left_out});
  plans.push_back({"taken back", 1});

  size_t previous_disabled = SIZE_MAX;
  bool first = true;
  for (const StepPlan& plan : plans) {
    const std::string where = std::string(plan.what) + ": ";
    const bool group_changed = first || plan.disabled != previous_disabled;
    first = false;
    previous_disabled = plan.disabled;
    for (size_t t = 0; t < numels.size(); ++t) {
      std::vector<float> grad = random_values(numels[t], state, plan.grad_scale);
      if (plan.inf_gradient && t == inf_tensor) {
        grad[grad.size() / 2] = std::numeric_limits<float>::infinity();
      }
      on_device.write_grad(t, grad);
      on_host.write_grad(t, grad);
      on_device.set_enabled(t, t != plan.disabled);
      on_host.set_enabled(t, t != plan.disabled);
    }
    if (transform.unscale) {
      on_host.set_hyper(ir::kGradScaleHyper, plan.grad_scale);
      on_host.set_hyper(ir::kFoundInfHyper, plan.found_inf ? 1.0 : 0.0);
      device_found_inf.set(plan.found_inf ? 1.0f : 0.0f);
      if (plan.device_scale) {
        device_scale.set(plan.grad_scale);
        on_device.set_device_loss_scale(device_scale.pointer(), device_found_inf.pointer());
      } else {
        on_device.set_hyper(ir::kGradScaleHyper, plan.grad_scale);
        on_device.set_device_loss_scale(nullptr, device_found_inf.pointer());
      }
    }
    bool queued = false;
    observe([&] { queued = on_device.step(); }, group_changed);
    if (!queued) return where + "step() on the device returned false before its outcome was read";
    if (on_host.step() == plan.skipped) return where + "the host decided otherwise than expected";
    if (on_device.last_step_skipped() != plan.skipped) {
      return where + "last_step_skipped() is " + (plan.skipped ? "false" : "true") +
             " on the device";
    }
    // A skip is reported in found_inf, as to a GradScaler.
    if (transform.unscale && device_found_inf.get() != (plan.skipped ? 1.0f : 0.0f)) {
      return where + "found_inf is " + std::to_string(device_found_inf.get()) + " after the step";
    }
    if (std::bit_cast<uint64_t>(on_device.last_grad_norm()) !=
        std::bit_cast<uint64_t>(on_host.last_grad_norm())) {
      std::ostringstream out;
      out.precision(17);
      out << where << "gradient norm " << on_device.last_grad_norm() << " on the device, "
          << on_host.last_grad_norm() << " on the host";
      return out.str();
    }
    for (size_t t = 0; t < numels.size(); ++t) {
      const std::string tensor = where + "tensor " + std::to_string(t) + ": ";
      if (on_device.step_count(t) != on_host.step_count(t)) {
        return tensor + "step count " + std::to_string(on_device.step_count(t)) + " vs " +
               std::to_string(on_host.step_count(t));
      }
      if (std::string d = first_difference(on_device.read_param(t), on_host.read_param(t));
          !d.empty()) {
        return tensor + "param " + d;
      }
      for (const std::string& name : on_host.state_names()) {
        if (std::string d =
                first_difference(on_device.read_state(t, name), on_host.read_state(t, name));
            !d.empty()) {
          return tensor + name + " " + d;
        }
      }
    }
  }
  const int64_t taken = static_cast<int64_t>(plans.size()) - (transform.unscale ? 3 : 0);
  if (on_device.step_count(0) != taken) {
    return "tensor 0 took " + std::to_string(on_device.step_count(0)) + " steps, not " +
           std::to_string(taken);
  }
  return "";
}

}  // namespace fuseopt::gpu_testing

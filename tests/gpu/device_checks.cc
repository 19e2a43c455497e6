#include "tests/gpu/device_checks.h"

#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <sstream>

#include "support/error.h"
#include "tests/gpu/group_stepper.h"

namespace fuseopt::gpu_testing {

std::vector<float> random_values(size_t n, uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = dist(gen);
  return v;
}

std::string describe_float(float x) {
  uint32_t bits = 0;
  std::memcpy(&bits, &x, sizeof(bits));
  std::ostringstream out;
  out.precision(9);
  out << x << " (0x" << std::hex << bits << ")";
  return out.str();
}

bool has_reductions(const ir::Kernel& kernel) {
  for (const ir::Phase& phase : kernel.phases) {
    if (!phase.reductions.empty()) return true;
  }
  return false;
}

namespace {

// Group versions unique in the process, as the runtime's contract asks.
uint64_t next_group_version() {
  static std::atomic<uint64_t> next{uint64_t{1} << 48};  // far from the Optimizer's
  return next++;
}

}  // namespace

int64_t ulp_distance(float a, float b) {
  if (std::isnan(a) && std::isnan(b)) return 0;
  if (std::isnan(a) || std::isnan(b)) return std::numeric_limits<int64_t>::max();
  auto ordered = [](float x) {
    int32_t i = 0;
    std::memcpy(&i, &x, sizeof(i));
    return i < 0 ? static_cast<int64_t>(std::numeric_limits<int32_t>::min()) - i
                 : static_cast<int64_t>(i);
  };
  const int64_t d = ordered(a) - ordered(b);
  return d < 0 ? -d : d;
}

GroupSpec mixed_group(int64_t chunk, bool large, size_t many, uint32_t seed) {
  GroupSpec spec;
  for (int64_t n : {1, 3, 7, 8, 15, 16, 17, 31, 33}) spec.numels.push_back(n);
  if (large) spec.numels.push_back(1000003);
  for (int64_t n : {chunk - 1, chunk, chunk + 1, 2 * chunk + 3}) spec.numels.push_back(n);
  spec.numels.push_back(0);
  spec.misaligned.assign(spec.numels.size(), false);
  // The same sizes again as misaligned views.
  const size_t fixed = spec.numels.size();
  for (size_t i = 0; i < fixed; ++i) {
    if (spec.numels[i] <= 5000 || spec.numels[i] == chunk + 1) {
      spec.numels.push_back(spec.numels[i]);
      spec.misaligned.push_back(true);
    }
  }
  std::mt19937 gen(seed);
  std::uniform_int_distribution<int64_t> size(1, 5000);
  for (size_t i = 0; i < many; ++i) {
    spec.numels.push_back(size(gen));
    spec.misaligned.push_back(i % 3 == 2);
  }
  return spec;
}

struct DeviceGroup::Allocation {
  runtime::CudaBuffer buffer;
};

DeviceGroup::DeviceGroup(const runtime::CudaDevice& device, const ir::Kernel& kernel,
                         GroupSpec spec, uint32_t seed)
    : device_(device), kernel_(kernel), spec_(std::move(spec)) {
  spec_.misaligned.resize(spec_.numels.size(), false);
  const size_t tensors = spec_.numels.size();
  const size_t buffers = kernel.buffers.size();
  FUSEOPT_CHECK(buffers >= 2, "a kernel has param and grad");
  host_.resize(tensors);
  host_args_.resize(tensors);
  for (size_t t = 0; t < tensors; ++t) {
    const size_t n = static_cast<size_t>(spec_.numels[t]);
    host_[t].resize(buffers);
    for (size_t b = 0; b < buffers; ++b) {
      host_[t][b] = random_values(n, seed + static_cast<uint32_t>(t * 131 + b));
    }
    host_args_[t].numel = spec_.numels[t];
    for (size_t b = 0; b < buffers; ++b) host_args_[t].buffers.push_back(host_[t][b].data());
    if (spec_.grad_aliases_param) host_args_[t].buffers[1] = host_args_[t].buffers[0];
    for (size_t b = 0; b < buffers; ++b) {
      void* pointer = nullptr;
      if (b == 1 && spec_.grad_aliases_param) {
        pointer = device_pointers_[t * buffers];
      } else {
        auto allocation = std::make_unique<Allocation>();
        allocation->buffer = runtime::CudaBuffer(device, (n + 1) * sizeof(float));
        pointer =
            reinterpret_cast<float*>(allocation->buffer.get()) + (spec_.misaligned[t] ? 1 : 0);
        allocations_.push_back(std::move(allocation));
      }
      device_pointers_.push_back(pointer);
    }
  }
}

DeviceGroup::~DeviceGroup() = default;

void DeviceGroup::upload() const {
  const size_t buffers = kernel_.buffers.size();
  for (size_t t = 0; t < host_.size(); ++t) {
    for (size_t b = 0; b < buffers; ++b) {
      if (b == 1 && spec_.grad_aliases_param) continue;
      device_.copy_to_device(
          reinterpret_cast<runtime::CudaDevicePtr>(device_pointers_[t * buffers + b]),
          host_args_[t].buffers[b], host_[t][b].size() * sizeof(float));
    }
  }
}

void DeviceGroup::new_gradients(uint32_t seed) {
  const size_t buffers = kernel_.buffers.size();
  for (size_t t = 0; t < host_.size(); ++t) {
    // With aliasing the gradient is the parameter: new values replace both.
    const size_t b = spec_.grad_aliases_param ? 0 : 1;
    std::vector<float> values = random_values(host_[t][b].size(), seed + static_cast<uint32_t>(t));
    std::copy(values.begin(), values.end(), host_args_[t].buffers[b]);
    device_.copy_to_device(
        reinterpret_cast<runtime::CudaDevicePtr>(device_pointers_[t * buffers + b]), values.data(),
        values.size() * sizeof(float));
  }
}

std::vector<std::vector<std::vector<float>>> DeviceGroup::read_device() const {
  const size_t buffers = kernel_.buffers.size();
  std::vector<std::vector<std::vector<float>>> out(host_.size());
  for (size_t t = 0; t < host_.size(); ++t) {
    out[t].resize(buffers);
    for (size_t b = 0; b < buffers; ++b) {
      out[t][b].resize(static_cast<size_t>(spec_.numels[t]));
      device_.copy_to_host(
          out[t][b].data(),
          reinterpret_cast<runtime::CudaDevicePtr>(device_pointers_[t * buffers + b]),
          out[t][b].size() * sizeof(float));
    }
  }
  return out;
}

std::vector<std::vector<std::vector<float>>> DeviceGroup::read_host() const {
  std::vector<std::vector<std::vector<float>>> out(host_.size());
  for (size_t t = 0; t < host_.size(); ++t) {
    for (size_t b = 0; b < host_[t].size(); ++b) {
      const float* data = host_args_[t].buffers[b];
      out[t].emplace_back(data, data + spec_.numels[t]);
    }
  }
  return out;
}

std::vector<double> check_hypers(const ir::Kernel& kernel) {
  std::vector<double> hypers;
  for (const ir::HyperDecl& hyper : kernel.hypers) {
    hypers.push_back(
        hyper.name == "weight_decay" && hyper.default_value == 0 ? 0.01 : hyper.default_value);
  }
  return hypers;
}

std::string compare_with_interpreter(const runtime::CudaDevice& device,
                                     const runtime::CompiledKernel& compiled, const GroupSpec& spec,
                                     int steps, uint32_t seed, int reduction_ulps) {
  const ir::Kernel& kernel = compiled.ir;
  DeviceGroup group(device, kernel, spec, seed);
  const std::vector<double> hypers = check_hypers(kernel);
  const ir::Interpreter interpreter(kernel);
  for (ir::TensorArgs& tensor : group.host()) interpreter.initialize(tensor, hypers);
  group.upload();
  GroupStepper stepper(kernel, spec.numels);
  stepper.hypers() = hypers;
  const uint64_t version = next_group_version();
  for (int t = 1; t <= steps; ++t) {
    if (t > 1) group.new_gradients(seed * 7 + static_cast<uint32_t>(t));
    stepper.step(compiled, group.device_buffers(), version, t);
    interpreter.step(group.host(), hypers, t);
  }
  const bool exact = !has_reductions(kernel);
  const auto device_values = group.read_device();
  const auto host_values = group.read_host();
  std::ostringstream failures;
  int reported = 0;
  int64_t worst = 0;
  for (size_t t = 0; t < spec.numels.size(); ++t) {
    for (size_t b = 0; b < kernel.buffers.size(); ++b) {
      for (size_t i = 0; i < device_values[t][b].size(); ++i) {
        const float d = device_values[t][b][i];
        const float h = host_values[t][b][i];
        const int64_t ulps = ulp_distance(d, h);
        worst = std::max(worst, ulps);
        if (exact ? ulps == 0 : ulps <= reduction_ulps) continue;
        if (reported++ < 8) {
          failures << "tensor " << t << " (numel " << spec.numels[t]
                   << (spec.misaligned[t] ? ", misaligned" : "") << ") buffer '"
                   << kernel.buffers[b].name << "' element " << i << ": device "
                   << describe_float(d) << ", interpreter " << describe_float(h) << " (" << ulps
                   << " ulps)\n";
        }
      }
    }
    for (size_t s = 0; s < kernel.scalars.size(); ++s) {
      const double d = stepper.scalars(t)[s];
      const double h = group.host()[t].scalars[s];
      const bool same = exact ? (d == h || (std::isnan(d) && std::isnan(h)))
                              : std::fabs(d - h) <= 1e-9 * std::max(1.0, std::fabs(h));
      if (!same && reported++ < 8) {
        failures << "tensor " << t << " scalar '" << kernel.scalars[s].name << "': device " << d
                 << ", interpreter " << h << "\n";
      }
    }
  }
  if (std::getenv("FUSEOPT_CHECK_VERBOSE") != nullptr) {
    std::fprintf(stderr, "%s: worst %lld ulps over %zu tensors (%s)\n", compiled.name.c_str(),
                 static_cast<long long>(worst), spec.numels.size(), exact ? "exact" : "reductions");
  }
  if (reported == 0) return "";
  std::ostringstream out;
  out << compiled.name << ": " << reported << " differences (worst " << worst << " ulps, "
      << (exact ? "bitwise expected" : "tolerance " + std::to_string(reduction_ulps) + " ulps")
      << ")\n"
      << failures.str();
  return out.str();
}

std::string compare_repeated_runs(const runtime::CudaDevice& device,
                                  const runtime::CompiledKernel& compiled,
                                  const runtime::CompiledKernel& other, const GroupSpec& spec,
                                  int steps, uint32_t seed) {
  const ir::Kernel& kernel = compiled.ir;
  struct Outcome {
    std::vector<std::vector<std::vector<float>>> buffers;
    std::vector<double> reductions;
    std::vector<std::vector<double>> scalars;
  };
  auto run = [&](const runtime::CompiledKernel& k) {
    DeviceGroup group(device, kernel, spec, seed);
    const std::vector<double> hypers = check_hypers(kernel);
    const ir::Interpreter interpreter(kernel);
    for (ir::TensorArgs& tensor : group.host()) interpreter.initialize(tensor, hypers);
    group.upload();
    GroupStepper stepper(kernel, spec.numels);
    stepper.hypers() = hypers;
    const uint64_t version = next_group_version();
    Outcome outcome;
    for (int t = 1; t <= steps; ++t) {
      if (t > 1) group.new_gradients(seed * 7 + static_cast<uint32_t>(t));
      stepper.step(k, group.device_buffers(), version, t);
      for (size_t p = 0; p < kernel.phases.size(); ++p) {
        const std::vector<double>& r = stepper.reductions(p);
        outcome.reductions.insert(outcome.reductions.end(), r.begin(), r.end());
      }
    }
    outcome.buffers = group.read_device();
    for (size_t t = 0; t < spec.numels.size(); ++t) outcome.scalars.push_back(stepper.scalars(t));
    return outcome;
  };
  const Outcome first = run(compiled);
  const Outcome second = run(compiled);
  const Outcome third = run(other);
  auto same_bits = [](const Outcome& x, const Outcome& y) {
    if (x.reductions.size() != y.reductions.size()) return false;
    for (size_t i = 0; i < x.reductions.size(); ++i) {
      if (std::memcmp(&x.reductions[i], &y.reductions[i], sizeof(double)) != 0) return false;
    }
    for (size_t t = 0; t < x.buffers.size(); ++t) {
      for (size_t b = 0; b < x.buffers[t].size(); ++b) {
        if (x.buffers[t][b].size() != y.buffers[t][b].size()) return false;
        if (!x.buffers[t][b].empty() && std::memcmp(x.buffers[t][b].data(), y.buffers[t][b].data(),
                                                    x.buffers[t][b].size() * sizeof(float)) != 0) {
          return false;
        }
      }
      if (x.scalars[t].size() != y.scalars[t].size() ||
          (!x.scalars[t].empty() && std::memcmp(x.scalars[t].data(), y.scalars[t].data(),
                                                x.scalars[t].size() * sizeof(double)) != 0)) {
        return false;
      }
    }
    return true;
  };
  std::string failures;
  if (!same_bits(first, second)) failures += compiled.name + ": a repeated run gave other bits\n";
  if (!same_bits(first, third)) {
    failures += compiled.name + ": another grid (" + other.name + ") gave other bits\n";
  }
  return failures;
}

}  // namespace fuseopt::gpu_testing

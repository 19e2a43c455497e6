#include "tests/gpu/storage_checks.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <sstream>

#include "frontend/rule.h"
#include "runtime/optimizer.h"
#include "support/error.h"
#include "support/low_precision.h"

namespace fuseopt::gpu_testing {
namespace {

std::vector<std::string> state_names(const ir::Kernel& kernel) {
  std::vector<std::string> names;
  for (const ir::BufferDecl& buffer : kernel.buffers) {
    if (buffer.role == ir::BufferRole::kState) names.push_back(buffer.name);
  }
  return names;
}

// Device memory the caller owns (misaligned tensors), freed at the end of a check.
class DeviceAllocations {
 public:
  explicit DeviceAllocations(const runtime::DeviceMemory& memory) : memory_(memory) {}
  ~DeviceAllocations() {
    for (void* p : pointers_) memory_.free(p);
  }
  DeviceAllocations(const DeviceAllocations&) = delete;
  DeviceAllocations& operator=(const DeviceAllocations&) = delete;
  void* allocate(size_t bytes) {
    pointers_.push_back(memory_.allocate(bytes));
    return pointers_.back();
  }

 private:
  const runtime::DeviceMemory& memory_;
  std::vector<void*> pointers_;
};

// `values` rounded to nearest even into `type`'s bytes, as Optimizer::write_grad stores them.
std::vector<unsigned char> storage_bytes(const std::vector<float>& values, StorageType type) {
  const size_t size = static_cast<size_t>(storage_type_bytes(type));
  std::vector<unsigned char> bytes(values.size() * size);
  for (size_t i = 0; i < values.size(); ++i) {
    const uint32_t bits = store_bits(values[i], type);
    if (size == 4) {
      std::memcpy(&bytes[i * 4], &bits, 4);
    } else {
      const auto half = static_cast<uint16_t>(bits);
      std::memcpy(&bytes[i * 2], &half, 2);
    }
  }
  return bytes;
}

}  // namespace

std::vector<StorageVariant> storage_variants() {
  std::vector<StorageVariant> variants;
  for (const char* name : {"adam", "adamw", "lion", "sgd", "lamb", "adagrad"}) {
    const frontend::Rule rule = frontend::load_rule(name);
    const std::vector<std::string> states = state_names(rule.compile(rule.resolve_options()));
    auto add = [&](const std::string& label, std::map<std::string, std::string> storage) {
      variants.push_back({name, {}, std::move(storage), std::string(name) + " " + label});
    };
    auto all_states = [&](const std::string& spec) {
      std::map<std::string, std::string> storage;
      for (const std::string& state : states) storage[state] = spec;
      return storage;
    };
    add("param=bf16", {{"param", "bf16"}});
    add("param=f16", {{"param", "f16"}});
    add("grad=bf16", {{"grad", "bf16"}});
    add("param=bf16 stochastic", {{"param", "bf16 stochastic"}});
    if (!states.empty()) {
      add("states=bf16", all_states("bf16"));
      add("states=bf16 stochastic", all_states("bf16 stochastic"));
      std::map<std::string, std::string> all = all_states("bf16");
      all["param"] = "bf16 stochastic";
      all["grad"] = "bf16";
      add("all=bf16 param stochastic", all);
    }
  }
  {
    const frontend::Rule rule = frontend::load_rule("adam");
    std::map<std::string, std::string> storage;
    for (const std::string& state : state_names(rule.compile(rule.resolve_options()))) {
      storage[state] = "f16 stochastic";
    }
    storage["grad"] = "f16";
    variants.push_back({"adam", {}, storage, "adam states=f16 stochastic grad=f16"});
  }
  return variants;
}

void apply_storage(ir::Kernel& kernel, const std::map<std::string, std::string>& storage) {
  for (const auto& [buffer, spec] : storage) {
    std::string type = spec;
    bool stochastic = false;
    const std::string suffix = " stochastic";
    if (type.ends_with(suffix)) {
      type.resize(type.size() - suffix.size());
      stochastic = true;
    }
    const auto parsed = parse_storage_type(type);
    FUSEOPT_CHECK(parsed.has_value(), "apply_storage: bad storage '" + spec + "'");
    ir::set_buffer_storage(kernel, buffer, *parsed, stochastic);
  }
}

std::map<std::string, double> storage_check_hypers(const ir::Kernel& kernel, uint64_t seed) {
  std::map<std::string, double> hypers;
  for (const ir::HyperDecl& hyper : kernel.hypers) {
    if (hyper.name == "lr") hypers["lr"] = 0.01;
    if (hyper.name == "weight_decay" && hyper.default_value == 0) hypers["weight_decay"] = 0.01;
    if (hyper.name == "momentum" && hyper.default_value == 0) hypers["momentum"] = 0.9;
    if (hyper.name == ir::kRoundingSeedHyper) hypers[hyper.name] = static_cast<double>(seed);
  }
  return hypers;
}

int64_t storage_ulp_distance(float a, float b, StorageType type) {
  if (type == StorageType::kF32) return ulp_distance(a, b);
  if (std::isnan(a) && std::isnan(b)) return 0;
  if (std::isnan(a) || std::isnan(b)) return std::numeric_limits<int64_t>::max();
  // Sign-magnitude 16-bit patterns to a line where neighbours differ by one.
  auto ordered = [type](float x) {
    const auto bits = static_cast<int64_t>(store_bits(x, type));
    return (bits & 0x8000) != 0 ? -(bits & 0x7fff) : bits;
  };
  const int64_t d = ordered(a) - ordered(b);
  return d < 0 ? -d : d;
}

std::string compare_optimizers(std::shared_ptr<const runtime::CompiledKernel> device_kernel,
                               std::shared_ptr<const runtime::CompiledKernel> reference,
                               const GroupSpec& spec, int steps, uint32_t seed,
                               int reduction_ulps) {
  FUSEOPT_CHECK(device_kernel->device_memory && device_kernel->device != nullptr,
                "compare_optimizers: the first kernel must keep its tensors in device memory");
  const ir::Kernel& kernel = device_kernel->ir;
  const std::map<std::string, double> hypers = storage_check_hypers(kernel);
  const runtime::DeviceMemory& memory = *device_kernel->device;
  DeviceAllocations allocations(memory);
  Optimizer device(device_kernel, hypers, 1);
  // Any thread count gives the same bits; every core makes the reference quick.
  Optimizer host(reference, storage_check_hypers(reference->ir), 0);
  const StorageType param_type = kernel.buffers[0].storage;
  const StorageType grad_type = kernel.buffers[1].storage;
  const size_t param_bytes = static_cast<size_t>(storage_type_bytes(param_type));
  const size_t grad_bytes = static_cast<size_t>(storage_type_bytes(grad_type));

  std::vector<size_t> spec_index;   // per optimizer tensor: its entry in `spec`
  std::vector<void*> caller_grads;  // per optimizer tensor: caller-owned device grad or null
  for (size_t t = 0; t < spec.numels.size(); ++t) {
    const int64_t n = spec.numels[t];
    if (n == 0) continue;  // the Optimizer takes no empty tensors
    const auto count = static_cast<size_t>(n);
    const bool misaligned = t < spec.misaligned.size() && spec.misaligned[t];
    const std::vector<float> param = random_values(count, seed + static_cast<uint32_t>(t * 131));
    const std::vector<float> grad = random_values(count, seed + static_cast<uint32_t>(t * 131 + 1));
    size_t index = 0;
    if (misaligned) {
      // One element past an allocation's start: aligned to the element, never to a vector.
      auto* p = static_cast<unsigned char*>(allocations.allocate((count + 1) * param_bytes));
      auto* g = static_cast<unsigned char*>(allocations.allocate((count + 1) * grad_bytes));
      index = device.add_tensor_raw(p + param_bytes, g + grad_bytes, n);
      const std::vector<unsigned char> bytes = storage_bytes(grad, grad_type);
      memory.copy_to_device(g + grad_bytes, bytes.data(), bytes.size());
      caller_grads.push_back(g + grad_bytes);
    } else {
      index = device.add_tensor(n);
      device.write_grad(index, grad);
      caller_grads.push_back(nullptr);
    }
    device.write_param(index, param);
    const size_t host_index = host.add_tensor(n);
    FUSEOPT_CHECK(host_index == index, "compare_optimizers: tensor indices differ");
    host.write_param(index, param);
    host.write_grad(index, grad);
    spec_index.push_back(t);
  }

  for (int s = 1; s <= steps; ++s) {
    if (s > 1) {
      for (size_t i = 0; i < spec_index.size(); ++i) {
        const std::vector<float> grad =
            random_values(static_cast<size_t>(device.numel(i)),
                          seed * 7 + static_cast<uint32_t>(s * 1000 + spec_index[i]));
        if (caller_grads[i] != nullptr) {
          const std::vector<unsigned char> bytes = storage_bytes(grad, grad_type);
          memory.copy_to_device(caller_grads[i], bytes.data(), bytes.size());
        } else {
          device.write_grad(i, grad);
        }
        host.write_grad(i, grad);
      }
    }
    const bool device_stepped = device.step();
    const bool host_stepped = host.step();
    if (device_stepped != host_stepped) return device_kernel->name + ": step() results differ\n";
  }
  device.synchronize();

  const bool exact = !has_reductions(kernel);
  std::ostringstream failures;
  int reported = 0;
  int64_t worst = 0;
  for (size_t i = 0; i < spec_index.size(); ++i) {
    const size_t t = spec_index[i];
    for (const ir::BufferDecl& buffer : kernel.buffers) {
      if (buffer.role == ir::BufferRole::kGrad) continue;  // only read
      const bool is_param = buffer.role == ir::BufferRole::kParam;
      const std::vector<float> d =
          is_param ? device.read_param(i) : device.read_state(i, buffer.name);
      const std::vector<float> h = is_param ? host.read_param(i) : host.read_state(i, buffer.name);
      // f32 buffers of kernels with reductions get the f32 tolerance of device_checks.h.
      const int64_t tolerance =
          exact ? 0 : (buffer.storage == StorageType::kF32 ? 16 : reduction_ulps);
      for (size_t e = 0; e < d.size(); ++e) {
        const int64_t ulps = storage_ulp_distance(d[e], h[e], buffer.storage);
        worst = std::max(worst, ulps);
        if (ulps <= tolerance) continue;
        if (reported++ < 8) {
          failures << "tensor " << t << " (numel " << spec.numels[t]
                   << (t < spec.misaligned.size() && spec.misaligned[t]
                           ? ", caller-owned, misaligned"
                           : "")
                   << ") buffer '" << buffer.name << "' (" << storage_type_name(buffer.storage)
                   << (buffer.stochastic ? " stochastic" : "") << ") element " << e << ": device "
                   << describe_float(d[e]) << ", interpreter " << describe_float(h[e]) << " (" << ulps
                   << " ulps)\n";
        }
      }
    }
    for (const ir::ScalarStateDecl& scalar : kernel.scalars) {
      const double d = device.scalar(i, scalar.name);
      const double h = host.scalar(i, scalar.name);
      const bool same = exact ? (d == h || (std::isnan(d) && std::isnan(h)))
                              : std::fabs(d - h) <= 1e-9 * std::max(1.0, std::fabs(h));
      if (!same && reported++ < 8) {
        failures << "tensor " << t << " scalar '" << scalar.name << "': device " << d
                 << ", interpreter " << h << "\n";
      }
    }
  }
  if (std::getenv("FUSEOPT_CHECK_VERBOSE") != nullptr) {
    std::fprintf(stderr, "%s: worst %lld storage ulps over %zu tensors (%s)\n",
                 device_kernel->name.c_str(), static_cast<long long>(worst), spec_index.size(),
                 exact ? "exact" : "reductions");
  }
  if (reported == 0) return "";
  std::ostringstream out;
  out << device_kernel->name << ": " << reported << " differences (worst " << worst
      << " storage ulps, " << (exact ? "bitwise expected" : "reductions") << ")\n"
      << failures.str();
  return out.str();
}

std::string compare_stochastic_seeds(std::shared_ptr<const runtime::CompiledKernel> kernel,
                                     const GroupSpec& spec, int steps, uint32_t seed) {
  FUSEOPT_CHECK(kernel->ir.has_stochastic_store(),
                "compare_stochastic_seeds: the kernel has no stochastic store");
  auto run = [&](uint64_t rounding_seed) {
    Optimizer optimizer(kernel, storage_check_hypers(kernel->ir, rounding_seed), 1);
    std::vector<int64_t> numels;
    for (int64_t n : spec.numels) {
      if (n > 0) numels.push_back(n);
    }
    for (size_t i = 0; i < numels.size(); ++i) {
      const auto count = static_cast<size_t>(numels[i]);
      optimizer.add_tensor(numels[i]);
      optimizer.write_param(i, random_values(count, seed + static_cast<uint32_t>(i * 131)));
    }
    for (int s = 1; s <= steps; ++s) {
      for (size_t i = 0; i < numels.size(); ++i) {
        optimizer.write_grad(i, random_values(static_cast<size_t>(numels[i]),
                                              seed * 7 + static_cast<uint32_t>(s * 1000 + i)));
      }
      optimizer.step();
    }
    std::vector<std::vector<float>> out;
    for (size_t i = 0; i < numels.size(); ++i) {
      for (const ir::BufferDecl& buffer : kernel->ir.buffers) {
        if (buffer.role == ir::BufferRole::kParam) out.push_back(optimizer.read_param(i));
        if (buffer.role == ir::BufferRole::kState)
          out.push_back(optimizer.read_state(i, buffer.name));
      }
    }
    return out;
  };
  auto same_bits = [](const std::vector<std::vector<float>>& a,
                      const std::vector<std::vector<float>>& b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i) {
      if (a[i].size() != b[i].size() ||
          (!a[i].empty() &&
           std::memcmp(a[i].data(), b[i].data(), a[i].size() * sizeof(float)) != 0)) {
        return false;
      }
    }
    return true;
  };
  const auto first = run(1234);
  const auto second = run(1234);
  const auto other = run(99);
  std::string failures;
  if (!same_bits(first, second)) failures += kernel->name + ": the same seed gave other bits\n";
  if (same_bits(first, other)) failures += kernel->name + ": another seed gave the same bits\n";
  return failures;
}

}  // namespace fuseopt::gpu_testing

// The CPU tuning device: synthetic tensors, the correctness gate against the interpreter
// backend, and timed steps through runtime::Optimizer.
#include "autotune/cpu_tuning_device.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>
#include <utility>

#include "runtime/cpu_binary.h"
#include "support/error.h"
#include "support/json.h"

namespace fuseopt::autotune {
namespace {

// Deterministic, denormal-free values: the state of a step a few hundred steps into
// training, more or less (small gradients, positive second moments).
class Generator {
 public:
  explicit Generator(uint64_t seed) : state_(seed * 0x9E3779B97F4A7C15ull + 1) {}
  float uniform(float low, float high) {
    state_ ^= state_ << 13;
    state_ ^= state_ >> 7;
    state_ ^= state_ << 17;
    const double unit = static_cast<double>(state_ >> 11) * (1.0 / 9007199254740992.0);
    return static_cast<float>(low + (high - low) * unit);
  }

 private:
  uint64_t state_;
};

void collect_loads(const ir::Expr& e, std::set<std::string>& loads,
                   std::set<const ir::ExprNode*>& seen) {
  if (!e || !seen.insert(e.get()).second) return;
  if (e->kind == ir::NodeKind::kLoad) loads.insert(e->name);
  for (const ir::Expr& operand : e->operands) collect_loads(operand, loads, seen);
}

double traffic_per_element(const ir::Kernel& kernel) {
  double bytes = 0;
  for (const ir::Phase& phase : kernel.phases) {
    std::set<std::string> loads;
    std::set<const ir::ExprNode*> seen;
    for (const ir::Reduction& r : phase.reductions) collect_loads(r.body, loads, seen);
    for (const ir::Store& s : phase.stores) {
      collect_loads(s.value, loads, seen);
      if (kernel.find_buffer(s.target) != nullptr) bytes += 4;  // element stores only
    }
    bytes += 4.0 * static_cast<double>(loads.size());
  }
  return bytes;
}

std::string read_first_line(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

// MemAvailable from /proc/meminfo, in bytes; 0 when unknown.
double available_memory_bytes() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  double kib = 0;
  std::string unit;
  while (in >> key >> kib >> unit) {
    if (key == "MemAvailable:") return kib * 1024;
  }
  return 0;
}

}  // namespace

struct CpuTuningDevice::Data {
  std::vector<int64_t> sizes;
  // Per tensor, one vector per ir::Kernel::buffers entry (param, grad, states).
  std::vector<std::vector<std::vector<float>>> buffers;

  Data(const ir::Kernel& kernel, std::vector<int64_t> tensor_sizes, uint64_t seed)
      : sizes(std::move(tensor_sizes)) {
    Generator gen(seed);
    for (int64_t n : sizes) {
      std::vector<std::vector<float>> tensor;
      for (const ir::BufferDecl& buffer : kernel.buffers) {
        std::vector<float> values(static_cast<size_t>(n));
        float low = 1e-5f, high = 1e-3f;  // states: small and positive (second moments)
        if (buffer.role == ir::BufferRole::kParam) low = -0.1f, high = 0.1f;
        if (buffer.role == ir::BufferRole::kGrad) low = -0.01f, high = 0.01f;
        for (float& v : values) v = gen.uniform(low, high);
        tensor.push_back(std::move(values));
      }
      buffers.push_back(std::move(tensor));
    }
  }

  int64_t bytes() const {
    int64_t total = 0;
    for (const auto& tensor : buffers) {
      for (const auto& buffer : tensor) total += static_cast<int64_t>(buffer.size()) * 4;
    }
    return total;
  }
};

// An Optimizer loaded with a copy of some Data: restore() puts every parameter, state and
// scalar state back to the data's values (the grad is never written).
struct CpuTuningDevice::Runner {
  Optimizer optimizer;
  const ir::Kernel& kernel;
  const Data& data;

  Runner(std::shared_ptr<const runtime::CompiledKernel> compiled, int threads,
         const ir::Kernel& ir_kernel, const Data& pristine)
      : optimizer(std::move(compiled), {}, threads), kernel(ir_kernel), data(pristine) {
    for (size_t t = 0; t < data.sizes.size(); ++t) {
      optimizer.add_tensor(data.sizes[t]);
      const int grad = kernel.buffer_index("grad");
      const std::vector<float>& g = data.buffers[t][static_cast<size_t>(grad)];
      std::copy(g.begin(), g.end(), optimizer.grad(t).begin());
    }
    restore();
  }

  void restore() {
    for (size_t t = 0; t < data.sizes.size(); ++t) {
      for (size_t b = 0; b < kernel.buffers.size(); ++b) {
        const ir::BufferDecl& decl = kernel.buffers[b];
        const std::vector<float>& values = data.buffers[t][b];
        if (decl.role == ir::BufferRole::kParam) {
          std::copy(values.begin(), values.end(), optimizer.param(t).begin());
        } else if (decl.role == ir::BufferRole::kState) {
          optimizer.set_state(t, decl.name, values);
        }
      }
      for (const ir::ScalarStateDecl& scalar : kernel.scalars) {
        optimizer.set_scalar(t, scalar.name, scalar.init);
      }
    }
  }

  // Every output (param, then each state; then the scalar states) of every tensor.
  std::vector<std::vector<float>> outputs() {
    std::vector<std::vector<float>> out;
    for (size_t t = 0; t < data.sizes.size(); ++t) {
      for (const ir::BufferDecl& decl : kernel.buffers) {
        if (decl.role == ir::BufferRole::kGrad) continue;
        std::span<const float> values =
            decl.role == ir::BufferRole::kParam
                ? std::span<const float>(optimizer.param(t))
                : std::as_const(optimizer).state(t, decl.name);
        out.emplace_back(values.begin(), values.end());
      }
      std::vector<float> scalars;
      for (const ir::ScalarStateDecl& scalar : kernel.scalars) {
        scalars.push_back(static_cast<float>(optimizer.scalar(t, scalar.name)));
      }
      out.push_back(std::move(scalars));
    }
    return out;
  }
};

CpuTuningDevice::CpuTuningDevice(ir::Kernel kernel, CpuProblem problem, Loader loader,
                                 int64_t memory_limit_bytes)
    : kernel_(std::move(kernel)),
      problem_(problem),
      loader_(std::move(loader)),
      memory_limit_(memory_limit_bytes) {
  FUSEOPT_CHECK(problem_.elements >= 1 && problem_.tensors >= 1 &&
                    problem_.tensors <= problem_.elements,
                "tuning problem of " + std::to_string(problem_.elements) + " elements in " +
                    std::to_string(problem_.tensors) + " tensors");
  bytes_per_element_ = traffic_per_element(kernel_);
  std::vector<int64_t> sizes;
  const int64_t base = problem_.elements / problem_.tensors;
  for (int64_t t = 0; t < problem_.tensors; ++t) {
    sizes.push_back(base + (t < problem_.elements % problem_.tensors ? 1 : 0));
  }
  // The pristine copy and one optimizer's tensors must fit: refuse before allocating.
  const double needed = 2.0 * 4.0 * static_cast<double>(kernel_.buffers.size()) *
                        static_cast<double>(problem_.elements);
  const double available = available_memory_bytes();
  if (available > 0 && needed > 0.8 * available) {
    char message[200];
    std::snprintf(message, sizeof message,
                  "tuning %lld elements of %s needs %.1f GiB of scratch memory; %.1f GiB are "
                  "available", static_cast<long long>(problem_.elements),
                  kernel_.config_name().c_str(), needed / (1 << 30), available / (1 << 30));
    throw EnvironmentError(message);
  }
  timing_data_ = std::make_unique<Data>(kernel_, std::move(sizes), 1);
}

CpuTuningDevice::~CpuTuningDevice() {
  runners_.clear();  // optimizers refer to the data
}

std::shared_ptr<const runtime::CompiledKernel> CpuTuningDevice::kernel_for(const Config& config) {
  auto found = kernels_.find(config);
  if (found != kernels_.end()) return found->second;
  return kernels_.emplace(config, loader_(config)).first->second;
}

void CpuTuningDevice::prepare(const Config& config) { kernel_for(config); }

std::string CpuTuningDevice::check(const Config& config) {
  const int64_t chunk = config.get(kChunkKnob);
  const int threads = static_cast<int>(config.get(kThreadsKnob));
  // Below, at and above the chunk, and a tail shorter than any vector: every edge a schedule
  // can get wrong. Kept small so checking is cheap.
  const int64_t cut = std::min<int64_t>(chunk, 65536);
  const Data check_data(kernel_, {2 * cut + 37, cut, 5}, 2);

  auto found = references_.find(chunk);
  if (found == references_.end()) {
    Runner reference(runtime::make_interpreter_kernel(kernel_, chunk), 1, kernel_, check_data);
    reference.optimizer.step();
    found = references_.emplace(chunk, reference.outputs()).first;
  }
  const std::vector<std::vector<float>>& want = found->second;

  Runner candidate(kernel_for(config), threads, kernel_, check_data);
  candidate.optimizer.step();
  const std::vector<std::vector<float>> got = candidate.outputs();
  if (got.size() != want.size()) return "the kernel produced a different set of outputs";

  // Names of the outputs, in outputs() order, for the message.
  std::vector<std::string> names;
  for (const ir::BufferDecl& decl : kernel_.buffers) {
    if (decl.role != ir::BufferRole::kGrad) names.push_back(decl.name);
  }
  names.push_back("scalar states");
  for (size_t o = 0; o < want.size(); ++o) {
    const std::vector<float>& w = want[o];
    const std::vector<float>& g = got[o];
    if (w.size() != g.size()) return "output sizes differ";
    double scale = 0;
    for (float v : w) {
      if (std::isfinite(v)) scale = std::max(scale, std::fabs(static_cast<double>(v)));
    }
    for (size_t i = 0; i < w.size(); ++i) {
      const double a = w[i], b = g[i];
      bool same;
      if (std::isnan(a) || std::isnan(b)) {
        same = std::isnan(a) && std::isnan(b);
      } else if (std::isinf(a) || std::isinf(b)) {
        same = a == b;
      } else {
        same = std::fabs(a - b) <= kRelativeTolerance * std::fabs(a) + kAbsoluteTolerance * scale;
      }
      if (!same) {
        const size_t per_tensor = names.size();
        std::ostringstream message;
        message.precision(9);
        message << names[o % per_tensor] << " of check tensor " << o / per_tensor
                << ", element " << i << ": the interpreter gives " << a << ", this config " << b;
        return message.str();
      }
    }
  }
  return "";
}

CpuTuningDevice::Runner& CpuTuningDevice::runner(const Config& config) {
  for (auto it = runners_.begin(); it != runners_.end(); ++it) {
    if (it->first == config) {
      runners_.splice(runners_.begin(), runners_, it);
      return *runners_.front().second;
    }
  }
  // Make room first: the least recently used optimizers go.
  const int64_t one = timing_data_->bytes();
  while (!runners_.empty() &&
         static_cast<int64_t>(runners_.size() + 1) * one > std::max(memory_limit_, one)) {
    runners_.pop_back();
  }
  runners_.emplace_front(config, std::make_unique<Runner>(kernel_for(config),
                                                          static_cast<int>(config.get(kThreadsKnob)),
                                                          kernel_, *timing_data_));
  return *runners_.front().second;
}

void CpuTuningDevice::restore(const Config& config) { runner(config).restore(); }

void CpuTuningDevice::run(const Config& config, int64_t iterations) {
  Runner& r = runner(config);
  for (int64_t i = 0; i < iterations; ++i) r.optimizer.step();
}

std::vector<float> CpuTuningDevice::scratch_param(const Config& config, size_t tensor) {
  std::span<float> values = runner(config).optimizer.param(tensor);
  return std::vector<float>(values.begin(), values.end());
}

std::string CpuTuningDevice::environment_json() {
  support::JsonWriter w;
  w.begin_object();
  const std::string load = read_first_line("/proc/loadavg");
  w.key("elements").value(problem_.elements);
  w.key("governor").value(read_first_line("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"));
  w.key("loadavg").value(load.substr(0, load.find(' ')));
  w.key("tensors").value(problem_.tensors);
  w.end_object();
  return w.str();
}

}  // namespace fuseopt::autotune

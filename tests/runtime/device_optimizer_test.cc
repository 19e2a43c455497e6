// Tests of fuseopt::Optimizer with device kernels (CompiledKernel::device_memory), without a
// GPU: a fake runtime::DeviceMemory hands out addresses the host cannot dereference (host
// blocks moved by a large offset), and a fake GroupPhaseKernel translates them back and runs
// the interpreter. So any place where the Optimizer reached into device memory itself, rather
// than through the interface, crashes here. Covered: every built-in rule against the oracle
// with optimizer- and caller-owned device memory, initialisation on the device, the copying
// accessors, refused span accessors, save and load across host and device, freeing.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <new>
#include <stdexcept>
#include <utility>

#include "rules/builtin_rules.h"
#include "runtime/cpu_binary.h"
#include "runtime/optimizer.h"
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

// Device memory on the host, at addresses the host cannot use: every block is reached at
// its host address plus kShift (bit 55: outside every user address space on x86-64 and
// arm64, also with arm64's top-byte-ignore). Every pointer given to it is checked to lie in
// a live block.
class FakeDevice final : public runtime::DeviceMemory {
 public:
  static constexpr uintptr_t kShift = uintptr_t{1} << 55;
  static constexpr size_t kAlign = 64;

  ~FakeDevice() override {
    for (const auto& [address, bytes] : live_) {
      ::operator delete[](reinterpret_cast<void*>(address), std::align_val_t{kAlign});
    }
  }

  void* allocate(size_t bytes) const override {
    EXPECT_GT(bytes, 0u);
    auto* block = static_cast<unsigned char*>(::operator new[](bytes, std::align_val_t{kAlign}));
    std::memset(block, 0xA5, bytes);  // unspecified contents: never zero by chance
    live_[reinterpret_cast<uintptr_t>(block)] = bytes;
    ++allocations;
    return reinterpret_cast<void*>(reinterpret_cast<uintptr_t>(block) + kShift);
  }
  void free(void* pointer) const noexcept override {
    if (pointer == nullptr) return;
    const uintptr_t address = reinterpret_cast<uintptr_t>(pointer) - kShift;
    auto found = live_.find(address);
    if (found == live_.end()) {
      ADD_FAILURE() << "free of an address that is not a live block";
      return;
    }
    ::operator delete[](reinterpret_cast<void*>(address), std::align_val_t{kAlign});
    live_.erase(found);
    ++frees;
  }
  void copy_to_device(void* destination, const void* source, size_t bytes) const override {
    std::memcpy(host(destination, bytes), source, bytes);
    ++uploads;
  }
  void copy_to_host(void* destination, const void* source, size_t bytes) const override {
    std::memcpy(destination, host(source, bytes), bytes);
    ++downloads;
  }
  void copy_on_device(void* destination, const void* source, size_t bytes) const override {
    std::memcpy(host(destination, bytes), host(source, bytes), bytes);
    ++device_copies;
  }
  void fill(void* destination, uint32_t bits, int element_bytes, size_t count) const override {
    EXPECT_TRUE(element_bytes == 4 || element_bytes == 2);
    auto* at =
        static_cast<unsigned char*>(host(destination, count * static_cast<size_t>(element_bytes)));
    for (size_t i = 0; i < count; ++i)
      std::memcpy(at + i * static_cast<size_t>(element_bytes), &bits,
                  static_cast<size_t>(element_bytes));
    ++fills;
  }
  void synchronize() const override { ++synchronizations; }
  std::string name() const override { return "the fake device"; }

  /// The host address of `bytes` bytes at device address `pointer`, which must lie in one
  /// live block (else the test fails and this throws).
  void* host(const void* pointer, size_t bytes) const {
    const uintptr_t address = reinterpret_cast<uintptr_t>(pointer) - kShift;
    auto block = live_.upper_bound(address);
    if (block != live_.begin()) {
      --block;
      if (address >= block->first && address + bytes <= block->first + block->second) {
        return reinterpret_cast<void*>(address);
      }
    }
    ADD_FAILURE() << "device address " << pointer << " (" << bytes
                  << " bytes) is not in a live block";
    throw std::logic_error("bad device address");
  }
  float* host_floats(const void* pointer, int64_t count) const {
    return static_cast<float*>(host(pointer, static_cast<size_t>(count) * sizeof(float)));
  }

  /// A caller-owned device tensor with `values`.
  float* upload(const std::vector<float>& values) const {
    auto* memory = static_cast<float*>(allocate(values.size() * sizeof(float)));
    copy_to_device(memory, values.data(), values.size() * sizeof(float));
    return memory;
  }

  size_t live_blocks() const { return live_.size(); }

  mutable int allocations = 0, frees = 0, uploads = 0, downloads = 0, device_copies = 0, fills = 0,
              synchronizations = 0;

 private:
  mutable std::map<uintptr_t, size_t> live_;  // host address -> bytes
};

// A whole-group phase "on" the fake device: the interpreter over each tensor's memory.
class FakeGroupPhase final : public runtime::GroupPhaseKernel {
 public:
  FakeGroupPhase(std::shared_ptr<const ir::Interpreter> interpreter, size_t phase,
                 std::shared_ptr<const FakeDevice> device)
      : interpreter_(std::move(interpreter)), phase_(phase), device_(std::move(device)) {
    const ir::Phase& p = interpreter_->kernel().phases[phase];
    inputs_ = ir::phase_scalar_inputs(p).size();
    reductions_ = p.reductions.size();
  }

  void run_group(const runtime::GroupArgs& args) const override {
    ++calls;
    tensor_counts.push_back(args.tensor_count);
    versions.push_back(args.group_version);
    const size_t buffers = interpreter_->kernel().buffers.size();
    std::vector<float*> host(buffers);
    for (size_t i = 0; i < args.tensor_count; ++i) {
      for (size_t b = 0; b < buffers; ++b) {
        host[b] = device_->host_floats(args.buffers[i * buffers + b], args.numels[i]);
      }
      std::vector<double> scalars(args.scalars + i * inputs_, args.scalars + (i + 1) * inputs_);
      interpreter_->run_phase_chunk(phase_, args.numels[i], host.data(), scalars,
                                    args.partials + i * reductions_);
    }
  }

  mutable int calls = 0;
  mutable std::vector<size_t> tensor_counts;  ///< per call
  mutable std::vector<uint64_t> versions;     ///< per call

 private:
  std::shared_ptr<const ir::Interpreter> interpreter_;
  size_t phase_;
  std::shared_ptr<const FakeDevice> device_;
  size_t inputs_ = 0;
  size_t reductions_ = 0;
};

std::shared_ptr<runtime::CompiledKernel> device_kernel(const ir::Kernel& k,
                                                       std::shared_ptr<const FakeDevice> device) {
  auto interpreter = std::make_shared<const ir::Interpreter>(k);
  auto kernel = std::make_shared<runtime::CompiledKernel>();
  kernel->ir = k;
  for (size_t p = 0; p < k.phases.size(); ++p) {
    kernel->group_phases.push_back(std::make_shared<FakeGroupPhase>(interpreter, p, device));
  }
  kernel->device_memory = true;
  kernel->device = std::move(device);
  kernel->backend = "fake";
  kernel->name = k.config_name() + "_fake";
  return kernel;
}

// Runs `steps` steps over a group of `sizes` on the fake device, even tensors in memory the
// optimizer allocates and odd ones in caller-owned device memory, against the oracle.
void run_against_oracle(const std::string& rule, const std::vector<int64_t>& sizes, int steps) {
  auto device = std::make_shared<FakeDevice>();
  const ir::Kernel k = compile_kernel(rule);
  std::vector<std::vector<float>> initial;
  for (size_t i = 0; i < sizes.size(); ++i) {
    initial.push_back(random_values(static_cast<size_t>(sizes[i]), seed_of(i, 0, 7)));
  }
  OracleGroup oracle(k, initial);
  std::vector<float*> caller_grads(sizes.size(), nullptr);
  {
    Optimizer optimizer(device_kernel(k, device), hypers_at(k, 1), 2);
    for (size_t i = 0; i < sizes.size(); ++i) {
      if (i % 2 == 0) {
        ASSERT_EQ(optimizer.add_tensor(sizes[i]), i);
        EXPECT_EQ(optimizer.read_param(i), std::vector<float>(initial[i].size(), 0.0f));
        optimizer.write_param(i, initial[i]);
      } else {
        float* param = device->upload(initial[i]);
        caller_grads[i] = device->upload(std::vector<float>(initial[i].size(), 0.0f));
        ASSERT_EQ(optimizer.add_tensor(param, caller_grads[i], sizes[i]), i);
        EXPECT_EQ(optimizer.param_data(i), param);
        EXPECT_EQ(optimizer.grad_data(i), caller_grads[i]);
      }
    }
    oracle.initialize(hypers_at(k, 1));
    for (int64_t t = 1; t <= steps; ++t) {
      const auto hypers = hypers_at(k, t);
      for (const auto& [name, value] : hypers) optimizer.set_hyper(name, value);
      std::vector<std::vector<float>> g;
      for (size_t i = 0; i < sizes.size(); ++i) {
        g.push_back(random_values(static_cast<size_t>(sizes[i]), seed_of(i, t)));
        if (i % 2 == 0) {
          optimizer.write_grad(i, g[i]);
        } else {
          device->copy_to_device(caller_grads[i], g[i].data(), g[i].size() * sizeof(float));
        }
        EXPECT_TRUE(same_bits(optimizer.read_grad(i), g[i]));
      }
      // A step moves no tensor data through the host: states start on the device (fills
      // and device copies) and the phases run there.
      const int uploads = device->uploads, downloads = device->downloads;
      optimizer.step();
      EXPECT_EQ(device->uploads, uploads) << rule;
      EXPECT_EQ(device->downloads, downloads) << rule;
      oracle.step(g, hypers, t);
      test::expect_matches_oracle(optimizer, oracle, true,
                                  rule + " on the fake device, step " + std::to_string(t));
      if (::testing::Test::HasFailure()) return;
    }
  }
  // The optimizer freed all it allocated, and only that: the caller's tensors remain.
  EXPECT_EQ(device->live_blocks(), sizes.size() / 2 * 2) << rule;
}

TEST(DeviceOptimizer, EveryBuiltinRuleMatchesTheInterpreter) {
  for (const rules::BuiltinRule& rule : rules::builtin_rules()) {
    run_against_oracle(rule.name, {1, 7, 256, 1000, 4099}, 3);
    if (HasFailure()) return;
  }
}

TEST(DeviceOptimizer, StatesStartOnTheDevice) {
  auto device = std::make_shared<FakeDevice>();
  // adagrad's sum starts from a hyper; adam's from 0; param- and grad-initialised states
  // are covered by the rules of the test above.
  Optimizer optimizer(device_kernel(compile_kernel("adagrad"), device), {}, 1);
  optimizer.add_tensor(10);
  optimizer.set_hyper("initial_accumulator_value", 0.1);
  const int fills = device->fills;
  optimizer.step();  // a zero gradient leaves the accumulator as it started: float(0.1)
  EXPECT_GT(device->fills, fills);
  EXPECT_EQ(optimizer.read_state(0, "sum"), std::vector<float>(10, 0.1f));
  EXPECT_EQ(optimizer.step_count(0), 1);
}

TEST(DeviceOptimizer, StatesWrittenBeforeTheFirstStepAreKept) {
  auto device = std::make_shared<FakeDevice>();
  const ir::Kernel k = compile_kernel("adam");
  Optimizer optimizer(device_kernel(k, device), {}, 1);
  const std::vector<float> p = random_values(100, 1);
  optimizer.add_tensor(100);
  optimizer.write_param(0, p);
  const std::vector<float> m = random_values(100, 3, 0, 1);
  optimizer.write_state(0, "exp_avg", m);
  EXPECT_EQ(optimizer.read_state(0, "exp_avg"), m);
  OracleGroup oracle(k, {p});
  oracle.buffer(0, "exp_avg") = m;
  std::vector<std::vector<bool>> filled(1, std::vector<bool>(k.buffers.size(), false));
  filled[0][static_cast<size_t>(k.buffer_index("exp_avg"))] = true;
  oracle.initialize(hypers_at(k, 1), filled);
  for (int64_t t = 1; t <= 2; ++t) {
    const std::vector<float> g = random_values(100, seed_of(0, t));
    optimizer.write_grad(0, g);
    for (const auto& [name, value] : hypers_at(k, t)) optimizer.set_hyper(name, value);
    optimizer.step();
    oracle.step({g}, hypers_at(k, t), t);
  }
  test::expect_matches_oracle(optimizer, oracle, true, "state written before step 1");
}

TEST(DeviceOptimizer, SpanAccessorsAreRefused) {
  auto device = std::make_shared<FakeDevice>();
  Optimizer optimizer(device_kernel(compile_kernel("adam"), device), {}, 1);
  optimizer.add_tensor(8);
  float* p = device->upload(std::vector<float>(8, 1.0f));
  float* g = device->upload(std::vector<float>(8, 0.0f));
  optimizer.add_tensor(p, g, 8);
  expect_user_error([&] { optimizer.param(0); },
                    {"param()", "the fake device", "not on the host", "read_param()"});
  expect_user_error([&] { optimizer.grad(0); }, {"grad()", "the fake device", "write_grad()"});
  expect_user_error([&] { optimizer.state(0, "exp_avg"); },
                    {"state()", "the fake device", "read_state()", "write_state()"});
  expect_user_error([&] { std::as_const(optimizer).state(0, "exp_avg"); }, {"read_state()"});
  // Name and index errors still come first.
  expect_user_error([&] { optimizer.state(0, "exp_avgs"); }, {"did you mean 'exp_avg'"});
  expect_user_error([&] { optimizer.param(5); }, {"out of range"});

  // A span refused before the first step does not count as a write: the state still starts
  // from its INIT.
  Optimizer adagrad(device_kernel(compile_kernel("adagrad"), device),
                    {{"initial_accumulator_value", 0.25}}, 1);
  adagrad.add_tensor(3);
  expect_user_error([&] { adagrad.state(0, "sum"); }, {"read_state()"});
  adagrad.step();  // a zero gradient leaves the accumulator as it started
  EXPECT_EQ(adagrad.read_state(0, "sum"), std::vector<float>(3, 0.25f));
}

TEST(DeviceOptimizer, CopyingAccessorsCheckTheirArguments) {
  auto device = std::make_shared<FakeDevice>();
  Optimizer optimizer(device_kernel(compile_kernel("sgd"), device), {}, 1);
  float* p = device->upload(std::vector<float>(4, 2.0f));
  float* g = device->upload(std::vector<float>(4, 3.0f));
  optimizer.add_tensor(p, g, 4);
  optimizer.add_tensor(6);
  EXPECT_EQ(optimizer.read_param(0), std::vector<float>(4, 2.0f));
  EXPECT_EQ(optimizer.read_grad(0), std::vector<float>(4, 3.0f));
  EXPECT_EQ(optimizer.read_grad(1), std::vector<float>(6, 0.0f));
  // The caller's parameter may be written; its gradient is only ever read.
  optimizer.write_param(0, std::vector<float>(4, 5.0f));
  float back[4] = {};
  device->copy_to_host(back, p, sizeof back);
  EXPECT_EQ(back[3], 5.0f);
  expect_user_error([&] { optimizer.write_grad(0, std::vector<float>(4)); },
                    {"write_grad", "caller owns"});
  expect_user_error([&] { optimizer.write_param(1, std::vector<float>(5)); },
                    {"write_param", "has 6 elements; got 5 values"});
  expect_user_error([&] { optimizer.write_grad(1, std::vector<float>(7)); },
                    {"has 6 elements; got 7 values"});
  expect_user_error([&] { optimizer.read_state(0, "momentum_buffer_typo"); }, {"unknown state"});
  expect_user_error([&] { optimizer.read_param(2); }, {"out of range"});
  // The optimizer-owned tensor's address is a device address.
  EXPECT_NE(device->host_floats(optimizer.param_data(1), 6), nullptr);
  const int synchronizations = device->synchronizations;
  optimizer.synchronize();
  EXPECT_EQ(device->synchronizations, synchronizations + 1);
}

TEST(DeviceOptimizer, SaveAndLoadWorkAcrossHostAndDevice) {
  const std::string dir = std::filesystem::temp_directory_path() /
                          ("fuseopt-device-test-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  for (const char* rule : {"nadam", "lamb", "adagrad"}) {
    SCOPED_TRACE(rule);
    auto device = std::make_shared<FakeDevice>();
    const ir::Kernel k = compile_kernel(rule);
    auto on_device = device_kernel(k, device);
    // One chunk per tensor: reductions combine exactly as the group kernel's.
    auto on_host = runtime::make_interpreter_kernel(k, 1 << 20);
    const std::vector<int64_t> sizes = {3, 1200, 500};
    auto make = [&](std::shared_ptr<const runtime::CompiledKernel> kernel) {
      Optimizer optimizer(std::move(kernel), {}, 2);
      for (size_t i = 0; i < sizes.size(); ++i) {
        optimizer.add_tensor(sizes[i]);
        optimizer.write_param(i, random_values(static_cast<size_t>(sizes[i]), seed_of(i, 0, 5)));
      }
      return optimizer;
    };
    auto steps = [&](Optimizer& optimizer, int64_t from, int64_t to) {
      for (int64_t t = from; t <= to; ++t) {
        for (size_t i = 0; i < sizes.size(); ++i) {
          optimizer.write_grad(i, random_values(static_cast<size_t>(sizes[i]), seed_of(i, t)));
        }
        optimizer.step();
      }
    };
    auto everything = [&](const Optimizer& optimizer) {
      std::vector<float> all;
      for (size_t i = 0; i < sizes.size(); ++i) {
        const std::vector<float> p = optimizer.read_param(i);
        all.insert(all.end(), p.begin(), p.end());
        for (const std::string& s : optimizer.state_names()) {
          const std::vector<float> v = optimizer.read_state(i, s);
          all.insert(all.end(), v.begin(), v.end());
        }
        for (const std::string& s : optimizer.scalar_names()) {
          all.push_back(static_cast<float>(optimizer.scalar(i, s)));
        }
        all.push_back(static_cast<float>(optimizer.step_count(i)));
      }
      return all;
    };

    Optimizer a = make(on_device);
    a.set_hyper("lr", 0.01);
    steps(a, 1, 3);
    const std::string path = dir + "/" + rule + ".state";
    a.save(path);
    std::vector<std::vector<float>> params;
    for (size_t i = 0; i < sizes.size(); ++i) params.push_back(a.read_param(i));
    steps(a, 4, 5);

    // Onto another device optimizer and a host one: both continue as `a` did.
    for (auto kernel : {std::shared_ptr<const runtime::CompiledKernel>(on_device), on_host}) {
      Optimizer b = make(kernel);
      b.load(path);
      EXPECT_EQ(b.hyper("lr"), 0.01);
      for (size_t i = 0; i < sizes.size(); ++i) b.write_param(i, params[i]);
      steps(b, 4, 5);
      EXPECT_TRUE(same_bits(everything(a), everything(b))) << kernel->backend;
    }

    // And from the host to the device.
    Optimizer host = make(on_host);
    steps(host, 1, 2);
    host.save(path);
    Optimizer c = make(on_device);
    c.load(path);
    for (size_t i = 0; i < sizes.size(); ++i) c.write_param(i, host.read_param(i));
    steps(host, 3, 4);
    steps(c, 3, 4);
    EXPECT_TRUE(same_bits(everything(host), everything(c)));
  }
  std::filesystem::remove_all(dir);
}

TEST(DeviceOptimizer, FreesWhatItAllocated) {
  auto device = std::make_shared<FakeDevice>();
  {
    Optimizer optimizer(device_kernel(compile_kernel("adam", {{"amsgrad", "true"}}), device), {},
                        1);
    optimizer.add_tensor(5);
    optimizer.add_tensor(500);
    // param, grad and three states: one arena block each, shared by both tensors.
    EXPECT_EQ(device->live_blocks(), 5u);
    Optimizer moved = std::move(optimizer);
    moved.step();
    EXPECT_EQ(device->live_blocks(), 5u);
  }
  EXPECT_EQ(device->live_blocks(), 0u);
  EXPECT_EQ(device->frees, device->allocations);
}

TEST(DeviceOptimizer, DisabledTensorsAreLeftOutOfTheLaunch) {
  auto device = std::make_shared<FakeDevice>();
  for (const char* rule : {"adam", "lamb"}) {
    auto kernel = device_kernel(compile_kernel(rule), device);
    const auto& phase = static_cast<const FakeGroupPhase&>(*kernel->group_phases[0]);
    const std::vector<int64_t> sizes = {40, 70, 30};
    // `group` has tensor 1 disabled; `others` has only tensors 0 and 2.
    Optimizer group(kernel, {}, 1), others(kernel, {}, 1);
    for (size_t i = 0; i < sizes.size(); ++i) {
      const std::vector<float> init = random_values(static_cast<size_t>(sizes[i]), seed_of(i, 0));
      group.add_tensor(sizes[i]);
      group.write_param(i, init);
      if (i != 1) others.write_param(others.add_tensor(sizes[i]), init);
    }
    group.set_enabled(1, false);
    EXPECT_FALSE(group.enabled(1));
    std::vector<std::vector<float>> before = {group.read_param(1)};
    for (const std::string& s : group.state_names()) before.push_back(group.read_state(1, s));
    for (int64_t t = 1; t <= 2; ++t) {
      for (size_t i = 0; i < sizes.size(); ++i) {
        const std::vector<float> g = random_values(static_cast<size_t>(sizes[i]), seed_of(i, t));
        group.write_grad(i, g);
        if (i != 1) others.write_grad(i == 0 ? 0 : 1, g);
      }
      group.step();
      others.step();
      EXPECT_EQ(phase.tensor_counts.back(), 2u) << rule;
    }
    EXPECT_EQ(group.step_count(1), 0);
    EXPECT_EQ(group.step_count(2), 2);
    EXPECT_TRUE(same_bits(group.read_param(1), before[0])) << rule;
    for (size_t s = 0; s < group.state_names().size(); ++s) {
      EXPECT_TRUE(same_bits(group.read_state(1, group.state_names()[s]), before[s + 1])) << rule;
    }
    for (size_t i : {size_t{0}, size_t{2}}) {
      EXPECT_TRUE(same_bits(group.read_param(i), others.read_param(i == 0 ? 0 : 1))) << rule;
    }
    // Enabling changes the group: a new version, all three tensors in the launch.
    const uint64_t version = phase.versions.back();
    group.set_enabled(1, true);
    group.step();
    EXPECT_EQ(phase.tensor_counts.back(), 3u);
    EXPECT_NE(phase.versions.back(), version);
    EXPECT_EQ(group.step_count(1), 1);
    group.set_step_count(1, 10);
    EXPECT_EQ(group.step_count(1), 10);
  }
}

TEST(DeviceOptimizer, KernelsMustSayWhereTheirMemoryIs) {
  auto device = std::make_shared<FakeDevice>();
  const ir::Kernel k = compile_kernel("adam");
  auto no_device = device_kernel(k, device);
  no_device->device = nullptr;
  expect_user_error([&] { Optimizer optimizer(no_device); }, {"device memory", "DeviceMemory"});
  auto chunked = std::make_shared<runtime::CompiledKernel>(*runtime::make_interpreter_kernel(k));
  chunked->device_memory = true;
  chunked->device = device;
  expect_user_error([&] { Optimizer optimizer(chunked); }, {"device memory", "no group phases"});
  // A host kernel's synchronize() has nothing to wait for.
  Optimizer host(runtime::make_interpreter_kernel(k), {}, 1);
  host.synchronize();
}

}  // namespace
}  // namespace fuseopt

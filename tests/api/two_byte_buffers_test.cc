// Buffers stored in two bytes (bf16, f16) through the runtime: the Optimizer's memory layout,
// conversions, caller-owned two-byte memory, coalescing, state files and master weights,
// checked bit for bit against the reference interpreter, which holds the same values in
// float memory (ir/interpreter.h).
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "api/fuseopt.h"
#include "frontend/rule.h"
#include "ir/interpreter.h"
#include "support/error.h"
#include "support/low_precision.h"
#include "tests/api/random_values.h"

namespace fuseopt {
namespace {

using api_testing::random_values;

std::vector<uint16_t> to_bits(const std::vector<float>& values, StorageType type) {
  std::vector<uint16_t> bits;
  for (float v : values) bits.push_back(static_cast<uint16_t>(store_bits(v, type)));
  return bits;
}

std::vector<float> rounded(std::vector<float> values, StorageType type) {
  for (float& v : values) v = round_to_storage(v, type);
  return values;
}

// The reference: the interpreter stepping the kernel the runtime compiled, with every buffer
// in float memory holding values of its storage type.
class Reference {
 public:
  Reference(const std::string& rule, const std::map<std::string, std::string>& options,
            const std::map<std::string, std::string>& storage,
            const std::map<std::string, double>& hyper_values) {
    const frontend::Rule r = frontend::load_rule(rule);
    kernel_ = r.compile(r.resolve_options(options));
    for (const auto& [buffer, spelling] : storage) {
      const bool stochastic = spelling.find("stochastic") != std::string::npos;
      const StorageType type = *parse_storage_type(spelling.substr(0, spelling.find(' ')));
      ir::set_buffer_storage(kernel_, buffer, type, stochastic);
    }
    for (const auto& h : kernel_.hypers) {
      hypers_.push_back(hyper_values.count(h.name) ? hyper_values.at(h.name) : h.default_value);
    }
    interpreter_ = std::make_unique<ir::Interpreter>(kernel_);
  }

  size_t add(const std::vector<float>& param) {
    auto& b = buffers_.emplace_back(kernel_.buffers.size(), std::vector<float>(param.size()));
    b[0] = param;
    return buffers_.size() - 1;
  }
  std::vector<float>& buffer(size_t tensor, const std::string& name) {
    return buffers_[tensor][static_cast<size_t>(kernel_.buffer_index(name))];
  }

  void step(int64_t t) {
    if (tensors_.empty()) {
      for (auto& b : buffers_) {
        ir::TensorArgs& args = tensors_.emplace_back();
        args.numel = static_cast<int64_t>(b[0].size());
        for (auto& v : b) args.buffers.push_back(v.data());
      }
      for (auto& args : tensors_) interpreter_->initialize(args, hypers_);
    }
    ASSERT_TRUE(interpreter_->step(tensors_, hypers_, t));
  }

  const ir::Kernel& kernel() const { return kernel_; }

 private:
  ir::Kernel kernel_;
  std::vector<double> hypers_;
  std::unique_ptr<ir::Interpreter> interpreter_;
  std::vector<std::vector<std::vector<float>>> buffers_;
  std::vector<ir::TensorArgs> tensors_;
};

CompileOptions interp_options(const std::map<std::string, std::string>& storage,
                              int64_t chunk_elements = 1000) {
  CompileOptions options;
  options.backend = Backend::kInterpreter;
  options.storage = storage;
  options.cpu_schedule.chunk_elements = chunk_elements;
  return options;
}

TEST(TwoByteBuffers, TheOptimizerKeepsTwoByteElementsAndConverts) {
  Optimizer optimizer = make_optimizer(
      "adam", interp_options({{"param", "bf16"}, {"grad", "f16"}, {"exp_avg", "bf16"}}));
  EXPECT_EQ(optimizer.storage("param"), StorageType::kBF16);
  EXPECT_EQ(optimizer.storage("grad"), StorageType::kF16);
  EXPECT_EQ(optimizer.storage("exp_avg"), StorageType::kBF16);
  EXPECT_EQ(optimizer.storage("exp_avg_sq"), StorageType::kF32);
  EXPECT_THROW(optimizer.storage("nope"), UserError);

  optimizer.add_tensor(100);
  optimizer.add_tensor(37);
  // Owned memory of one buffer is adjacent from tensor to tensor, in two-byte elements.
  EXPECT_EQ(static_cast<std::byte*>(optimizer.data(1, "param")),
            static_cast<std::byte*>(optimizer.data(0, "param")) + 100 * 2);
  EXPECT_EQ(static_cast<std::byte*>(optimizer.data(1, "exp_avg_sq")),
            static_cast<std::byte*>(optimizer.data(0, "exp_avg_sq")) + 100 * 4);

  // Writes round to nearest even, reads widen exactly; the memory holds the type's bits.
  const std::vector<float> p = random_values(100, 1);
  optimizer.write_param(0, p);
  EXPECT_EQ(optimizer.read_param(0), rounded(p, StorageType::kBF16));
  const auto* bits = static_cast<const uint16_t*>(optimizer.data(0, "param"));
  EXPECT_EQ(std::vector<uint16_t>(bits, bits + 100), to_bits(p, StorageType::kBF16));
  const std::vector<float> g = random_values(100, 2);
  optimizer.write_grad(0, g);
  EXPECT_EQ(optimizer.read_grad(0), rounded(g, StorageType::kF16));

  // The float spans and float pointers are f32 only: a clear error, never reinterpreted bits.
  EXPECT_THROW(optimizer.param(0), UserError);
  EXPECT_THROW(optimizer.grad(0), UserError);
  EXPECT_THROW(optimizer.state(0, "exp_avg"), UserError);
  EXPECT_THROW(optimizer.param_data(0), UserError);
  EXPECT_EQ(optimizer.state(0, "exp_avg_sq").size(), 100u);
  float floats[4] = {};
  EXPECT_THROW(optimizer.add_tensor(floats, floats, 4), UserError);
  try {
    optimizer.add_tensor(floats, floats, 4);
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("bf16"), std::string::npos) << e.what();
  }
}

TEST(TwoByteBuffers, CallerOwnedMemoryIsUsedInPlaceAndChecked) {
  Optimizer optimizer =
      make_optimizer("sgd", interp_options({{"param", "bf16"}, {"grad", "bf16"}}), {{"lr", 0.5}});
  const std::vector<float> p = random_values(64, 3), g = random_values(64, 4);
  std::vector<uint16_t> param = to_bits(p, StorageType::kBF16);
  const std::vector<uint16_t> grad = to_bits(g, StorageType::kBF16);
  optimizer.add_tensor_raw(param.data(), grad.data(), 64);
  EXPECT_EQ(optimizer.data(0, "param"), param.data());
  ASSERT_TRUE(optimizer.step());
  // sgd: p - lr * g, computed in f32 from the widened values, rounded to nearest once.
  for (size_t i = 0; i < 64; ++i) {
    const float want = load_bits(grad[i], StorageType::kBF16);
    const float from = round_to_storage(p[i], StorageType::kBF16);
    EXPECT_EQ(param[i], store_bits(from - 0.5f * want, StorageType::kBF16)) << i;
  }
  // Two-byte elements need two-byte alignment; null memory is refused.
  auto* odd = reinterpret_cast<uint16_t*>(reinterpret_cast<std::byte*>(param.data()) + 1);
  EXPECT_THROW(optimizer.add_tensor_raw(odd, grad.data(), 4), UserError);
  EXPECT_THROW(optimizer.add_tensor_raw(nullptr, grad.data(), 4), UserError);
  std::vector<uint16_t> other(64);
  optimizer.set_buffers_raw(0, other.data(), grad.data());
  EXPECT_EQ(optimizer.data(0, "param"), other.data());
}

struct Case {
  std::string rule;
  std::map<std::string, std::string> options;
  std::map<std::string, std::string> storage;
  std::map<std::string, double> hypers;
};

// Every combination runs several steps over tensors of odd sizes (chunks of 1000, so the
// large one is cut) on 1 and 2 threads; the runtime's memory must hold exactly the
// interpreter's values, in every buffer.
TEST(TwoByteBuffers, TheChunkedRuntimeGivesTheInterpretersBits) {
  const std::vector<Case> cases = {
      {"adam", {}, {{"param", "bf16"}, {"grad", "bf16"}}, {}},
      {"adam", {}, {{"param", "f16"}, {"exp_avg", "bf16"}, {"exp_avg_sq", "f16"}}, {}},
      {"adamw", {{"master_weights", "true"}}, {{"param", "bf16"}, {"grad", "bf16"}}, {}},
      {"lion",
       {},
       {{"param", "bf16 stochastic"}, {"exp_avg", "bf16 stochastic"}},
       {{"rounding_seed", 77}}},
      {"lamb", {}, {{"param", "bf16"}, {"exp_avg", "bf16"}}, {}},
      {"sgd",
       {},
       {{"param", "f16 stochastic"}, {"momentum_buffer", "bf16"}},
       {{"momentum", 0.9}, {"rounding_seed", 5}}},
  };
  const std::vector<size_t> sizes = {2500, 7, 1000, 33};
  for (const Case& c : cases) {
    for (int threads : {1, 2}) {
      SCOPED_TRACE(c.rule + " threads " + std::to_string(threads));
      CompileOptions options = interp_options(c.storage);
      options.options = c.options;
      Optimizer optimizer = make_optimizer(c.rule, options, c.hypers, threads);
      Reference reference(c.rule, c.options, c.storage, c.hypers);
      const StorageType param_type = optimizer.storage("param");
      for (size_t i = 0; i < sizes.size(); ++i) {
        const std::vector<float> p = rounded(random_values(sizes[i], 10 + i), param_type);
        optimizer.add_tensor(static_cast<int64_t>(sizes[i]));
        optimizer.write_param(i, p);
        reference.add(p);
      }
      for (int t = 1; t <= 4; ++t) {
        for (size_t i = 0; i < sizes.size(); ++i) {
          const std::vector<float> g =
              rounded(random_values(sizes[i], 100 * t + i, 0.1f), optimizer.storage("grad"));
          optimizer.write_grad(i, g);
          reference.buffer(i, "grad") = g;
        }
        ASSERT_TRUE(optimizer.step());
        reference.step(t);
        for (size_t i = 0; i < sizes.size(); ++i) {
          ASSERT_EQ(optimizer.read_param(i), reference.buffer(i, "param")) << "step " << t;
          for (const std::string& state : optimizer.state_names()) {
            ASSERT_EQ(optimizer.read_state(i, state), reference.buffer(i, state))
                << state << " step " << t;
          }
        }
      }
    }
  }
}

TEST(TwoByteBuffers, MasterWeightsAccumulateWhatTheParameterCannotHold) {
  // AdamW's master_weights option on a bf16 parameter: the f32 master starts as the widened
  // parameter, takes every update, and the parameter is always the master rounded; without
  // the master, updates far below bf16's spacing at 1.0 (2^-7) never move the parameter.
  const std::map<std::string, double> hypers = {{"lr", 1e-4}, {"weight_decay", 0.0}};
  CompileOptions with = interp_options({{"param", "bf16"}});
  with.options = {{"master_weights", "true"}};
  Optimizer master = make_optimizer("adamw", with, hypers);
  Optimizer plain = make_optimizer("adamw", interp_options({{"param", "bf16"}}), hypers);
  for (Optimizer* o : {&master, &plain}) {
    o->add_tensor(256);
    o->write_param(0, std::vector<float>(256, 1.0f));
  }
  EXPECT_EQ(plain.state_names().size(), 2u);
  for (int t = 1; t <= 30; ++t) {
    const std::vector<float> g(256, 1.0f);  // Adam's update is about -lr each step
    master.write_grad(0, g);
    plain.write_grad(0, g);
    ASSERT_TRUE(master.step());
    ASSERT_TRUE(plain.step());
    const std::vector<float> m = master.read_state(0, "master");
    EXPECT_EQ(master.read_param(0), rounded(m, StorageType::kBF16)) << t;
  }
  const float accumulated = master.read_state(0, "master")[0];
  EXPECT_NEAR(accumulated, 1.0f - 30 * 1e-4f, 1e-5f);
  EXPECT_EQ(master.read_param(0)[0], round_to_storage(accumulated, StorageType::kBF16));
  EXPECT_EQ(plain.read_param(0)[0], 1.0f);  // every update rounded away
}

TEST(TwoByteBuffers, StateFilesKeepTwoByteStatesAndRefuseOtherStorage) {
  const std::filesystem::path path =
      std::filesystem::temp_directory_path() / ("fuseopt_two_byte_" + std::to_string(::getpid()));
  const std::map<std::string, std::string> storage = {{"param", "bf16"}, {"exp_avg", "bf16"}};
  Optimizer a = make_optimizer("adam", interp_options(storage));
  a.add_tensor(3000);
  a.write_param(0, random_values(3000, 5));
  a.write_grad(0, random_values(3000, 6));
  ASSERT_TRUE(a.step());
  a.save(path.string());
  Optimizer b = make_optimizer("adam", interp_options(storage));
  b.add_tensor(3000);
  b.write_param(0, a.read_param(0));
  b.load(path.string());
  for (const std::string& s : a.state_names()) EXPECT_EQ(a.read_state(0, s), b.read_state(0, s));
  b.write_grad(0, a.read_grad(0));
  ASSERT_TRUE(a.step());
  ASSERT_TRUE(b.step());
  EXPECT_EQ(a.read_param(0), b.read_param(0));
  EXPECT_EQ(a.read_state(0, "exp_avg"), b.read_state(0, "exp_avg"));
  // The same rule with other storage is another kernel: refused, nothing changed.
  Optimizer f32 = make_optimizer("adam", interp_options({}));
  f32.add_tensor(3000);
  EXPECT_THROW(f32.load(path.string()), UserError);
  EXPECT_EQ(f32.step_count(0), 0);
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace fuseopt

// The cpu backend on bf16 and f16 buffers (two-byte storage, round to nearest even and
// stochastic rounding) through fuseopt::Optimizer, against the interp backend: the same
// group, the same chunks, the same steps, and the buffers' raw bytes compared.
//
// Element code is exact on both (strict_float, the C library's exp/log/pow), loads widen
// exactly and stores round with the same integer arithmetic, so every byte must agree; for
// rules with reductions (lamb) the cpu backend's sums add 32 interleaved partials
// (codegen/halide/README.md), whose last bits reach the elements: there values are compared
// with a tolerance (expect_same_buffers), and two-byte values may differ on 1% at most.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "api/fuseopt.h"
#include "codegen/halide/cpu_codegen.h"
#include "frontend/rule.h"
#include "support/low_precision.h"

namespace fuseopt {
namespace {

using Storage = std::map<std::string, std::string>;

std::vector<float> random_values(size_t n, uint32_t seed, float scale) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(-scale, scale);
  std::vector<float> v(n);
  for (float& x : v) x = dist(gen);
  return v;
}

// The chunk is smaller than the tensors, and neither the chunk nor the sizes are multiples
// of the vector width: several chunks per tensor (first_index > 0), and vector tails.
constexpr int64_t kChunk = 1000;
const std::vector<int64_t> kSizes = {2503, 7, 1001, 33};

// Every state of `rule` stored as `type` ("bf16", "f16 stochastic", ...).
Storage all_states(const std::string& rule, const std::string& type) {
  const frontend::Rule r = frontend::load_rule(rule);
  const ir::Kernel kernel = r.compile(r.resolve_options());
  Storage storage;
  for (const ir::BufferDecl& buffer : kernel.buffers) {
    if (buffer.name != "param" && buffer.name != "grad") storage[buffer.name] = type;
  }
  return storage;
}

Storage merged(Storage a, const Storage& b) {
  a.insert(b.begin(), b.end());
  return a;
}

struct Case {
  std::string rule;
  Storage storage;
  std::map<std::string, double> hypers;
  std::map<std::string, std::string> options;
};

std::string describe(const Case& c) {
  std::string text = c.rule + " {";
  for (const auto& [buffer, type] : c.storage) text += " " + buffer + "=" + type;
  for (const auto& [name, value] : c.options) text += " " + name + "=" + value;
  return text + " }";
}

CompileOptions compile_options(const Case& c, Backend backend) {
  CompileOptions options;
  options.backend = backend;
  options.storage = c.storage;
  options.options = c.options;
  options.tuned = false;
  options.cpu_schedule.chunk_elements = kChunk;
  return options;
}

// A group of kSizes tensors with deterministic parameters; `grads(step)` gives the
// gradients of each step.
Optimizer make_group(const Case& c, Backend backend, int threads,
                     const std::map<std::string, double>& extra_hypers = {},
                     const std::string& cpu_target = "host") {
  CompileOptions options = compile_options(c, backend);
  options.cpu_target = cpu_target;
  std::map<std::string, double> hypers = c.hypers;
  for (const auto& [name, value] : extra_hypers) hypers[name] = value;
  // Only kernels with a stochastic store have the seed hyper.
  bool stochastic = false;
  for (const auto& [buffer, type] : c.storage) {
    stochastic = stochastic || type.find("stochastic") != std::string::npos;
  }
  if (!stochastic) hypers.erase("rounding_seed");
  Optimizer optimizer = make_optimizer(c.rule, options, hypers, threads);
  for (size_t i = 0; i < kSizes.size(); ++i) {
    optimizer.add_tensor(kSizes[i]);
    optimizer.write_param(
        i, random_values(static_cast<size_t>(kSizes[i]), static_cast<uint32_t>(10 + i), 1.0f));
  }
  return optimizer;
}

void write_grads(Optimizer& optimizer, int step) {
  for (size_t i = 0; i < kSizes.size(); ++i) {
    // Gradients of varied magnitude, so updates straddle the storage types' spacing.
    const float scale = step % 2 == 0 ? 1e-1f : 3.0f;
    optimizer.write_grad(i, random_values(static_cast<size_t>(kSizes[i]),
                                          static_cast<uint32_t>(1000 * step + i), scale));
  }
}

std::vector<std::string> buffer_names(const Optimizer& optimizer) {
  std::vector<std::string> names = {"param", "grad"};
  for (const std::string& s : optimizer.state_names()) names.push_back(s);
  return names;
}

// The raw bytes of one buffer of one tensor, as the kernel stores them.
std::vector<uint8_t> raw_bytes(Optimizer& optimizer, size_t tensor, const std::string& buffer) {
  const size_t bytes = static_cast<size_t>(optimizer.numel(tensor)) *
                       static_cast<size_t>(storage_type_bytes(optimizer.storage(buffer)));
  const auto* data = static_cast<const uint8_t*>(optimizer.data(tensor, buffer));
  return {data, data + bytes};
}

// Element `i` of a buffer, as storage bits (u16 for two-byte types, u32 for f32).
uint32_t element_bits(const std::vector<uint8_t>& raw, StorageType type, size_t i) {
  if (type == StorageType::kF32) {
    uint32_t bits;
    std::memcpy(&bits, raw.data() + 4 * i, 4);
    return bits;
  }
  uint16_t bits;
  std::memcpy(&bits, raw.data() + 2 * i, 2);
  return bits;
}

// The distance between two values of `type` in units in the last place: their bits as
// ordered integers (negative values below positive ones, -0 and +0 apart by one step at
// most: irrelevant here).
int64_t ulps_apart(uint32_t u, uint32_t v, StorageType type) {
  const uint32_t sign = type == StorageType::kF32 ? 0x80000000u : 0x8000u;
  auto ordered = [&](uint32_t bits) {
    const auto magnitude = static_cast<int64_t>(bits & ~sign);
    return (bits & sign) != 0 ? -magnitude : magnitude;
  };
  const int64_t d = ordered(u) - ordered(v);
  return d < 0 ? -d : d;
}

// Every buffer of every tensor of `a` holds the same bytes as `b`'s; at the first
// difference, says where. With `tolerant` (kernels with reductions), a two-byte value may
// be one unit in the last place of its type off, and any value 1e-5 off relative to the
// larger of its magnitude and 1 (tests/api/api_test.cc's bound for f32 rules with
// reductions: values of order 1 that cancel to near 0), and the differing two-byte
// elements are counted.
void expect_same_buffers(Optimizer& a, Optimizer& b, const std::string& where, bool tolerant,
                         int64_t* differing = nullptr) {
  for (const std::string& buffer : buffer_names(a)) {
    const StorageType type = a.storage(buffer);
    ASSERT_EQ(type, b.storage(buffer)) << where << " " << buffer;
    for (size_t t = 0; t < a.tensor_count(); ++t) {
      const std::vector<uint8_t> x = raw_bytes(a, t, buffer);
      const std::vector<uint8_t> y = raw_bytes(b, t, buffer);
      ASSERT_EQ(x.size(), y.size());
      if (x == y) continue;
      for (size_t i = 0; i < static_cast<size_t>(a.numel(t)); ++i) {
        const uint32_t u = element_bits(x, type, i);
        const uint32_t v = element_bits(y, type, i);
        if (u == v) continue;
        const float p = load_bits(u, type), q = load_bits(v, type);
        const bool close =
            tolerant && ((type != StorageType::kF32 && ulps_apart(u, v, type) <= 1) ||
                         std::fabs(p - q) <= 1e-5f * std::max({std::fabs(p), std::fabs(q), 1.0f}));
        ASSERT_TRUE(close) << where << ": " << buffer << " (" << storage_type_name(type)
                           << ") of tensor " << t << " element " << i << ": bits " << std::hex << u
                           << " vs " << v << std::dec << " (" << load_bits(u, type) << " vs "
                           << load_bits(v, type) << ")";
        if (differing != nullptr && type != StorageType::kF32) ++*differing;
      }
    }
  }
}

bool has_reductions(const runtime::CompiledKernel& kernel) {
  for (const ir::Phase& phase : kernel.ir.phases) {
    if (!phase.reductions.empty()) return true;
  }
  return false;
}

// The cpu backend steps `c` exactly as the interp backend does, at 1 and 2 threads.
void expect_cpu_matches_interp(const Case& c, int steps = 4) {
  for (int threads : {1, 2}) {
    const std::string where = describe(c) + " at " + std::to_string(threads) + " threads";
    Optimizer cpu = make_group(c, Backend::kCpu, threads);
    Optimizer interp = make_group(c, Backend::kInterpreter, threads);
    ASSERT_EQ(cpu.kernel().backend, "cpu");
    ASSERT_EQ(interp.kernel().backend, "interp");
    for (const auto& [buffer, type] : c.storage) {
      const std::string base = type.substr(0, type.find(' '));
      ASSERT_EQ(storage_type_name(cpu.storage(buffer)), base) << where << " " << buffer;
    }
    const bool tolerant = has_reductions(cpu.kernel());
    int64_t differing = 0;
    int64_t elements = 0;
    for (int step = 1; step <= steps; ++step) {
      write_grads(cpu, step);
      write_grads(interp, step);
      ASSERT_TRUE(cpu.step());
      ASSERT_TRUE(interp.step());
      expect_same_buffers(cpu, interp, where + ", step " + std::to_string(step), tolerant,
                          &differing);
      if (::testing::Test::HasFatalFailure()) return;
      for (int64_t n : kSizes) elements += n * static_cast<int64_t>(buffer_names(cpu).size());
    }
    // A sum's last bits move few two-byte values: a systematic error would move most.
    EXPECT_LE(differing, elements / 100) << where;
  }
}

const std::map<std::string, double> kSmallLr = {{"lr", 1e-3}};

TEST(CpuStorageKernel, AdamEveryStorageCombination) {
  const std::vector<Storage> combos = {
      {{"param", "bf16"}},
      {{"param", "f16"}},
      all_states("adam", "bf16"),
      {{"grad", "bf16"}},
      {{"param", "bf16 stochastic"}},
      all_states("adam", "bf16 stochastic"),
      merged({{"param", "bf16"}, {"grad", "bf16"}}, all_states("adam", "bf16")),
      merged({{"param", "f16 stochastic"}, {"grad", "f16"}}, all_states("adam", "f16 stochastic")),
  };
  for (const Storage& storage : combos) {
    expect_cpu_matches_interp({"adam", storage, {{"lr", 1e-2}, {"rounding_seed", 7}}, {}});
    if (HasFatalFailure()) return;
  }
}

TEST(CpuStorageKernel, AdamAmsgradWithBf16States) {
  expect_cpu_matches_interp({"adam", all_states("adam", "bf16"), kSmallLr, {{"amsgrad", "true"}}});
}

TEST(CpuStorageKernel, OtherRules) {
  const std::vector<Case> cases = {
      {"adamw", {{"param", "bf16"}, {"grad", "bf16"}}, kSmallLr, {}},
      {"adamw", all_states("adamw", "bf16 stochastic"), {{"rounding_seed", 3}}, {}},
      // An f32 master copy of a bf16 parameter (docs/mixed-precision.md).
      {"adamw",
       {{"param", "bf16 stochastic"}, {"grad", "bf16"}},
       {{"rounding_seed", 4}},
       {{"master_weights", "true"}}},
      {"lion", {{"param", "bf16 stochastic"}}, {{"lr", 1e-3}, {"rounding_seed", 11}}, {}},
      {"lion", all_states("lion", "f16"), kSmallLr, {}},
      {"sgd",
       merged({{"param", "bf16 stochastic"}}, all_states("sgd", "f16")),
       {{"lr", 1e-3}, {"momentum", 0.9}, {"rounding_seed", 5}},
       {}},
      {"sgd",
       {{"grad", "bf16"}, {"momentum_buffer", "bf16 stochastic"}},
       {{"momentum", 0.9}, {"dampening", 0.1}},
       {{"nesterov", "true"}}},
      {"adagrad", all_states("adagrad", "f16"), {}, {}},
      {"adagrad", {{"param", "bf16"}}, {}, {}},
  };
  for (const Case& c : cases) {
    expect_cpu_matches_interp(c);
    if (HasFatalFailure()) return;
  }
}

// lamb reduces over param and the new moments in its first phase: its sums read two-byte
// buffers.
TEST(CpuStorageKernel, LambReductionsOverNarrowBuffers) {
  const std::vector<Case> cases = {
      {"lamb", {}, {}, {}},
      {"lamb", {{"param", "bf16"}}, {}, {}},
      {"lamb", merged({{"grad", "bf16"}}, all_states("lamb", "bf16")), {}, {}},
      {"lamb", {{"param", "bf16 stochastic"}, {"grad", "f16"}}, {{"rounding_seed", 9}}, {}},
  };
  for (const Case& c : cases) {
    expect_cpu_matches_interp(c);
    if (HasFatalFailure()) return;
  }
}

// The same seed gives the same bits; another rounding_seed other bits (stochastic rounding
// of tiny updates moves a fraction of the parameters, and which ones follows the seed).
TEST(CpuStorageKernel, RoundingSeedDecidesTheBits) {
  const Case c = {
      "adam", merged({{"param", "bf16 stochastic"}}, all_states("adam", "bf16")), kSmallLr, {}};
  auto run = [&](double seed) {
    Optimizer optimizer = make_group(c, Backend::kCpu, 2, {{"rounding_seed", seed}});
    for (int step = 1; step <= 3; ++step) {
      write_grads(optimizer, step);
      optimizer.step();
    }
    std::vector<std::vector<uint8_t>> params;
    for (size_t t = 0; t < optimizer.tensor_count(); ++t) {
      params.push_back(raw_bytes(optimizer, t, "param"));
    }
    return params;
  };
  const auto first = run(42);
  const auto again = run(42);
  const auto other = run(43);
  EXPECT_EQ(first, again);
  for (size_t t = 0; t < first.size(); ++t) {
    if (first[t].size() < 64) continue;  // a 7-element tensor may well agree
    EXPECT_NE(first[t], other[t]) << "tensor " << t;
  }
}

// A kernel compiled for the x86-64-v2 level (SSE4.1 vectors) gives the host's bits.
TEST(CpuStorageKernel, X86_64_V2TargetGivesTheHostsBits) {
  const Case c = {
      "adam",
      merged({{"param", "bf16 stochastic"}, {"grad", "bf16"}}, all_states("adam", "f16")),
      {{"lr", 1e-2}, {"rounding_seed", 1}},
      {}};
  Optimizer host = make_group(c, Backend::kCpu, 2);
  Optimizer v2 = make_group(c, Backend::kCpu, 2, {}, "x86-64-v2");
  for (int step = 1; step <= 3; ++step) {
    write_grads(host, step);
    write_grads(v2, step);
    host.step();
    v2.step();
    expect_same_buffers(host, v2, "x86-64-v2 vs host, step " + std::to_string(step), false);
    if (HasFatalFailure()) return;
  }
}

// The stores of bf16 Adam stay vectorized: the lowered statement loads and stores the
// two-byte buffers as vectors of the schedule's width.
TEST(CpuStorageKernel, Bf16AdamStoresAreVectorized) {
  const frontend::Rule rule = frontend::load_rule("adam");
  ir::Kernel kernel = rule.compile(rule.resolve_options());
  ir::set_buffer_storage(kernel, "param", StorageType::kBF16, true);
  ir::set_buffer_storage(kernel, "grad", StorageType::kBF16, false);
  codegen::CpuSchedule schedule = codegen::default_cpu_schedule();
  schedule.vector_width = 8;
  schedule.unroll = 1;
  const std::string text = codegen::describe_halide_pipelines(kernel, schedule, "host");
  const size_t lowered = text.find("### lowered statement");
  ASSERT_NE(lowered, std::string::npos);
  const std::string stmt = text.substr(lowered);
  // A store of 8 bf16 lanes into param (the first output), and vector loads of grad.
  bool vector_store = false;
  size_t start = 0;
  while (start < stmt.size()) {
    size_t end = stmt.find('\n', start);
    if (end == std::string::npos) end = stmt.size();
    const std::string line = stmt.substr(start, end - start);
    if (line.find("stores.0[ramp(") != std::string::npos &&
        line.find("uint16x8(") != std::string::npos) {
      vector_store = true;
    }
    start = end + 1;
  }
  EXPECT_TRUE(vector_store) << stmt;
  EXPECT_NE(stmt.find("in_grad[ramp("), std::string::npos) << stmt;
}

}  // namespace
}  // namespace fuseopt

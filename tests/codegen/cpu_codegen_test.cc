// The Halide CPU backend end to end: IR -> shared object -> loaded here -> compared with the
// interpreter, in place, on buffers 4 bytes off alignment, for sizes below, at, above and
// between the vector width, the unrolled width, the reduction lanes and the chunk.
//
// Precision contract checked here (codegen/halide/README.md):
// - +, -, *, /, sqrt, rsqrt, neg, abs, sign, min, max, comparisons, masks and selects give
//   the interpreter's bits (strict_float: no FMA, no reassociation). NaNs only have to be
//   NaN: x86 returns the payload of the first NaN operand, and compilers may commute.
// - exp, log and pow call the C library's expf, logf and powf, as the interpreter does
//   (docs/language.md), so they give its bits too.
// - A Sum reduction adds the chunk's elements in kReductionLanes interleaved partial sums,
//   in f64: |compiled - interpreted| <= 2 (n - 1) 2^-53 sum |x_i| (each is a reordering of
//   an f64 sum of n terms). Max is exact.
#include "codegen/halide/cpu_codegen.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <random>
#include <thread>

#include "codegen/halide/cpu_schedule.h"
#include "frontend/rule.h"
#include "ir/interpreter.h"
#include "ir/passes/pipeline.h"
#include "support/error.h"
#include "tests/codegen/test_loader.h"

namespace fuseopt::codegen {
namespace {

using testing::LoadedObject;
using testing::MisalignedBuffer;

const int64_t kSizes[] = {1, 3, 7, 8, 15, 16, 17, 31, 33, 1000003};

// ---- IR shorthands ----
ir::Expr num(double v) { return ir::make_const(v); }
ir::Expr var(const std::string& name) { return ir::make_var(name, ir::Type::kF64); }
ir::Expr load(const std::string& buffer) { return ir::make_load(buffer); }
ir::Expr f32(ir::Expr e) { return ir::make_cast(ir::Type::kF32, std::move(e)); }
ir::Expr un(ir::UnaryOp op, ir::Expr a) { return ir::make_unary(op, std::move(a)); }
ir::Expr bin(ir::BinaryOp op, ir::Expr a, ir::Expr b) {
  return ir::make_binary(op, std::move(a), std::move(b));
}
ir::Expr as_number(ir::Expr mask) {
  return ir::make_select(std::move(mask), f32(num(1)), f32(num(0)));
}

ir::BufferDecl state(const std::string& name) {
  return ir::BufferDecl{name, ir::BufferRole::kState, ir::StorageType::kF32, {}};
}

ir::Kernel base_kernel(const std::string& rule, std::vector<ir::HyperDecl> hypers) {
  ir::Kernel k;
  k.rule = rule;
  k.hypers = std::move(hypers);
  k.buffers = {ir::BufferDecl{"param", ir::BufferRole::kParam},
               ir::BufferDecl{"grad", ir::BufferRole::kGrad}};
  k.phases.resize(1);
  return k;
}

// Stores each value to a state of its own, so every op's result is checked on its own.
void add_stores(ir::Kernel& k, const std::vector<std::pair<std::string, ir::Expr>>& values) {
  for (const auto& [name, value] : values) {
    k.buffers.push_back(state(name));
    k.phases[0].stores.push_back({name, value});
  }
}

// Every exact op on (x, y) = (param, grad), with scalar arguments, constants and a scalar
// condition. param is stored too, first, so a value that re-read param after its store
// would show.
ir::Kernel exact_ops_kernel() {
  using ir::BinaryOp;
  using ir::UnaryOp;
  ir::Kernel k = base_kernel("exact_ops", {{"lr", 0.25}, {"scale", -3.0}});
  ir::Expr x = load("param");
  ir::Expr y = load("grad");
  k.phases[0].stores.push_back(
      {"param", bin(BinaryOp::kSub, x, bin(BinaryOp::kMul, f32(var("lr")), y))});
  add_stores(
      k,
      {
          {"add", bin(BinaryOp::kAdd, x, y)},
          {"sub", bin(BinaryOp::kSub, x, y)},
          {"mul", bin(BinaryOp::kMul, x, y)},
          {"div", bin(BinaryOp::kDiv, x, y)},
          {"min", bin(BinaryOp::kMin, x, y)},
          {"max", bin(BinaryOp::kMax, x, y)},
          {"neg", un(UnaryOp::kNeg, x)},
          {"sqrt", un(UnaryOp::kSqrt, x)},
          {"rsqrt", un(UnaryOp::kRsqrt, x)},
          {"abs", un(UnaryOp::kAbs, x)},
          {"sign", un(UnaryOp::kSign, x)},
          {"lt", as_number(bin(BinaryOp::kLt, x, y))},
          {"le", as_number(bin(BinaryOp::kLe, x, y))},
          {"gt", as_number(bin(BinaryOp::kGt, x, y))},
          {"ge", as_number(bin(BinaryOp::kGe, x, y))},
          {"eq", as_number(bin(BinaryOp::kEq, x, y))},
          {"ne", as_number(bin(BinaryOp::kNe, x, y))},
          {"isfinite", as_number(un(UnaryOp::kIsFinite, x))},
          {"and_or_not", ir::make_select(bin(BinaryOp::kOr,
                                             bin(BinaryOp::kAnd, bin(BinaryOp::kLt, x, y),
                                                 un(UnaryOp::kIsFinite, y)),
                                             un(UnaryOp::kNot, bin(BinaryOp::kGe, y, f32(num(0))))),
                                         x, y)},
          {"select", ir::make_select(bin(BinaryOp::kLt, x, y), x, y)},
          {"by_scalar", bin(BinaryOp::kMul, x, f32(bin(BinaryOp::kDiv, var("lr"), var("scale"))))},
          {"by_const", bin(BinaryOp::kDiv, x, f32(num(3)))},
          {"plus_const", bin(BinaryOp::kAdd, x, f32(num(0.1)))},
          {"scalar_cond", ir::make_select(bin(BinaryOp::kGt, var("scale"), num(0)), x, y)},
          {"mask_cond", ir::make_select(bin(BinaryOp::kAnd,
                                            ir::make_cast(ir::Type::kMask,
                                                          bin(BinaryOp::kLt, var("scale"), num(0))),
                                            bin(BinaryOp::kLt, x, y)),
                                        x, y)},
      });
  return ir::optimize(k);
}

ir::Kernel transcendental_kernel() {
  using ir::BinaryOp;
  using ir::UnaryOp;
  ir::Kernel k = base_kernel("transcendental", {});
  ir::Expr x = load("param");
  ir::Expr y = load("grad");
  add_stores(k, {
                    {"exp", un(UnaryOp::kExp, x)},
                    {"log", un(UnaryOp::kLog, x)},
                    {"pow", bin(BinaryOp::kPow, x, y)},
                    {"square", bin(BinaryOp::kPow, x, f32(num(2)))},
                    {"root", bin(BinaryOp::kPow, x, f32(num(0.5)))},
                });
  return ir::optimize(k);
}

// Reductions and stores in one phase (the reductions must read param before it is
// overwritten), a scalar state fed by them, and a Max reduction.
ir::Kernel reduce_and_store_kernel() {
  using ir::BinaryOp;
  ir::Kernel k = base_kernel("reduce_and_store", {{"lr", 0.5}});
  k.scalars = {{"total", 0}, {"peak", 0}};
  ir::Expr p = load("param");
  ir::Expr g = load("grad");
  k.phases[0].reductions = {{"%r0", ir::ReduceOp::kSum, bin(BinaryOp::kMul, p, p)},
                            {"%r1", ir::ReduceOp::kMax, un(ir::UnaryOp::kAbs, p)}};
  k.phases[0].stores = {{"param", bin(BinaryOp::kSub, p, bin(BinaryOp::kMul, f32(var("lr")), g))}};
  k.scalar_stores = {{"total", var("%r0")}, {"peak", var("%r1")}};
  return ir::optimize(k);
}

ir::Kernel rule_kernel(const std::string& rule_name,
                       const std::map<std::string, std::string>& options = {}) {
  frontend::Rule rule = frontend::load_rule(rule_name);
  return rule.compile(rule.resolve_options(options));
}

// ---- compiled once per test binary ----
struct Compiled {
  ir::Kernel kernel;
  CpuSchedule schedule;
  HalideCpuBinary binary;
  std::unique_ptr<LoadedObject> object;
};

CpuSchedule schedule_for_tests() {
  CpuSchedule schedule = default_cpu_schedule();
  schedule.chunk_elements = 16384;
  return schedule;
}

const Compiled& compiled(const std::string& key, const std::function<ir::Kernel()>& make,
                         const CpuSchedule& schedule = schedule_for_tests(),
                         const std::string& target = "host") {
  static std::map<std::string, std::unique_ptr<Compiled>> cache;
  auto found = cache.find(key);
  if (found != cache.end()) return *found->second;
  auto entry = std::make_unique<Compiled>();
  entry->kernel = make();
  entry->schedule = schedule;
  entry->binary = compile_cpu_kernel(entry->kernel, schedule, target);
  entry->object = std::make_unique<LoadedObject>(entry->binary);
  return *cache.emplace(key, std::move(entry)).first->second;
}

// ---- data ----
std::vector<float> special_values() {
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  return {nan,           -nan,           inf,  -inf,  0.0f, -0.0f, 1e-45f, -1e-45f, 1.17549435e-38f,
          3.4028235e38f, -3.4028235e38f, 1.0f, -1.0f, 0.5f, 3.0f,  -2.5f,  1e-20f,  1e20f,
          7.0f,          0.1f,           -0.1f};
}

// x and y: every pair of special values first, then random bit patterns (every class of
// float, NaN payloads included) or random numbers in [lo, hi].
void fill_inputs(float* x, float* y, int64_t n, uint32_t seed, bool random_bits, float lo = -4,
                 float hi = 4) {
  const std::vector<float> special = special_values();
  const int64_t s = static_cast<int64_t>(special.size());
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> uniform(lo, hi);
  for (int64_t i = 0; i < n; ++i) {
    if (random_bits && i < s * s) {
      x[i] = special[static_cast<size_t>(i / s)];
      y[i] = special[static_cast<size_t>(i % s)];
    } else if (random_bits) {
      x[i] = std::bit_cast<float>(static_cast<uint32_t>(gen()));
      y[i] = std::bit_cast<float>(static_cast<uint32_t>(gen()));
    } else {
      x[i] = uniform(gen);
      y[i] = uniform(gen);
    }
  }
}

void fill_uniform(float* x, int64_t n, uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> uniform(-4, 4);
  for (int64_t i = 0; i < n; ++i) x[i] = uniform(gen);
}

bool same_bits_or_both_nan(float a, float b) {
  if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
  return std::bit_cast<uint32_t>(a) == std::bit_cast<uint32_t>(b);
}

// One tensor for the interpreter and one for the compiled kernel, same contents; the
// compiled one lives on misaligned storage.
struct TwinTensors {
  std::vector<std::vector<float>> reference_storage;
  std::vector<MisalignedBuffer> compiled_storage;
  ir::TensorArgs reference;
  ir::TensorArgs compiled;

  TwinTensors(const ir::Kernel& kernel, int64_t n) {
    reference.numel = compiled.numel = n;
    for (size_t i = 0; i < kernel.buffers.size(); ++i) {
      reference_storage.emplace_back(static_cast<size_t>(n), 0.0f);
      compiled_storage.emplace_back(n);
    }
    for (size_t i = 0; i < kernel.buffers.size(); ++i) {
      reference.buffers.push_back(reference_storage[i].data());
      compiled.buffers.push_back(compiled_storage[i].data());
    }
  }

  // Copies the reference's buffers and scalar states to the compiled side.
  void sync() {
    for (size_t i = 0; i < reference_storage.size(); ++i) {
      std::copy(reference_storage[i].begin(), reference_storage[i].end(),
                compiled_storage[i].data());
    }
    compiled.scalars = reference.scalars;
  }
};

std::vector<double> default_hypers(const ir::Kernel& kernel) {
  std::vector<double> hypers;
  for (const ir::HyperDecl& hyper : kernel.hypers) hypers.push_back(hyper.default_value);
  return hypers;
}

void step_both(const Compiled& c, const ir::Interpreter& interpreter, TwinTensors& tensors,
               const std::vector<double>& hypers, int64_t t) {
  interpreter.step(std::span<ir::TensorArgs>(&tensors.reference, 1), hypers, t);
  testing::step_compiled(*c.object, c.kernel, c.schedule.chunk_elements, tensors.compiled, hypers,
                         t);
}

// Counts elements of buffer `b` that differ in bits (any NaN equal to any NaN).
int64_t bit_mismatches(const TwinTensors& tensors, size_t b, int64_t n, std::string* first) {
  int64_t count = 0;
  for (int64_t i = 0; i < n; ++i) {
    float want = tensors.reference.buffers[b][i];
    float got = tensors.compiled.buffers[b][i];
    if (!same_bits_or_both_nan(want, got)) {
      if (count == 0 && first != nullptr) {
        *first = "element " + std::to_string(i) + ": interpreter " + std::to_string(want) + " (0x" +
                 std::to_string(std::bit_cast<uint32_t>(want)) + "), compiled " +
                 std::to_string(got) + " (0x" + std::to_string(std::bit_cast<uint32_t>(got)) + ")";
      }
      ++count;
    }
  }
  return count;
}

// ---- tests ----

TEST(HalideCpuCodegen, ExactOpsMatchTheInterpreterBitForBit) {
  const Compiled& c = compiled("exact_ops", exact_ops_kernel);
  ir::Interpreter interpreter(c.kernel);
  const std::vector<double> hypers = default_hypers(c.kernel);
  for (int64_t n : kSizes) {
    SCOPED_TRACE("n = " + std::to_string(n));
    TwinTensors tensors(c.kernel, n);
    fill_inputs(tensors.reference.buffers[0], tensors.reference.buffers[1], n, 11, true);
    interpreter.initialize(tensors.reference, hypers);
    tensors.sync();
    step_both(c, interpreter, tensors, hypers, 1);
    for (size_t b = 0; b < c.kernel.buffers.size(); ++b) {
      std::string first;
      EXPECT_EQ(bit_mismatches(tensors, b, n, &first), 0)
          << c.kernel.buffers[b].name << ": " << first;
    }
  }
}

TEST(HalideCpuCodegen, TranscendentalsAreTheCLibrarys) {
  const Compiled& c = compiled("transcendental", transcendental_kernel);
  ir::Interpreter interpreter(c.kernel);
  for (int64_t n : kSizes) {
    SCOPED_TRACE("n = " + std::to_string(n));
    TwinTensors tensors(c.kernel, n);
    fill_inputs(tensors.reference.buffers[0], tensors.reference.buffers[1], n, 5, true);
    // Past the special values: bases over many binades, exponents that keep pow finite.
    std::mt19937 gen(5);
    std::uniform_real_distribution<float> binade(-20.0f, 20.0f);
    std::uniform_real_distribution<float> power(-8.0f, 8.0f);
    for (int64_t i = n / 2; i < n; ++i) {
      tensors.reference.buffers[0][i] = std::exp2(binade(gen)) * (i % 7 == 0 ? -1.0f : 1.0f);
      tensors.reference.buffers[1][i] = i % 5 == 0 ? std::round(power(gen)) : power(gen);
    }
    interpreter.initialize(tensors.reference, {});
    tensors.sync();
    step_both(c, interpreter, tensors, {}, 1);
    for (size_t b = 2; b < c.kernel.buffers.size(); ++b) {
      std::string first;
      EXPECT_EQ(bit_mismatches(tensors, b, n, &first), 0)
          << c.kernel.buffers[b].name << ": " << first;
    }
  }
}

TEST(HalideCpuCodegen, ReductionsReadTheBuffersAsTheStepStarted) {
  const Compiled& c = compiled("reduce_and_store", reduce_and_store_kernel);
  ASSERT_EQ(c.kernel.phases.size(), 1u);
  ir::Interpreter interpreter(c.kernel);
  const std::vector<double> hypers = default_hypers(c.kernel);
  for (int64_t n : kSizes) {
    SCOPED_TRACE("n = " + std::to_string(n));
    TwinTensors tensors(c.kernel, n);
    fill_inputs(tensors.reference.buffers[0], tensors.reference.buffers[1], n, 3, false);
    interpreter.initialize(tensors.reference, hypers);
    tensors.sync();
    double abs_sum = 0;  // sum |x_i| of the summed terms p * p
    for (int64_t i = 0; i < n; ++i) {
      float p = tensors.reference.buffers[0][i];
      abs_sum += static_cast<double>(p * p);
    }
    step_both(c, interpreter, tensors, hypers, 1);
    EXPECT_EQ(bit_mismatches(tensors, 0, n, nullptr), 0);
    const double bound = 2.0 * static_cast<double>(n) * std::ldexp(1.0, -53) * abs_sum * 1.01;
    EXPECT_NEAR(tensors.compiled.scalars[0], tensors.reference.scalars[0], bound);
    EXPECT_EQ(tensors.compiled.scalars[1], tensors.reference.scalars[1]);  // Max is exact
  }
  // Max propagates a NaN wherever it sits (lanes, tail), and Sum does too.
  for (int64_t n : {int64_t{5}, int64_t{40}, int64_t{100}}) {
    for (int64_t at : {int64_t{0}, n / 2, n - 1}) {
      std::vector<float> param(static_cast<size_t>(n), 1.0f), grad(static_cast<size_t>(n), 0.0f);
      param[static_cast<size_t>(at)] = std::numeric_limits<float>::quiet_NaN();
      std::vector<double> partials;
      ASSERT_EQ(testing::call_phase(*c.object, c.kernel, 0, n, {param.data(), grad.data()}, {0.5f},
                                    partials),
                0);
      EXPECT_TRUE(std::isnan(partials[1])) << "n=" << n << " NaN at " << at;
      EXPECT_TRUE(std::isnan(partials[0]));
    }
  }
}

// Real rules: default options, plus the option and hyper paths that change the code. One
// test, so one process compiles the Halide runtime once for all of them under ctest.
struct RuleCase {
  std::string rule;
  std::map<std::string, std::string> options;
  std::map<std::string, double> hypers;
  bool exact;  // no reduction feeds element code
};

void check_rule(const RuleCase& rc) {
  std::string key = rc.rule;
  for (const auto& [name, value] : rc.options) key += "_" + name + value;
  const Compiled& c = compiled(key, [&] { return rule_kernel(rc.rule, rc.options); });
  ir::Interpreter interpreter(c.kernel);
  std::vector<double> hypers = default_hypers(c.kernel);
  for (const auto& [name, value] : rc.hypers) {
    hypers[static_cast<size_t>(c.kernel.hyper_index(name))] = value;
  }
  for (int64_t n : kSizes) {
    SCOPED_TRACE("n = " + std::to_string(n));
    TwinTensors tensors(c.kernel, n);
    fill_inputs(tensors.reference.buffers[0], tensors.reference.buffers[1], n, 17, false);
    interpreter.initialize(tensors.reference, hypers);
    tensors.sync();
    for (int64_t t = 1; t <= 3; ++t) {
      fill_uniform(tensors.reference.buffers[1], n, 100 + static_cast<uint32_t>(t));
      std::copy(tensors.reference.buffers[1], tensors.reference.buffers[1] + n,
                tensors.compiled.buffers[1]);
      step_both(c, interpreter, tensors, hypers, t);
      for (size_t b = 0; b < c.kernel.buffers.size(); ++b) {
        if (rc.exact) {
          std::string first;
          ASSERT_EQ(bit_mismatches(tensors, b, n, &first), 0)
              << "step " << t << ", " << c.kernel.buffers[b].name << ": " << first;
        } else {
          // A reduction's partial sums change its last bits, and they reach the elements.
          for (int64_t i = 0; i < n; ++i) {
            float want = tensors.reference.buffers[b][i];
            float got = tensors.compiled.buffers[b][i];
            ASSERT_NEAR(got, want, 1e-5f * std::max(1.0f, std::fabs(want)))
                << "step " << t << ", " << c.kernel.buffers[b].name << "[" << i << "]";
          }
        }
      }
      for (size_t s = 0; s < tensors.reference.scalars.size(); ++s) {
        EXPECT_NEAR(tensors.compiled.scalars[s], tensors.reference.scalars[s],
                    1e-9 * std::max(1.0, std::fabs(tensors.reference.scalars[s])));
      }
      tensors.sync();  // the next step starts both sides from the interpreter's values
    }
  }
}

TEST(HalideCpuCodegen, BuiltinRulesMatchTheInterpreterOverSteps) {
  const RuleCase cases[] = {
      {"adam", {}, {}, true},
      {"adam", {{"amsgrad", "true"}, {"maximize", "true"}}, {{"weight_decay", 0.01}}, true},
      {"lion", {}, {}, true},
      {"rprop", {}, {}, true},
      {"nadam", {}, {}, true},
      {"radam", {}, {}, true},
      {"lamb", {}, {}, false},
      {"lars", {}, {}, false},
  };
  for (const RuleCase& rc : cases) {
    SCOPED_TRACE("rule " + rc.rule + (rc.options.empty() ? "" : " with options"));
    check_rule(rc);
  }
}

// The loader-facing contract: symbols, loading twice, errors. One test: one compile.
TEST(HalideCpuCodegen, ObjectExportsPhaseFunctionsAndReturnsErrors) {
  const Compiled& c = compiled("adam", [] { return rule_kernel("adam"); });
  EXPECT_EQ(c.binary.name, "adam_amsgrad0_maximize0_cpu_" + c.schedule.spelling());
  ASSERT_EQ(c.binary.phase_functions.size(), 1u);
  EXPECT_EQ(c.binary.phase_functions[0], c.binary.name + "_phase0_argv");
  const std::string function = c.binary.name + "_phase0";
  EXPECT_NO_THROW(c.object->symbol(function));
  EXPECT_NO_THROW(c.object->symbol(function + "_metadata"));
  EXPECT_NO_THROW(c.object->symbol(kLastErrorSymbol));
  // The Halide runtime inside is private: nothing to clash with another kernel's copy.
  EXPECT_THROW(c.object->symbol("halide_error"), std::runtime_error);
  EXPECT_THROW(c.object->symbol("halide_malloc"), std::runtime_error);
  EXPECT_THROW(c.object->symbol("halide_set_error_handler"), std::runtime_error);
  EXPECT_GT(c.binary.compile_seconds, 0.0);
  EXPECT_NE(c.binary.target.find("strict_float"), std::string::npos);

  // Loaded twice, side by side: two independent copies.
  LoadedObject second(c.binary);
  EXPECT_NE(second.symbol(c.binary.phase_functions[0]),
            c.object->symbol(c.binary.phase_functions[0]));
  const int64_t n = 64;
  std::vector<std::vector<float>> storage(c.kernel.buffers.size(),
                                          std::vector<float>(static_cast<size_t>(n), 1.0f));
  std::vector<float*> buffers;
  for (auto& b : storage) buffers.push_back(b.data());
  const std::vector<float> scalars(ir::phase_scalar_inputs(c.kernel.phases[0]).size(), 0.5f);
  std::vector<double> partials;
  EXPECT_EQ(testing::call_phase(second, c.kernel, 0, n, buffers, scalars, partials), 0);
  EXPECT_EQ(testing::call_phase(*c.object, c.kernel, 0, n, buffers, scalars, partials), 0);
  // A Halide error returns its code and keeps the message; nothing aborts. First grad
  // shorter than the chunk.
  std::vector<int64_t> extents(c.kernel.buffers.size(), n);
  extents[1] = n - 1;
  int rc = testing::call_phase(*c.object, c.kernel, 0, n, buffers, scalars, partials, extents);
  EXPECT_NE(rc, 0);
  EXPECT_NE(c.object->last_error(), "");
  const std::string message = c.object->last_error();
  // A state longer than the chunk: every buffer must have the chunk's extent. (A null host
  // pointer is no error: Halide reads it as a bounds query and computes nothing.)
  extents[1] = n;
  extents[2] = n + 1;
  rc = testing::call_phase(*c.object, c.kernel, 0, n, buffers, scalars, partials, extents);
  EXPECT_NE(rc, 0);
  EXPECT_NE(c.object->last_error(), message);
  // And a good call still works afterwards.
  EXPECT_EQ(testing::call_phase(*c.object, c.kernel, 0, n, buffers, scalars, partials), 0);

  // Threads calling at once on disjoint chunks get what one thread gets.
  const int64_t big = 4 * 16384 + 5;
  TwinTensors tensors(c.kernel, big);
  fill_inputs(tensors.reference.buffers[0], tensors.reference.buffers[1], big, 29, false);
  tensors.sync();
  auto run_chunk = [&](const ir::TensorArgs& tensor, int64_t chunk) {
    const int64_t start = chunk * 16384;
    std::vector<float*> pointers;
    for (float* buffer : tensor.buffers) pointers.push_back(buffer + start);
    std::vector<double> chunk_partials;
    return testing::call_phase(*c.object, c.kernel, 0, std::min<int64_t>(16384, big - start),
                               pointers, scalars, chunk_partials);
  };
  std::vector<int> codes(5, -1);
  for (int64_t chunk = 0; chunk < 5; ++chunk) EXPECT_EQ(run_chunk(tensors.reference, chunk), 0);
  std::vector<std::thread> threads;
  for (int64_t chunk = 0; chunk < 5; ++chunk) {
    threads.emplace_back(
        [&, chunk] { codes[static_cast<size_t>(chunk)] = run_chunk(tensors.compiled, chunk); });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(codes, std::vector<int>(5, 0));
  for (size_t b = 0; b < c.kernel.buffers.size(); ++b) {
    EXPECT_EQ(bit_mismatches(tensors, b, big, nullptr), 0) << c.kernel.buffers[b].name;
  }
}

TEST(HalideCpuCodegen, CompilesFromSeveralThreads) {
  std::vector<HalideCpuBinary> binaries(2);
  std::vector<std::thread> threads;
  for (int i = 0; i < 2; ++i) {
    threads.emplace_back([&binaries, i] {
      CpuSchedule schedule;
      schedule.vector_width = i == 0 ? 4 : 8;
      binaries[static_cast<size_t>(i)] = compile_cpu_kernel(rule_kernel("sgd"), schedule);
    });
  }
  for (std::thread& thread : threads) thread.join();
  for (const HalideCpuBinary& binary : binaries) {
    EXPECT_FALSE(binary.shared_object.empty());
    EXPECT_NO_THROW(LoadedObject{binary});
  }
}

TEST(HalideCpuCodegen, PortableTargetRunsTheSameBits) {
  CpuSchedule schedule;
  schedule.vector_width = 4;
  schedule.unroll = 1;
  schedule.chunk_elements = 1000;
  const Compiled& c = compiled(
      "adam_v2", [] { return rule_kernel("adam"); }, schedule, "x86-64-v2");
  EXPECT_EQ(c.binary.target, "x86-64-linux-sse41-strict_float");
  ir::Interpreter interpreter(c.kernel);
  const std::vector<double> hypers = default_hypers(c.kernel);
  const int64_t n = 4099;
  TwinTensors tensors(c.kernel, n);
  fill_inputs(tensors.reference.buffers[0], tensors.reference.buffers[1], n, 23, false);
  interpreter.initialize(tensors.reference, hypers);
  tensors.sync();
  step_both(c, interpreter, tensors, hypers, 1);
  for (size_t b = 0; b < c.kernel.buffers.size(); ++b) {
    EXPECT_EQ(bit_mismatches(tensors, b, n, nullptr), 0) << c.kernel.buffers[b].name;
  }
}

TEST(HalideCpuCodegen, ResolvesTargets) {
  const std::string host = resolve_cpu_target("host");
  EXPECT_EQ(host.rfind("x86-64-linux", 0), 0u) << host;
  EXPECT_NE(host.find("strict_float"), std::string::npos);
  EXPECT_EQ(host.find("jit"), std::string::npos);
  EXPECT_EQ(resolve_cpu_target("x86-64-v2"), "x86-64-linux-sse41-strict_float");
  EXPECT_EQ(resolve_cpu_target("x86-64-v3"), "x86-64-linux-avx-avx2-f16c-fma-sse41-strict_float");
  EXPECT_EQ(resolve_cpu_target("x86-64-v4"),
            "x86-64-linux-avx-avx2-avx512-avx512_skylake-f16c-fma-sse41-strict_float");
  EXPECT_EQ(resolve_cpu_target("x86-64-linux-avx2"), "x86-64-linux-avx2-strict_float");
  EXPECT_THROW(resolve_cpu_target("x86-64-v9"), UserError);
  EXPECT_THROW(resolve_cpu_target("arm-64-linux"), UserError);
  EXPECT_THROW(resolve_cpu_target("x86-64-linux-cuda"), UserError);
}

TEST(HalideCpuCodegen, RejectsBadSchedulesAndUnsplitKernels) {
  CpuSchedule schedule;
  schedule.vector_width = 6;
  EXPECT_THROW(compile_cpu_kernel(rule_kernel("sgd"), schedule), UserError);
  ir::Kernel unsplit = base_kernel("unsplit", {});
  unsplit.phases[0].stores = {{"param", load("grad")}};
  EXPECT_THROW(compile_cpu_kernel(unsplit, CpuSchedule{}), InternalError);
}

TEST(HalideCpuCodegen, MissingLinkerIsAnEnvironmentError) {
  const char* old = std::getenv("PATH");
  const std::string saved = old != nullptr ? old : "";
  const std::string empty = ::testing::TempDir() + "fuseopt-no-linker";
  std::filesystem::create_directories(empty);
  setenv("PATH", empty.c_str(), 1);
  try {
    compile_cpu_kernel(rule_kernel("sgd"), CpuSchedule{});
    ADD_FAILURE() << "compiled without a linker";
  } catch (const EnvironmentError& error) {
    EXPECT_STREQ(error.what(),
                 "no linker ('cc') found on PATH; fuseopt needs one to compile CPU kernels");
  }
  setenv("PATH", saved.c_str(), 1);
}

TEST(HalideCpuCodegen, DescribesThePipelines) {
  const std::string text = describe_halide_pipelines(rule_kernel("lamb"), schedule_for_tests());
  EXPECT_NE(text.find("generated by fuseopt from lamb"), std::string::npos);
  EXPECT_NE(text.find("## phase 0:"), std::string::npos);
  EXPECT_NE(text.find("## phase 1:"), std::string::npos);
  EXPECT_NE(text.find("stores(x) = "), std::string::npos);
  EXPECT_NE(text.find("TailStrategy::GuardWithIf"), std::string::npos);
  EXPECT_NE(text.find("produce stores"), std::string::npos);
}

TEST(HalideCpuCodegen, ReportsItsVersion) {
  EXPECT_EQ(halide_version().rfind("Halide 14", 0), 0u) << halide_version();
}

}  // namespace
}  // namespace fuseopt::codegen

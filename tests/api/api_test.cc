// Tests of api/fuseopt.h: backend names, the in-process kernel cache (one compile per
// request, also across threads), errors from bad rules and options, and the CPU backend
// (Halide kernels loaded by the runtime) against the chunked interpreter for every built-in
// rule at sizes around the vector and chunk widths.
#include <gtest/gtest.h>

#include <bit>
#include <cstring>
#include <thread>

#include "api/fuseopt.h"
#include "codegen/halide/cpu_codegen.h"
#include "ir/interpreter.h"
#include "rules/builtin_rules.h"
#include "runtime/cpu_binary.h"
#include "support/error.h"
#include "tests/runtime/test_group.h"

namespace fuseopt {
namespace {

using test::random_values;
using test::seed_of;

CompileOptions interp_options() {
  CompileOptions options;
  options.backend = Backend::kInterpreter;
  return options;
}

static_assert(std::string_view(runtime::kCpuLastErrorSymbol) ==
                  std::string_view(codegen::kLastErrorSymbol),
              "the runtime and codegen must name the error query alike");

// Equal bits, except that any NaN equals any NaN (NaN payloads are not specified).
::testing::AssertionResult same_bits_or_nan(std::span<const float> a, std::span<const float> b) {
  if (a.size() != b.size()) return ::testing::AssertionFailure() << "sizes differ";
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::isnan(a[i]) && std::isnan(b[i])) continue;
    if (std::bit_cast<uint32_t>(a[i]) != std::bit_cast<uint32_t>(b[i])) {
      return ::testing::AssertionFailure()
             << "element " << i << " of " << a.size() << ": " << a[i] << " vs " << b[i];
    }
  }
  return ::testing::AssertionSuccess();
}

TEST(Api, BackendNames) {
  EXPECT_EQ(parse_backend("interp"), Backend::kInterpreter);
  EXPECT_EQ(parse_backend("cpu"), Backend::kCpu);
  EXPECT_EQ(parse_backend("auto"), Backend::kAuto);
  for (Backend b : {Backend::kInterpreter, Backend::kCpu, Backend::kAuto}) {
    EXPECT_EQ(parse_backend(backend_name(b)), b);
  }
  try {
    parse_backend("cpus");
    FAIL() << "no UserError";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("did you mean 'cpu'"), std::string::npos) << e.what();
  }
  EXPECT_THROW(parse_backend("gpu-ish"), UserError);
}

TEST(Api, SameRequestCompilesOnce) {
  auto a = compile_rule("adam", interp_options());
  auto b = compile_rule("adam", interp_options());
  EXPECT_EQ(a.get(), b.get());
  CompileOptions amsgrad = interp_options();
  amsgrad.options["amsgrad"] = "true";
  auto c = compile_rule("adam", amsgrad);
  EXPECT_NE(a.get(), c.get());
  EXPECT_EQ(c->ir.config_name(), "adam_amsgrad1_maximize0");
  // Spelling an option at its default is the same request.
  CompileOptions explicit_default = interp_options();
  explicit_default.options["amsgrad"] = "false";
  EXPECT_EQ(compile_rule("adam", explicit_default).get(), a.get());
  // Another chunk size is another kernel.
  CompileOptions chunks = interp_options();
  chunks.cpu_schedule.chunk_elements = 4096;
  EXPECT_NE(compile_rule("adam", chunks).get(), a.get());
  // The same text given directly is the same kernel.
  const rules::BuiltinRule* adam = rules::find_builtin_rule("adam");
  ASSERT_NE(adam, nullptr);
  EXPECT_EQ(compile_rule_text(adam->text, interp_options()).get(), a.get());
}

TEST(Api, ConcurrentRequestsShareOneCompile) {
  clear_compiled_kernels();
  std::vector<std::shared_ptr<const runtime::CompiledKernel>> results(6);
  std::vector<std::thread> threads;
  for (size_t i = 0; i < results.size(); ++i) {
    threads.emplace_back([&, i] { results[i] = compile_rule("lamb", interp_options()); });
  }
  for (std::thread& t : threads) t.join();
  for (const auto& r : results) EXPECT_EQ(r.get(), results[0].get());
}

TEST(Api, ErrorsAreUserErrors) {
  EXPECT_THROW(compile_rule("adamm", interp_options()), UserError);
  CompileOptions unknown = interp_options();
  unknown.options["amsgrd"] = "true";
  EXPECT_THROW(compile_rule("adam", unknown), UserError);
  try {
    compile_rule_text("rule broken \"x\"\nstep { param = param - nope }\n", interp_options(),
                      "broken.opt");
    FAIL() << "no UserError";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("broken.opt"), std::string::npos) << e.what();
  }
  // A failed compile is not cached: asking again fails again the same way.
  EXPECT_THROW(compile_rule_text("rule broken \"x\"\nstep { param = param - nope }\n",
                                 interp_options(), "broken.opt"),
               UserError);
}

TEST(Api, MakeOptimizer) {
  Optimizer optimizer = make_optimizer("sgd", interp_options(), {{"lr", 0.5}}, 2);
  EXPECT_EQ(optimizer.threads(), 2);
  EXPECT_EQ(optimizer.hyper("lr"), 0.5);
  optimizer.add_tensor(3);
  optimizer.grad(0)[0] = 1.0f;
  optimizer.step();
  EXPECT_EQ(optimizer.param(0)[0], -0.5f);
}

// Runs the same group through both kernels and compares parameters and states.
void compare_backends(const std::string& rule, const std::vector<int64_t>& sizes) {
  CompileOptions cpu;
  cpu.backend = Backend::kCpu;
  auto cpu_kernel = compile_rule(rule, cpu);
  const bool exact = !test::has_reductions(cpu_kernel->ir);
  CompileOptions interp = interp_options();
  interp.cpu_schedule = cpu.cpu_schedule;  // the same chunks
  auto interp_kernel = compile_rule(rule, interp);
  EXPECT_EQ(cpu_kernel->backend, "cpu");
  EXPECT_EQ(cpu_kernel->chunk_elements, interp_kernel->chunk_elements);

  Optimizer a(cpu_kernel, {}, 2);
  Optimizer b(interp_kernel, {}, 2);
  for (size_t i = 0; i < sizes.size(); ++i) {
    for (Optimizer* o : {&a, &b}) {
      o->add_tensor(sizes[i]);
      auto p = random_values(static_cast<size_t>(sizes[i]), seed_of(i, 0, 3));
      std::copy(p.begin(), p.end(), o->param(i).begin());
    }
  }
  for (int64_t t = 1; t <= 3; ++t) {
    for (const auto& [name, value] : test::hypers_at(cpu_kernel->ir, t)) {
      a.set_hyper(name, value);
      b.set_hyper(name, value);
    }
    for (size_t i = 0; i < sizes.size(); ++i) {
      auto g = random_values(static_cast<size_t>(sizes[i]), seed_of(i, t));
      std::copy(g.begin(), g.end(), a.grad(i).begin());
      std::copy(g.begin(), g.end(), b.grad(i).begin());
    }
    a.step();
    b.step();
    for (size_t i = 0; i < sizes.size(); ++i) {
      const std::string where = rule + ", tensor " + std::to_string(i) + " (" +
                                std::to_string(sizes[i]) + "), step " + std::to_string(t);
      const Optimizer& va = a;
      const Optimizer& vb = b;
      if (exact) {
        // strict_float and libm's expf, logf and powf: the interpreter's bits exactly.
        EXPECT_TRUE(same_bits_or_nan(a.param(i), b.param(i))) << where << ", param";
        for (const std::string& s : a.state_names()) {
          EXPECT_TRUE(same_bits_or_nan(va.state(i, s), vb.state(i, s))) << where << ", state " << s;
        }
      } else {
        // Halide sums a chunk in vector lanes, not in element order: the partial sums'
        // last bits differ, and reach the elements through the prologue.
        // Values are of order 1, and some cancel to near 0 (param - update): their error
        // is measured against 1.
        EXPECT_TRUE(test::close_values(a.param(i), b.param(i), 1e-5, 1.0)) << where << ", param";
        for (const std::string& s : a.state_names()) {
          EXPECT_TRUE(test::close_values(va.state(i, s), vb.state(i, s), 1e-5, 1.0))
              << where << ", state " << s;
        }
      }
      for (const std::string& s : a.scalar_names()) {
        EXPECT_NEAR(va.scalar(i, s), vb.scalar(i, s), exact ? 0.0 : 1e-9) << where << ", " << s;
      }
    }
    if (::testing::Test::HasFailure()) return;
  }
}

TEST(ApiCpu, EveryBuiltinRuleMatchesTheInterpreter) {
  const int64_t chunk = codegen::default_cpu_schedule().chunk_elements;
  const std::vector<int64_t> sizes = {1, 7, 8, 9, 31, 33, 100, chunk - 1, chunk + 3, 2 * chunk};
  for (const rules::BuiltinRule& rule : rules::builtin_rules()) {
    compare_backends(rule.name, sizes);
    if (HasFailure()) return;
  }
}

// Given the same scalars and buffers, one chunk of a phase must give the interpreter's bits
// (strict_float: no fused multiply-add), in every phase of a multi-phase kernel too: linking
// the phases' modules once dropped their strict-float flag, and lamb's second phase then
// computed `param - lr * x` as fma(-lr, x, param) for about 0.3% of elements.
TEST(ApiCpu, LambPhasesGiveTheInterpretersBitsForEqualInputs) {
  CompileOptions cpu;
  cpu.backend = Backend::kCpu;
  auto cpu_kernel = compile_rule("lamb", cpu);
  auto interp_kernel = compile_rule("lamb", interp_options());
  const ir::Kernel& k = cpu_kernel->ir;
  ir::Interpreter interpreter(k);
  int64_t mismatches = 0;
  for (uint32_t seed = 0; seed < 50; ++seed) {
    const int64_t n = 31 + seed;
    std::vector<std::vector<float>> a(k.buffers.size());
    for (size_t b = 0; b < a.size(); ++b) {
      a[b] = b < 2 ? random_values(static_cast<size_t>(n), seed * 7 + static_cast<uint32_t>(b))
                   : std::vector<float>(static_cast<size_t>(n), 0.0f);
    }
    std::vector<std::vector<float>> b = a;
    ir::Interpreter::HostStep host(interpreter);
    std::vector<double> hypers;
    for (const auto& h : k.hypers) hypers.push_back(h.default_value);
    host.start(hypers, 1, n, {});
    for (size_t p = 0; p < k.phases.size(); ++p) {
      host.run_prologue(p);
      std::vector<double> inputs(ir::phase_scalar_inputs(k.phases[p]).size());
      host.scalar_inputs(p, inputs);
      std::vector<float> scalars(inputs.begin(), inputs.end());
      std::vector<double> pa(k.phases[p].reductions.size() + 1), pb(pa.size());
      std::vector<void*> ba, bb;
      for (auto& v : a) ba.push_back(v.data());
      for (auto& v : b) bb.push_back(v.data());
      cpu_kernel->phases[p]->run({n, ba.data(), scalars.data(), pa.data()});
      interp_kernel->phases[p]->run({n, bb.data(), scalars.data(), pb.data()});
      for (size_t v = 0; v < a.size(); ++v) {
        for (int64_t i = 0; i < n; ++i) {
          if (std::bit_cast<uint32_t>(a[v][static_cast<size_t>(i)]) !=
              std::bit_cast<uint32_t>(b[v][static_cast<size_t>(i)])) {
            ++mismatches;
          }
        }
      }
      host.set_reductions(p, std::span<const double>(pb.data(), k.phases[p].reductions.size()));
    }
  }
  EXPECT_EQ(mismatches, 0);
}

TEST(ApiCpu, SameRequestCompilesOnce) {
  CompileOptions cpu;
  cpu.backend = Backend::kCpu;
  auto a = compile_rule("sgd", cpu);
  auto b = compile_rule("sgd", cpu);
  EXPECT_EQ(a.get(), b.get());
  CompileOptions automatic;
  automatic.backend = Backend::kAuto;
  EXPECT_EQ(compile_rule("sgd", automatic).get(), a.get());
}

}  // namespace
}  // namespace fuseopt

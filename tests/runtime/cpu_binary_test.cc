// Tests of runtime/cpu_binary.h: the chunked interpreter backend, the target check, and the
// loader, with fake_cpu_kernel.c standing in for a Halide shared object (the calling
// convention, reductions, error codes and messages, damaged objects).
#include "runtime/cpu_binary.h"

#include <gtest/gtest.h>

#include <fstream>
#include <iterator>

#include "frontend/rule.h"
#include "ir/interpreter.h"
#include "ir/printer.h"
#include "runtime/optimizer.h"
#include "support/error.h"
#include "tests/runtime/test_group.h"

namespace fuseopt::runtime {
namespace {

using test::random_values;
using test::same_bits;

ir::Kernel kernel_from_text(const std::string& text) {
  frontend::Rule rule = frontend::rule_from_text(text, "<test>");
  return rule.compile(rule.resolve_options());
}

const char* const kSingleRule = R"(rule fake "loader test"
hyper lr = 0.5
step {
  param = param - lr * grad
}
)";

const char* const kNormRule = R"(rule fakenorm "loader test with a reduction"
hyper lr = 0.5
step {
  let n = norm(grad)
  param = param - (lr * n) * grad
}
)";

std::string fake_object(const char* path = FUSEOPT_FAKE_CPU_KERNEL) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << "cannot read " << path;
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

CpuBinary fake_binary(std::vector<std::string> functions, int64_t chunk = 100,
                      const char* path = FUSEOPT_FAKE_CPU_KERNEL) {
  CpuBinary binary;
  binary.name = "fake";
  binary.target = "x86-64-linux-sse41-strict_float";
  binary.chunk_elements = chunk;
  binary.phase_functions = std::move(functions);
  binary.shared_object = fake_object(path);
  return binary;
}

// One step of `kernel` on one element: param 1, grad 1, lr 0.5.
float one_step(std::shared_ptr<const CompiledKernel> kernel) {
  Optimizer optimizer(std::move(kernel), {{"lr", 0.5}}, 1);
  optimizer.add_tensor(1);
  optimizer.param(0)[0] = 1.0f;
  optimizer.grad(0)[0] = 1.0f;
  optimizer.step();
  return optimizer.param(0)[0];
}

// Runs both kernels over the same group for a few steps and compares the parameters.
void expect_same_results(std::shared_ptr<const CompiledKernel> a,
                         std::shared_ptr<const CompiledKernel> b,
                         const std::vector<int64_t>& sizes) {
  Optimizer first(std::move(a), {{"lr", 0.3}}, 2);
  Optimizer second(std::move(b), {{"lr", 0.3}}, 1);
  for (size_t i = 0; i < sizes.size(); ++i) {
    for (Optimizer* o : {&first, &second}) {
      o->add_tensor(sizes[i]);
      auto p = random_values(static_cast<size_t>(sizes[i]), test::seed_of(i, 0));
      std::copy(p.begin(), p.end(), o->param(i).begin());
    }
  }
  for (int64_t t = 1; t <= 3; ++t) {
    for (size_t i = 0; i < sizes.size(); ++i) {
      auto g = random_values(static_cast<size_t>(sizes[i]), test::seed_of(i, t));
      std::copy(g.begin(), g.end(), first.grad(i).begin());
      std::copy(g.begin(), g.end(), second.grad(i).begin());
    }
    first.step();
    second.step();
    for (size_t i = 0; i < sizes.size(); ++i) {
      EXPECT_TRUE(same_bits(first.param(i), second.param(i))) << "tensor " << i << ", step " << t;
    }
  }
}

TEST(InterpreterKernel, DescribesItself) {
  auto kernel = make_interpreter_kernel(test::compile_kernel("adam"), 4096);
  EXPECT_EQ(kernel->backend, "interp");
  EXPECT_EQ(kernel->chunk_elements, 4096);
  EXPECT_EQ(kernel->name, "adam_amsgrad0_maximize0_interp_c4096");
  EXPECT_EQ(kernel->phases.size(), kernel->ir.phases.size());
  EXPECT_THROW(make_interpreter_kernel(test::compile_kernel("adam"), 0), UserError);
}

TEST(CpuTarget, AcceptsThisMachineAndRefusesOthers) {
  EXPECT_NO_THROW(check_cpu_target("host"));
  EXPECT_NO_THROW(check_cpu_target("x86-64-linux"));
  EXPECT_NO_THROW(check_cpu_target("x86-64-linux-sse41-strict_float-no_runtime"));
  try {
    check_cpu_target("arm-64-linux");
    FAIL() << "no EnvironmentError";
  } catch (const EnvironmentError& e) {
    EXPECT_NE(std::string(e.what()).find("arm-64-linux"), std::string::npos) << e.what();
  }
  EXPECT_THROW(check_cpu_target("x86-64-windows-avx"), EnvironmentError);
  // Knights Landing's AVX-512 subsets exist on no current CPU.
  try {
    check_cpu_target("x86-64-linux-avx512_knl");
    FAIL() << "no EnvironmentError";
  } catch (const EnvironmentError& e) {
    EXPECT_NE(std::string(e.what()).find("avx512pf"), std::string::npos) << e.what();
  }
  if (!__builtin_cpu_supports("avx512f")) {
    EXPECT_THROW(check_cpu_target("x86-64-linux-avx512"), EnvironmentError);
  }
}

TEST(CpuLoader, FakeKernelMatchesTheInterpreter) {
  ir::Kernel k = kernel_from_text(kSingleRule);
  ASSERT_EQ(k.phases.size(), 1u);
  ASSERT_EQ(ir::phase_scalar_inputs(k.phases[0]), std::vector<std::string>{"lr"})
      << ir::print_kernel(k);
  auto cpu = load_cpu_kernel(k, fake_binary({"fake_single_argv"}));
  EXPECT_EQ(cpu->backend, "cpu");
  EXPECT_EQ(cpu->name, "fake");
  EXPECT_EQ(cpu->chunk_elements, 100);
  expect_same_results(cpu, make_interpreter_kernel(k, 100), {1, 99, 100, 101, 250, 1000});
}

TEST(CpuLoader, FakeKernelWithAReduction) {
  ir::Kernel k = kernel_from_text(kNormRule);
  ASSERT_EQ(k.phases.size(), 2u) << ir::print_kernel(k);
  ASSERT_EQ(k.phases[0].reductions.size(), 1u) << ir::print_kernel(k);
  ASSERT_TRUE(ir::phase_scalar_inputs(k.phases[0]).empty()) << ir::print_kernel(k);
  ASSERT_EQ(ir::phase_scalar_inputs(k.phases[1]).size(), 1u) << ir::print_kernel(k);
  auto cpu = load_cpu_kernel(k, fake_binary({"fake_norm0_argv", "fake_norm1_argv"}, 64));
  expect_same_results(cpu, make_interpreter_kernel(k, 64), {1, 63, 64, 65, 1000});
}

TEST(CpuLoader, ReportsKernelErrorsWithTheHalideMessage) {
  ir::Kernel k = kernel_from_text(kSingleRule);
  Optimizer optimizer(load_cpu_kernel(k, fake_binary({"fake_single_argv"})), {}, 1);
  optimizer.add_tensor(13);
  try {
    optimizer.step();
    FAIL() << "no InternalError";
  } catch (const InternalError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("fake_single_argv"), std::string::npos) << message;
    EXPECT_NE(message.find("-42"), std::string::npos) << message;
    EXPECT_NE(message.find("fake failure at 13 elements"), std::string::npos) << message;
  }
}

TEST(CpuLoader, StaysLoadedWhileTheKernelLives) {
  ir::Kernel k = kernel_from_text(kSingleRule);
  std::shared_ptr<const CompiledKernel> cpu;
  {
    CpuBinary binary = fake_binary({"fake_single_argv"});
    cpu = load_cpu_kernel(k, binary);
    auto again = load_cpu_kernel(k, binary);  // a second, independent copy
  }
  expect_same_results(cpu, make_interpreter_kernel(k, 100), {300});
}

// The loader finds loaded objects by path; a reused path must never give the old object.
TEST(CpuLoader, DifferentObjectsNeverShareALoad) {
  ir::Kernel k = kernel_from_text(kSingleRule);
  const CpuBinary first = fake_binary({"fake_single_argv"});
  const CpuBinary second = fake_binary({"fake_single_argv"}, 100, FUSEOPT_FAKE_CPU_KERNEL_VARIANT);
  for (int round = 0; round < 3; ++round) {
    // One after the other (the first unloaded before the second loads)...
    EXPECT_EQ(one_step(load_cpu_kernel(k, first)), 0.5f);
    EXPECT_EQ(one_step(load_cpu_kernel(k, second)), 0.0f);
    // ... and side by side.
    auto a = load_cpu_kernel(k, first);
    auto b = load_cpu_kernel(k, second);
    EXPECT_EQ(one_step(b), 0.0f);
    EXPECT_EQ(one_step(a), 0.5f);
  }
}

TEST(CpuLoader, RefusesMismatchedOrDamagedObjects) {
  ir::Kernel k = kernel_from_text(kSingleRule);
  auto expect_error = [&](const CpuBinary& binary, const std::string& part) {
    try {
      load_cpu_kernel(k, binary);
      ADD_FAILURE() << "no UserError; expected one mentioning " << part;
    } catch (const UserError& e) {
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
    }
  };
  expect_error(fake_binary({"fake_missing_argv"}), "has no function 'fake_missing_argv'");
  expect_error(fake_binary({"fake_wrong_argv"}), "takes 3 arguments");
  expect_error(fake_binary({"fake_single_argv", "fake_single_argv"}), "2 phase functions");
  CpuBinary not_elf = fake_binary({"fake_single_argv"});
  not_elf.shared_object = "not an ELF file";
  expect_error(not_elf, "not an ELF file");
  CpuBinary truncated = fake_binary({"fake_single_argv"});
  truncated.shared_object.resize(200);
  expect_error(truncated, "cannot be loaded");
  CpuBinary bad_chunk = fake_binary({"fake_single_argv"});
  bad_chunk.chunk_elements = 0;
  expect_error(bad_chunk, "chunk size");
  CpuBinary foreign = fake_binary({"fake_single_argv"});
  foreign.target = "arm-64-linux";
  EXPECT_THROW(load_cpu_kernel(k, foreign), EnvironmentError);
}

// ---- The interpreter pieces the runtime uses -------------------------------------------

TEST(InterpreterChunks, ChunksGiveTheBitsOfAWholeStep) {
  ir::Kernel k = test::compile_kernel("adam");
  ir::Interpreter interpreter(k);
  const size_t n = 1000;
  std::vector<std::vector<float>> whole(k.buffers.size()), chunked;
  for (size_t b = 0; b < k.buffers.size(); ++b) whole[b] = random_values(n, 10 + b, 0, 1);
  chunked = whole;
  ir::TensorArgs args;
  args.numel = static_cast<int64_t>(n);
  for (auto& b : whole) args.buffers.push_back(b.data());
  std::vector<double> hypers;
  for (const auto& h : k.hypers) hypers.push_back(h.default_value);
  interpreter.step(std::span<ir::TensorArgs>(&args, 1), hypers, 3);

  ir::Interpreter::HostStep host(interpreter);
  host.start(hypers, 3, static_cast<int64_t>(n), {});
  host.run_prologue(0);
  std::vector<double> inputs(ir::phase_scalar_inputs(k.phases[0]).size());
  host.scalar_inputs(0, inputs);
  for (double& x : inputs) x = static_cast<float>(x);  // as kernels receive them
  for (size_t start = 0; start < n;) {
    const size_t count = std::min<size_t>(start % 7 == 0 ? 300 : 129, n - start);
    std::vector<float*> pointers;
    for (auto& b : chunked) pointers.push_back(b.data() + start);
    interpreter.run_phase_chunk(0, static_cast<int64_t>(count), pointers.data(), inputs, nullptr);
    start += count;
  }
  for (size_t b = 0; b < k.buffers.size(); ++b) {
    EXPECT_TRUE(same_bits(whole[b], chunked[b])) << k.buffers[b].name;
  }
}

TEST(InterpreterChunks, EvaluateHostSharesNodes) {
  // 200 doublings of x: a tree of 2^200 leaves, a DAG of 201 nodes.
  ir::Expr e = ir::make_var("x", ir::Type::kF64);
  for (int i = 0; i < 200; ++i) e = ir::make_binary(ir::BinaryOp::kAdd, e, e);
  int lookups = 0;
  const double value = ir::evaluate_host(e, [&](const std::string& name) {
    EXPECT_EQ(name, "x");
    ++lookups;
    return 1.0;
  });
  EXPECT_EQ(value, std::ldexp(1.0, 200));
  EXPECT_EQ(lookups, 1);

  // A long chain needs no deep recursion.
  ir::Expr chain = ir::make_const(0);
  for (int i = 0; i < 5000; ++i) {
    chain = ir::make_binary(ir::BinaryOp::kAdd, chain, ir::make_const(1));
  }
  EXPECT_EQ(ir::evaluate_host(chain, [](const std::string&) { return 0.0; }), 5000.0);

  ir::Expr select = ir::make_select(
      ir::make_binary(ir::BinaryOp::kGt, ir::make_var("a", ir::Type::kF64), ir::make_const(0)),
      ir::make_unary(ir::UnaryOp::kSqrt, ir::make_var("a", ir::Type::kF64)), ir::make_const(-1));
  EXPECT_EQ(ir::evaluate_host(select, [](const std::string&) { return 4.0; }), 2.0);
  EXPECT_EQ(ir::evaluate_host(select, [](const std::string&) { return -4.0; }), -1.0);
}

}  // namespace
}  // namespace fuseopt::runtime

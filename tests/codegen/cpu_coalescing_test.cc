// The CPU backend under the runtime's coalescing: a group whose tensors are adjacent (the
// optimizer's arena, or one caller array) runs as a few long chunks, a group of separately
// allocated tensors chunk by chunk per tensor. The Halide kernels (vector bodies, GuardWithIf
// tails, strict_float) must give the same bits either way, at 1 and 2 threads, for an
// elementwise rule (adam, also equal to the interpreter) and a rule with per-tensor
// reductions (lamb).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "codegen/halide/cpu_codegen.h"
#include "frontend/rule.h"
#include "runtime/cpu_binary.h"
#include "runtime/optimizer.h"
#include "tests/runtime/test_group.h"

namespace fuseopt {
namespace {

ir::Kernel compile_ir(const std::string& rule) {
  frontend::Rule r = frontend::load_rule(rule);
  return r.compile(r.resolve_options({}));
}

std::shared_ptr<const runtime::CompiledKernel> cpu_kernel(const std::string& rule,
                                                          int64_t chunk_elements) {
  const ir::Kernel kernel = compile_ir(rule);
  codegen::CpuSchedule schedule = codegen::default_cpu_schedule();
  schedule.chunk_elements = chunk_elements;
  const codegen::HalideCpuBinary compiled = codegen::compile_cpu_kernel(kernel, schedule);
  runtime::CpuBinary binary;
  binary.name = compiled.name;
  binary.target = compiled.target;
  binary.chunk_elements = compiled.schedule.chunk_elements;
  binary.phase_functions = compiled.phase_functions;
  binary.shared_object = compiled.shared_object;
  return runtime::load_cpu_kernel(kernel, binary);
}

std::vector<float> random_values(size_t n, uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = dist(gen);
  return v;
}

enum class Layout { kArena, kSeparate, kContiguous };

// Steps a group of `sizes` three times; returns every parameter and state, tensor by tensor.
std::vector<float> run_group(std::shared_ptr<const runtime::CompiledKernel> kernel,
                             const std::vector<int64_t>& sizes, Layout layout, int threads) {
  Optimizer optimizer(kernel, {}, threads);
  std::vector<std::vector<float>> separate;
  separate.reserve(2 * sizes.size());  // references into it stay valid while adding
  int64_t total = 0;
  for (int64_t n : sizes) total += n;
  std::vector<float> params(layout == Layout::kContiguous ? static_cast<size_t>(total) : 0);
  std::vector<float> grads(params.size());
  std::vector<float*> grad_of;
  int64_t offset = 0;
  for (size_t i = 0; i < sizes.size(); ++i) {
    const std::vector<float> init = random_values(static_cast<size_t>(sizes[i]), 17 * i + 1);
    if (layout == Layout::kArena) {
      optimizer.add_tensor(sizes[i]);
      std::copy(init.begin(), init.end(), optimizer.param(i).begin());
      grad_of.push_back(optimizer.grad(i).data());
    } else if (layout == Layout::kSeparate) {
      std::vector<float>& p = separate.emplace_back(init);
      std::vector<float>& g = separate.emplace_back(init.size());
      optimizer.add_tensor(p.data(), g.data(), sizes[i]);
      grad_of.push_back(g.data());
    } else {
      std::copy(init.begin(), init.end(), params.begin() + offset);
      optimizer.add_tensor(params.data() + offset, grads.data() + offset, sizes[i]);
      grad_of.push_back(grads.data() + offset);
    }
    offset += sizes[i];
  }
  for (uint32_t t = 1; t <= 3; ++t) {
    for (size_t i = 0; i < sizes.size(); ++i) {
      const std::vector<float> g = random_values(static_cast<size_t>(sizes[i]), 1000 * t + i);
      std::copy(g.begin(), g.end(), grad_of[i]);
    }
    optimizer.step();
  }
  return test::everything_of(optimizer);
}

size_t first_difference(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::memcmp(&a[i], &b[i], sizeof(float)) != 0) return i;
  }
  return a.size();
}

// Odd sizes put elements in vector tails when alone and in vector bodies when coalesced.
const std::vector<int64_t> kSizes = {256, 256, 100, 100, 100, 3, 3, 1000, 1000, 37,
                                     37,  5000, 1,  256, 256, 7,  7, 7};

TEST(CpuCoalescing, LayoutsAndThreadsGiveTheSameBits) {
  for (const char* rule : {"adam", "lamb"}) {
    auto kernel = cpu_kernel(rule, 1000);
    const std::vector<float> reference = run_group(kernel, kSizes, Layout::kSeparate, 1);
    for (Layout layout : {Layout::kArena, Layout::kContiguous, Layout::kSeparate}) {
      for (int threads : {1, 2}) {
        const std::vector<float> got = run_group(kernel, kSizes, layout, threads);
        EXPECT_EQ(first_difference(got, reference), reference.size())
            << rule << ", layout " << static_cast<int>(layout) << ", " << threads << " threads";
      }
    }
    if (std::string(rule) == "adam") {
      // Elementwise and strict_float: the interpreter's bits, coalesced or not.
      auto interpreter = runtime::make_interpreter_kernel(compile_ir(rule), 1000);
      EXPECT_EQ(first_difference(run_group(interpreter, kSizes, Layout::kArena, 2), reference),
                reference.size());
    }
  }
}

}  // namespace
}  // namespace fuseopt

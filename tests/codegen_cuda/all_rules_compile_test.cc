// Every built-in rule and combination of its options compiles with NVRTC to sm_80 and sm_90
// cubins (plus PTX), with no register spills, at the default launch shape. Compilations run
// on every core; the NVRTC times are printed for the record. Each rule also compiles with loss
// scaling and gradient clipping. Label `slow`.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "codegen/cuda/cuda_codegen.h"
#include "codegen/cuda/nvrtc_compiler.h"
#include "frontend/rule.h"
#include "ir/grad_transform.h"
#include "rules/builtin_rules.h"
#include "support/error.h"

namespace fuseopt::codegen {
namespace {

TEST(AllRulesCompile, EveryRuleAndOptionCombinationToSm80AndSm90WithoutSpills) {
  try {
    NvrtcCompiler::get();
  } catch (const EnvironmentError& e) {
    GTEST_SKIP() << "no NVRTC on this machine: " << e.what();
  }
  struct Job {
    ir::Kernel kernel;
    std::string arch;
  };
  std::vector<Job> jobs;
  for (const rules::BuiltinRule& builtin : rules::builtin_rules()) {
    const frontend::Rule rule = frontend::load_rule(builtin.name);
    for (const auto& options : rule.option_combinations()) {
      ir::Kernel kernel = rule.compile(options);
      jobs.push_back({kernel, "sm_80"});
      jobs.push_back({std::move(kernel), "sm_90"});
    }
    // With loss scaling and clipping (ir/grad_transform.h): a statistics phase first and
    // the hidden factor hypers.
    ir::Kernel transformed = rule.compile(rule.resolve_options());
    ir::apply_grad_transform(transformed, {true, true});
    jobs.push_back({std::move(transformed), "sm_90"});
  }
  ASSERT_GE(jobs.size(), 200u);

  std::mutex mutex;
  std::vector<std::string> failures;
  std::vector<double> seconds;
  int max_registers = 0;
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t i = next++; i < jobs.size(); i = next++) {
      const Job& job = jobs[i];
      std::string failure;
      try {
        const CudaBinary binary =
            compile_cuda_kernel(job.kernel, CudaLaunchShape{}, job.arch, CudaCompileCache::kNone);
        if (binary.cubin.substr(0, 4) != "\x7f" "ELF") failure = "no cubin";
        if (binary.ptx.find(".version") == std::string::npos) failure += " no PTX";
        if (binary.spill_bytes != 0) {
          failure += " spills " + std::to_string(binary.spill_bytes) + " bytes:\n" + binary.log;
        }
        std::lock_guard<std::mutex> lock(mutex);
        seconds.push_back(binary.compile_seconds);
        for (int r : binary.registers) max_registers = std::max(max_registers, r);
      } catch (const std::exception& e) {
        failure = e.what();
      }
      if (!failure.empty()) {
        std::lock_guard<std::mutex> lock(mutex);
        failures.push_back(job.kernel.config_name() + " " + job.arch + ": " + failure);
      }
    }
  };
  const unsigned threads = std::max(1u, std::min(16u, std::thread::hardware_concurrency()));
  std::vector<std::thread> pool;
  for (unsigned t = 0; t < threads; ++t) pool.emplace_back(work);
  for (std::thread& thread : pool) thread.join();

  for (const std::string& failure : failures) ADD_FAILURE() << failure;
  ASSERT_EQ(seconds.size(), jobs.size());
  std::sort(seconds.begin(), seconds.end());
  double total = 0;
  for (double s : seconds) total += s;
  std::printf("NVRTC: %zu compilations on %u threads, per kernel mean %.3f s, median %.3f s, "
              "max %.3f s; at most %d registers\n",
              seconds.size(), threads, total / static_cast<double>(seconds.size()),
              seconds[seconds.size() / 2], seconds.back(), max_registers);
}

}  // namespace
}  // namespace fuseopt::codegen

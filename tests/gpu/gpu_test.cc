// GPU tests (ctest label `gpu`; they skip without a GPU): every built-in rule and option
// combination compiled by NVRTC for this device and run through runtime/cuda against the
// interpreter, on groups of many tensors of mixed sizes (1 ... 1000003, around the chunk
// size), misaligned views and an aliased gradient; bitwise-identical repeated runs and grids;
// other launch shapes; the PTX fallback.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <mutex>
#include <thread>

#include "codegen/cuda/cuda_codegen.h"
#include "frontend/rule.h"
#include "rules/builtin_rules.h"
#include "runtime/cuda/cuda_driver.h"
#include "runtime/cuda/cuda_kernel.h"
#include "support/error.h"
#include "tests/codegen_cuda/every_op_kernel.h"
#include "tests/gpu/device_checks.h"
#include "tests/gpu/group_stepper.h"

namespace fuseopt::gpu_testing {
namespace {

class Gpu : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string reason = runtime::CudaDriver::unavailable_reason();
    if (!reason.empty()) GTEST_SKIP() << "no GPU: " << reason;
  }
  static const runtime::CudaDriver& driver() { return runtime::CudaDriver::get(); }
  static std::string arch() {
    const runtime::CudaDeviceInfo& info = driver().device();
    return codegen::cuda_arch_for_device(info.sm_major, info.sm_minor);
  }
};

struct Compiled {
  ir::Kernel kernel;
  codegen::CudaBinary binary;
};

// Every built-in rule and option combination at the default shape, compiled once per
// process on every core.
const std::vector<Compiled>& every_rule(const std::string& arch) {
  static std::vector<Compiled> compiled;
  static std::once_flag once;
  std::call_once(once, [&arch] {
    for (const rules::BuiltinRule& builtin : rules::builtin_rules()) {
      const frontend::Rule rule = frontend::load_rule(builtin.name);
      for (const auto& options : rule.option_combinations()) {
        compiled.push_back({rule.compile(options), {}});
      }
    }
    std::atomic<size_t> next{0};
    std::mutex mutex;
    std::string error;
    auto work = [&] {
      for (size_t i = next++; i < compiled.size(); i = next++) {
        try {
          compiled[i].binary =
              codegen::compile_cuda_kernel(compiled[i].kernel, codegen::CudaLaunchShape{}, arch);
        } catch (const std::exception& e) {
          std::lock_guard<std::mutex> lock(mutex);
          error += compiled[i].kernel.config_name() + ": " + e.what() + "\n";
        }
      }
    };
    std::vector<std::thread> pool;
    const unsigned threads = std::max(1u, std::thread::hardware_concurrency());
    for (unsigned t = 0; t < threads; ++t) pool.emplace_back(work);
    for (std::thread& thread : pool) thread.join();
    if (!error.empty()) throw InternalError("compiling every rule failed:\n" + error);
  });
  return compiled;
}

TEST_F(Gpu, DeviceAndArchitecture) {
  const runtime::CudaDeviceInfo& info = driver().device();
  std::printf("device %s (%s, %d SMs, %.1f GiB), driver %d, compiling for %s with %s\n",
              info.name.c_str(), info.arch().c_str(), info.sm_count,
              static_cast<double>(info.total_memory) / (1 << 30), info.driver_version,
              arch().c_str(), codegen::nvrtc_version().c_str());
  EXPECT_GE(info.sm_major, 7);
  EXPECT_GT(info.sm_count, 0);
}

TEST_F(Gpu, EveryRuleAndOptionCombinationMatchesTheInterpreter) {
  const int64_t chunk = codegen::CudaLaunchShape{}.chunk_elements;
  uint32_t seed = 11;
  for (const Compiled& c : every_rule(arch())) {
    SCOPED_TRACE(c.binary.name);
    EXPECT_EQ(c.binary.spill_bytes, 0);
    const auto kernel = runtime::load_cuda_kernel(c.kernel, view_of(c.binary));
    const GroupSpec spec = mixed_group(chunk, true, 200, seed);
    EXPECT_EQ(compare_with_interpreter(driver(), *kernel, spec, 3, seed), "");
    ++seed;
  }
}

TEST_F(Gpu, GradientAliasingTheParameter) {
  for (const Compiled& c : every_rule(arch())) {
    if (c.kernel.rule != "sgd" && c.kernel.rule != "adam") continue;
    SCOPED_TRACE(c.binary.name);
    const auto kernel = runtime::load_cuda_kernel(c.kernel, view_of(c.binary));
    GroupSpec spec = mixed_group(c.binary.shape.chunk_elements, false, 20, 5);
    spec.grad_aliases_param = true;
    EXPECT_EQ(compare_with_interpreter(driver(), *kernel, spec, 2, 5), "");
  }
}

TEST_F(Gpu, RepeatedRunsAndOtherGridsAreBitwiseIdentical) {
  for (const Compiled& c : every_rule(arch())) {
    SCOPED_TRACE(c.binary.name);
    const auto kernel = runtime::load_cuda_kernel(c.kernel, view_of(c.binary));
    runtime::CudaBinaryView one_block = view_of(c.binary);
    one_block.grid_limit = 1;
    const auto other = runtime::load_cuda_kernel(c.kernel, one_block);
    const GroupSpec spec = mixed_group(c.binary.shape.chunk_elements, false, 30, 3);
    EXPECT_EQ(compare_repeated_runs(driver(), *kernel, *other, spec, 2, 3), "");
  }
}

TEST_F(Gpu, OtherLaunchShapes) {
  std::vector<codegen::CudaLaunchShape> shapes;
  for (int block : {128, 256, 1024}) {
    for (int width : {1, 2, 4}) {
      codegen::CudaLaunchShape shape;
      shape.block_size = block;
      shape.vector_width = width;
      shape.elements_per_thread = 4;
      shape.chunk_elements = 4096 * width;
      shapes.push_back(shape);
    }
  }
  for (const char* name : {"adam", "lamb", "lion"}) {
    const frontend::Rule rule = frontend::load_rule(name);
    const ir::Kernel kernel = rule.compile(rule.resolve_options());
    for (const codegen::CudaLaunchShape& shape : shapes) {
      const codegen::CudaBinary binary = codegen::compile_cuda_kernel(kernel, shape, arch());
      SCOPED_TRACE(binary.name);
      const auto loaded = runtime::load_cuda_kernel(kernel, view_of(binary));
      const GroupSpec spec = mixed_group(shape.chunk_elements, false, 30, 8);
      EXPECT_EQ(compare_with_interpreter(driver(), *loaded, spec, 2, 8), "");
    }
  }
}

// exp, log and pow on the device are CUDA's (within a few ulps of the host's).
TEST_F(Gpu, EveryOpKernel) {
  const ir::Kernel kernel = codegen::test::every_op_kernel();
  const codegen::CudaBinary binary = codegen::compile_cuda_kernel(kernel, {}, arch());
  const auto loaded = runtime::load_cuda_kernel(kernel, view_of(binary));
  EXPECT_EQ(compare_with_interpreter(driver(), *loaded, mixed_group(65536, true, 20, 2), 2, 2), "");
}

TEST_F(Gpu, PtxFallbackGivesTheSameBits) {
  const frontend::Rule rule = frontend::load_rule("lamb");
  const ir::Kernel kernel = rule.compile(rule.resolve_options());
  const codegen::CudaBinary binary = codegen::compile_cuda_kernel(kernel, {}, arch());
  runtime::CudaBinaryView ptx_only = view_of(binary);
  ptx_only.cubin = {};
  const auto from_cubin = runtime::load_cuda_kernel(kernel, view_of(binary));
  const auto from_ptx = runtime::load_cuda_kernel(kernel, ptx_only);
  EXPECT_EQ(compare_repeated_runs(driver(), *from_cubin, *from_ptx,
                                  mixed_group(65536, false, 20, 6), 2, 6),
            "");
}

TEST_F(Gpu, DriverErrorsAreReportedByName) {
  const frontend::Rule rule = frontend::load_rule("sgd");
  const ir::Kernel kernel = rule.compile(rule.resolve_options());
  const codegen::CudaBinary binary = codegen::compile_cuda_kernel(kernel, {}, arch());
  runtime::CudaBinaryView view = view_of(binary);
  view.phase_functions = {"fuseopt_no_such_function"};
  try {
    runtime::load_cuda_kernel(kernel, view);
    FAIL() << "loaded a missing function";
  } catch (const InternalError& e) {
    EXPECT_NE(std::string(e.what()).find("CUDA_ERROR_NOT_FOUND"), std::string::npos) << e.what();
  }
}

TEST_F(Gpu, CopyBandwidth) {
  const double bandwidth = runtime::measure_copy_bandwidth(driver(), size_t{256} << 20, 5);
  std::printf("device-to-device copy: %.0f GB/s\n", bandwidth / 1e9);
  EXPECT_GT(bandwidth, 1e10);
}

}  // namespace
}  // namespace fuseopt::gpu_testing

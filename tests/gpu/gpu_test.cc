// GPU tests (ctest label `gpu`; they skip without a GPU): every built-in rule and option
// combination compiled by NVRTC for this device and run through runtime/cuda against the
// interpreter, on groups of many tensors of mixed sizes (1 ... 1000003, around the chunk
// size), misaligned views and an aliased gradient; bitwise-identical repeated runs and grids;
// other launch shapes; the PTX fallback; the Optimizer on device tensors through the API;
// bf16 and f16 storage (round to nearest even and stochastic) through the Optimizer against
// the interpreter backend, bit for bit, and stochastic rounding that depends only on the seed.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <functional>
#include <map>
#include <mutex>
#include <thread>

#include "api/fuseopt.h"
#include "codegen/cuda/cuda_codegen.h"
#include "frontend/rule.h"
#include "rules/builtin_rules.h"
#include "runtime/cuda/cuda_driver.h"
#include "runtime/cuda/cuda_kernel.h"
#include "support/error.h"
#include "tests/codegen_cuda/every_op_kernel.h"
#include "tests/gpu/decision_checks.h"
#include "tests/gpu/device_checks.h"
#include "tests/gpu/group_stepper.h"
#include "tests/gpu/storage_checks.h"
#include "tests/runtime/test_group.h"

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

// The Optimizer with the API's cuda kernels: device tensors it allocates and device tensors
// the caller owns, states initialised on the device, against the interpreter backend cut
// into the same chunks; save on the GPU and load on the host.
TEST_F(Gpu, OptimizerStepsDeviceTensorsThroughTheApi) {
  EXPECT_EQ(cuda_unavailable_reason(), "");
  EXPECT_EQ(resolve_backend(Backend::kAuto), Backend::kCuda);
  const std::string state_file =
      ::testing::TempDir() + "fuseopt-gpu-optimizer-" + std::to_string(::getpid());
  for (const char* rule : {"adam", "adagrad", "nadam", "lamb", "adadelta"}) {
    SCOPED_TRACE(rule);
    CompileOptions cuda;
    cuda.backend = Backend::kCuda;
    const auto kernel = compile_rule(rule, cuda);
    ASSERT_TRUE(kernel->device_memory);
    ASSERT_NE(kernel->device, nullptr);
    EXPECT_EQ(kernel->backend, "cuda");
    EXPECT_EQ(compile_rule(rule, cuda).get(), kernel.get());  // kept in the process
    CompileOptions automatic;
    automatic.backend = Backend::kAuto;
    EXPECT_EQ(compile_rule(rule, automatic).get(), kernel.get());
    CompileOptions interp;
    interp.backend = Backend::kInterpreter;
    interp.cpu_schedule.chunk_elements = kernel->chunk_elements;
    const auto reference_kernel = compile_rule(rule, interp);
    const bool exact = !test::has_reductions(kernel->ir);

    const std::vector<int64_t> sizes = {1, 7, 33, 65535, 65537, 300001};
    Optimizer gpu(kernel, {{"lr", 0.01}});
    Optimizer cpu(reference_kernel, {{"lr", 0.01}}, 4);
    std::vector<runtime::CudaBuffer> caller;  // odd tensors: param, grad
    for (size_t i = 0; i < sizes.size(); ++i) {
      const auto p = test::random_values(static_cast<size_t>(sizes[i]), test::seed_of(i, 0, 3));
      const size_t bytes = p.size() * sizeof(float);
      if (i % 2 == 0) {
        gpu.add_tensor(sizes[i]);
        gpu.write_param(i, p);
      } else {
        caller.emplace_back(driver(), bytes);
        caller.emplace_back(driver(), bytes);
        driver().copy_to_device(caller[caller.size() - 2].get(), p.data(), bytes);
        gpu.add_tensor(reinterpret_cast<float*>(caller[caller.size() - 2].get()),
                       reinterpret_cast<const float*>(caller.back().get()), sizes[i]);
      }
      cpu.add_tensor(sizes[i]);
      cpu.write_param(i, p);
    }
    EXPECT_THROW(gpu.param(0), UserError);
    EXPECT_THROW(gpu.state(0, gpu.state_names().front()), UserError);
    auto step = [&](Optimizer& optimizer, int64_t t, bool device) {
      for (size_t i = 0; i < sizes.size(); ++i) {
        const auto g = test::random_values(static_cast<size_t>(sizes[i]), test::seed_of(i, t));
        if (device && i % 2 == 1) {
          const runtime::CudaBuffer& grad = caller[(i / 2) * 2 + 1];
          driver().copy_to_device(grad.get(), g.data(), g.size() * sizeof(float));
        } else {
          optimizer.write_grad(i, g);
        }
      }
      optimizer.step();
    };
    auto compare = [&](const Optimizer& a, const Optimizer& b, const std::string& when) {
      for (size_t i = 0; i < sizes.size(); ++i) {
        auto check = [&](const std::vector<float>& x, const std::vector<float>& y,
                         const std::string& what) {
          if (exact) {
            EXPECT_TRUE(test::same_bits(x, y)) << when << ", tensor " << i << ", " << what;
          } else {
            EXPECT_TRUE(test::close_values(x, y, 1e-5)) << when << ", tensor " << i << ", " << what;
          }
        };
        check(a.read_param(i), b.read_param(i), "param");
        for (const std::string& s : a.state_names()) {
          check(a.read_state(i, s), b.read_state(i, s), "state " + s);
        }
      }
    };
    for (int64_t t = 1; t <= 3; ++t) {
      step(gpu, t, true);
      step(cpu, t, false);
    }
    gpu.synchronize();
    compare(gpu, cpu, "after 3 steps");

    // Saved on the GPU, loaded on the host: both go on alike.
    gpu.save(state_file);
    Optimizer restored(reference_kernel, {}, 4);
    for (size_t i = 0; i < sizes.size(); ++i) {
      restored.add_tensor(sizes[i]);
      restored.write_param(i, gpu.read_param(i));
    }
    restored.load(state_file);
    step(gpu, 4, true);
    step(restored, 4, false);
    compare(gpu, restored, "after a save on the GPU and a load on the host");
  }
  std::remove(state_file.c_str());
}

// ---- bf16 and f16 storage ----------------------------------------------------------------

struct StorageKernels {
  StorageVariant variant;
  std::shared_ptr<const runtime::CompiledKernel> cuda;
  std::shared_ptr<const runtime::CompiledKernel> interp;
};

CompileOptions storage_options(const StorageVariant& variant, Backend backend,
                               const codegen::CudaLaunchShape& shape) {
  CompileOptions options;
  options.backend = backend;
  options.options = variant.options;
  options.storage = variant.storage;
  options.cuda_shape = shape;
  // The interpreter cut into the cuda kernel's chunks: reductions combine the same ranges.
  options.cpu_schedule.chunk_elements = shape.chunk_elements;
  return options;
}

// Every storage variant through compile_rule: cuda (NVRTC, on every core at once) and interp.
const std::vector<StorageKernels>& storage_kernels() {
  static std::vector<StorageKernels> kernels;
  static std::once_flag once;
  std::call_once(once, [] {
    for (const StorageVariant& variant : storage_variants()) kernels.push_back({variant, {}, {}});
    std::atomic<size_t> next{0};
    std::mutex mutex;
    std::string error;
    auto work = [&] {
      for (size_t i = next++; i < kernels.size(); i = next++) {
        try {
          const StorageVariant& v = kernels[i].variant;
          kernels[i].cuda = compile_rule(v.rule, storage_options(v, Backend::kCuda, {}));
          kernels[i].interp = compile_rule(v.rule, storage_options(v, Backend::kInterpreter, {}));
        } catch (const std::exception& e) {
          std::lock_guard<std::mutex> lock(mutex);
          error += kernels[i].variant.label + ": " + e.what() + "\n";
        }
      }
    };
    std::vector<std::thread> pool;
    const unsigned threads = std::max(1u, std::thread::hardware_concurrency());
    for (unsigned t = 0; t < threads; ++t) pool.emplace_back(work);
    for (std::thread& thread : pool) thread.join();
    if (!error.empty()) throw InternalError("compiling the storage variants failed:\n" + error);
  });
  return kernels;
}

// Loss scaling and clipping decided on the device (Optimizer::set_decide_on_device): steps
// that clip, skip for an inf gradient or a device found_inf and read a device grad_scale,
// against the interpreter deciding on the host, bit for bit (tests/gpu/decision_checks.h).
TEST_F(Gpu, GradientTransformDecidedOnTheDevice) {
  struct Case {
    const char* rule;
    bool loss_scaling;
    bool clip_grad_norm;
    std::map<std::string, std::string> storage;
  };
  const std::vector<Case> cases = {
      {"adam", true, true, {}},
      {"adam", true, false, {}},
      {"sgd", false, true, {}},
      {"adamw", true, true, {{"param", "bf16 stochastic"}, {"exp_avg", "bf16"}}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(std::string(c.rule) + (c.loss_scaling ? " loss scaling" : "") +
                 (c.clip_grad_norm ? " clipping" : "") + (c.storage.empty() ? "" : " bf16"));
    CompileOptions cuda;
    cuda.backend = Backend::kCuda;
    cuda.loss_scaling = c.loss_scaling;
    cuda.clip_grad_norm = c.clip_grad_norm;
    cuda.storage = c.storage;
    const auto kernel = compile_rule(c.rule, cuda);
    ASSERT_TRUE(kernel->decides_on_device);
    CompileOptions interp = cuda;
    interp.backend = Backend::kInterpreter;
    interp.cpu_schedule.chunk_elements = kernel->chunk_elements;
    EXPECT_EQ(compare_device_decision(kernel, compile_rule(c.rule, interp), driver(),
                                      {1, 33, 65537, 300001, 1000003},
                                      [](const std::function<void()>& step, bool) { step(); }),
              "");
  }
}

// adam, adamw, lion, sgd with momentum, lamb (reductions) and adagrad with bf16 and f16
// params, grads and states, rounded to nearest and stochastically: the Optimizer on the GPU
// (optimizer-owned tensors adjacent in their arenas, so odd sizes start two-byte buffers at
// every alignment, and caller-owned tensors one element past an allocation) against the
// interpreter backend, over tensors of 1 ... 1000003 elements and around the chunk size.
TEST_F(Gpu, TwoByteStorageMatchesTheInterpreter) {
  uint32_t seed = 21;
  for (const StorageKernels& kernels : storage_kernels()) {
    SCOPED_TRACE(kernels.variant.label);
    ASSERT_EQ(kernels.cuda->backend, "cuda");
    const GroupSpec spec = mixed_group(kernels.cuda->chunk_elements, true, 12, seed);
    EXPECT_EQ(compare_optimizers(kernels.cuda, kernels.interp, spec, 3, seed), "");
    ++seed;
  }
}

// The vector path at widths 2 (4-byte ushort2 loads) and 1, small chunks.
TEST_F(Gpu, TwoByteStorageAtOtherLaunchShapes) {
  const std::vector<StorageVariant> variants = storage_variants();
  for (const codegen::CudaLaunchShape& shape :
       {codegen::CudaLaunchShape{256, 8, 2, 0, 1000}, codegen::CudaLaunchShape{128, 2, 1, 0, 96},
        codegen::CudaLaunchShape{1024, 16, 4, 3, 4096}}) {
    for (const StorageVariant& variant : variants) {
      if (variant.label != "adam all=bf16 param stochastic" &&
          variant.label != "lamb all=bf16 param stochastic") {
        continue;
      }
      SCOPED_TRACE(variant.label + " " + shape.spelling());
      const auto cuda = compile_rule(variant.rule, storage_options(variant, Backend::kCuda, shape));
      const auto interp =
          compile_rule(variant.rule, storage_options(variant, Backend::kInterpreter, shape));
      const GroupSpec spec = mixed_group(shape.chunk_elements, false, 12, 5);
      EXPECT_EQ(compare_optimizers(cuda, interp, spec, 3, 5), "");
    }
  }
}

// Stochastic rounding on the device: the same seed gives the same bits, another seed others.
TEST_F(Gpu, StochasticRoundingDependsOnlyOnTheSeed) {
  int checked = 0;
  for (const StorageKernels& kernels : storage_kernels()) {
    if (!kernels.cuda->ir.has_stochastic_store()) continue;
    SCOPED_TRACE(kernels.variant.label);
    GroupSpec spec;
    spec.numels = {1, 77, 65537, 1000003};
    EXPECT_EQ(compare_stochastic_seeds(kernels.cuda, spec, 2, 8), "");
    ++checked;
  }
  EXPECT_GE(checked, 18);
}

// DeviceMemory::fill with two-byte elements (cuMemsetD16): what the Optimizer initialises
// bf16 states with.
TEST_F(Gpu, FillsTwoByteElements) {
  const auto memory = runtime::make_cuda_device_memory(driver());
  const size_t count = 1001;
  void* p = memory->allocate((count + 1) * 2);
  memory->fill(p, 0xffffffffu, 2, count + 1);
  memory->fill(static_cast<char*>(p) + 2, 0x12343f80u, 2, count - 1);  // bf16 1.0
  std::vector<uint16_t> back(count + 1);
  memory->copy_to_host(back.data(), p, back.size() * 2);
  memory->free(p);
  EXPECT_EQ(back[0], 0xffffu);
  for (size_t i = 1; i < count; ++i) ASSERT_EQ(back[i], 0x3f80u) << i;
  EXPECT_EQ(back[count], 0xffffu);
}

}  // namespace
}  // namespace fuseopt::gpu_testing

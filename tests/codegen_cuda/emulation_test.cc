// The generated CUDA C of every built-in rule and option combination, run on the CPU through
// the real loader (runtime/cuda/cuda_kernel.h) on an emulated device, against the
// interpreter: many tensors of mixed sizes around the vector, tile and chunk widths,
// misaligned views, an aliased gradient, repeated runs and other grids. The same checks run
// on a GPU in tests/gpu.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "codegen/cuda/cuda_source.h"
#include "frontend/rule.h"
#include "ir/grad_transform.h"
#include "runtime/cuda/cuda_kernel.h"
#include "runtime/cuda/tensor_table.h"
#include "support/error.h"
#include "tests/codegen_cuda/cuda_emulation.h"
#include "tests/codegen_cuda/every_op_kernel.h"
#include "tests/gpu/device_checks.h"
#include "tests/gpu/group_stepper.h"
#include "tests/gpu/storage_checks.h"

namespace fuseopt::emulation {
namespace {

TEST(Emulation, KernelsWereBuiltFromTheCurrentGenerator) {
  ASSERT_GE(emulated_kernels().size(), 120u);
  for (const EmulatedKernel& emulated : emulated_kernels()) {
    const Loaded loaded = prepare(emulated);
    EXPECT_EQ(loaded.source.text, emulated.source) << loaded.view.name << " is stale: rebuild";
  }
}

TEST(Emulation, EveryKernelMatchesTheInterpreter) {
  EmulatedDevice device;
  uint32_t seed = 1;
  for (const EmulatedKernel& emulated : emulated_kernels()) {
    // Two-byte storage: storage_emulation_test.cc, through the Optimizer.
    if (!emulated.storage.empty()) continue;
    const auto start = std::chrono::steady_clock::now();
    const Loaded loaded = prepare(emulated);
    SCOPED_TRACE(loaded.view.name);
    const auto compiled = runtime::load_cuda_kernel(loaded.kernel, loaded.view, device);
    EXPECT_EQ(compiled->backend, "cuda");
    EXPECT_TRUE(compiled->device_memory);
    const gpu_testing::GroupSpec spec =
        gpu_testing::mixed_group(emulated.chunk_elements, false, 12, seed);
    const std::string failures = gpu_testing::compare_with_interpreter(device, *compiled, spec, 3, seed);
    EXPECT_EQ(failures, "");
    if (std::getenv("FUSEOPT_EMULATION_TIMES")) std::printf("%s %.3f s\n", loaded.view.name.c_str(), std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    ++seed;
  }
  EXPECT_EQ(device.allocated.load(), 0u) << "device memory leaked";
}

TEST(Emulation, GradientAliasingTheParameter) {
  EmulatedDevice device;
  int checked = 0;
  for (const EmulatedKernel& emulated : emulated_kernels()) {
    if ((emulated.rule != "sgd" && emulated.rule != "adam") || !emulated.storage.empty()) continue;
    const Loaded loaded = prepare(emulated);
    SCOPED_TRACE(loaded.view.name);
    const auto compiled = runtime::load_cuda_kernel(loaded.kernel, loaded.view, device);
    gpu_testing::GroupSpec spec = gpu_testing::mixed_group(emulated.chunk_elements, false, 4, 9);
    spec.grad_aliases_param = true;
    EXPECT_EQ(gpu_testing::compare_with_interpreter(device, *compiled, spec, 2, 9), "");
    ++checked;
  }
  EXPECT_GE(checked, 8);
}

TEST(Emulation, RepeatedRunsAndOtherGridsGiveTheSameBits) {
  EmulatedDevice device(3, 2);
  int checked = 0;
  for (const EmulatedKernel& emulated : emulated_kernels()) {
    if ((emulated.rule != "lamb" && emulated.rule != "every_op" && emulated.rule != "lars") ||
        !emulated.storage.empty()) {
      continue;
    }
    const Loaded loaded = prepare(emulated);
    SCOPED_TRACE(loaded.view.name);
    const auto compiled = runtime::load_cuda_kernel(loaded.kernel, loaded.view, device);
    runtime::CudaBinaryView one_block = loaded.view;
    one_block.grid_limit = 1;
    const auto other = runtime::load_cuda_kernel(loaded.kernel, one_block, device);
    const gpu_testing::GroupSpec spec = gpu_testing::mixed_group(emulated.chunk_elements, false, 6, 4);
    EXPECT_EQ(gpu_testing::compare_repeated_runs(device, *compiled, *other, spec, 2, 4), "");
    if (++checked == 12) break;
  }
  EXPECT_GE(checked, 12);
}

const EmulatedKernel& find(const std::string& rule, int block_size) {
  for (const EmulatedKernel& emulated : emulated_kernels()) {
    if (emulated.rule == rule && emulated.block_size == block_size && emulated.storage.empty()) {
      return emulated;
    }
  }
  throw std::runtime_error("no emulated " + rule);
}

// The table goes up once per group version; the scalars every phase, one row when all rows
// are equal.
TEST(Emulation, TableUploadedOnlyWhenTheGroupChanges) {
  EmulatedDevice device;
  const Loaded loaded = prepare(find("adam", 32));
  const auto compiled = runtime::load_cuda_kernel(loaded.kernel, loaded.view, device);
  gpu_testing::GroupSpec spec;
  spec.numels = {100, 3, 500};
  gpu_testing::DeviceGroup group(device, loaded.kernel, spec, 3);
  gpu_testing::GroupStepper stepper(loaded.kernel, spec.numels);
  const int before = device.uploads.load();
  stepper.step(*compiled, group.device_buffers(), 77, 1);
  EXPECT_EQ(device.uploads.load() - before, 2);  // table + scalars
  stepper.step(*compiled, group.device_buffers(), 77, 2);
  EXPECT_EQ(device.uploads.load() - before, 3);  // scalars
  stepper.step(*compiled, group.device_buffers(), 78, 3);
  EXPECT_EQ(device.uploads.load() - before, 5);  // a new version: table + scalars
  stepper.step(*compiled, group.device_buffers(), 0, 4);
  stepper.step(*compiled, group.device_buffers(), 0, 5);
  EXPECT_EQ(device.uploads.load() - before, 9);  // version 0: every call
  EXPECT_EQ(device.launches.load(), 5);
}

TEST(Emulation, EmptyGroupsLaunchNothing) {
  EmulatedDevice device;
  const Loaded loaded = prepare(find("lamb", 32));
  const auto compiled = runtime::load_cuda_kernel(loaded.kernel, loaded.view, device);
  gpu_testing::GroupSpec spec;
  spec.numels = {0, 0};
  gpu_testing::DeviceGroup group(device, loaded.kernel, spec, 3);
  gpu_testing::GroupStepper stepper(loaded.kernel, spec.numels);
  stepper.step(*compiled, group.device_buffers(), 5, 1);
  EXPECT_EQ(device.launches.load(), 0);
  // Reductions over no elements are the identity (0 for sums), as in the interpreter.
  EXPECT_EQ(stepper.reductions(0), std::vector<double>(4, 0.0));
}

TEST(Emulation, LoaderRejectsBinariesThatDoNotMatch) {
  EmulatedDevice device;
  const Loaded loaded = prepare(find("lamb", 32));
  runtime::CudaBinaryView view = loaded.view;
  view.table_layout = runtime::cuda_tensor_table_layout(5);
  EXPECT_THROW(runtime::load_cuda_kernel(loaded.kernel, view, device), UserError);
  view = loaded.view;
  view.phase_functions.pop_back();
  EXPECT_THROW(runtime::load_cuda_kernel(loaded.kernel, view, device), UserError);
  view = loaded.view;
  view.ptx = "";
  EXPECT_THROW(runtime::load_cuda_kernel(loaded.kernel, view, device), UserError);
  view = loaded.view;
  view.block_size = 100;
  EXPECT_THROW(runtime::load_cuda_kernel(loaded.kernel, view, device), UserError);
}

}  // namespace
}  // namespace fuseopt::emulation

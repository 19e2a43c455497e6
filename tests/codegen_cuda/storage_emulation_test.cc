// bf16 and f16 storage in the CUDA backend without a GPU: the generated code of every storage
// variant of tests/gpu/storage_checks.h (round to nearest even and stochastic, param, grad and
// states, rules with reductions) run on the CPU emulation through the real loader and the
// Optimizer, against the interpreter backend bit for bit; the same seed giving the same bits;
// what the generated code looks like; and NVRTC compiles for sm_80 and sm_90.
#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <set>
#include <string>

#include "codegen/cuda/cuda_codegen.h"
#include "codegen/cuda/nvrtc_compiler.h"
#include "frontend/rule.h"
#include "ir/interpreter.h"
#include "runtime/cpu_binary.h"
#include "runtime/cuda/cuda_kernel.h"
#include "runtime/cuda/tensor_table.h"
#include "runtime/optimizer.h"
#include "support/error.h"
#include "support/low_precision.h"
#include "tests/codegen_cuda/cuda_emulation.h"
#include "tests/gpu/device_checks.h"
#include "tests/gpu/group_stepper.h"
#include "tests/gpu/storage_checks.h"

namespace fuseopt::emulation {
namespace {

std::shared_ptr<const runtime::CompiledKernel> load(const EmulatedDevice& device,
                                                    const Loaded& loaded) {
  return runtime::load_cuda_kernel(loaded.kernel, loaded.view, device);
}

// The interpreter backend on the same IR, cut into the same chunks (reductions combine
// per-chunk partials in chunk order on both sides).
std::shared_ptr<const runtime::CompiledKernel> reference(const Loaded& loaded) {
  return runtime::make_interpreter_kernel(loaded.kernel, loaded.shape.chunk_elements);
}

std::vector<const EmulatedKernel*> storage_kernels() {
  std::vector<const EmulatedKernel*> out;
  for (const EmulatedKernel& emulated : emulated_kernels()) {
    // (Transform kernels with two-byte storage: device_decision_test.cc.)
    if (!emulated.storage.empty() && !transform_of(emulated.rule).any()) {
      out.push_back(&emulated);
    }
  }
  return out;
}

TEST(StorageEmulation, EveryVariantWasEmulated) {
  // Each variant at the small shape, one also at vector widths 2 and 1.
  EXPECT_EQ(storage_kernels().size(), gpu_testing::storage_variants().size() + 2);
  std::set<std::string> rules;
  std::set<int> widths;
  for (const EmulatedKernel* emulated : storage_kernels()) {
    rules.insert(emulated->rule);
    widths.insert(emulated->vector_width);
  }
  EXPECT_EQ(rules, (std::set<std::string>{"adagrad", "adam", "adamw", "lamb", "lion", "sgd"}));
  EXPECT_EQ(widths, (std::set<int>{1, 2, 4}));
}

// Many tensors of odd sizes around the chunk size (optimizer-owned, adjacent in their arenas,
// so two-byte buffers start at every alignment), caller-owned tensors one element past an
// allocation, three steps with new gradients: the interpreter's bits exactly.
TEST(StorageEmulation, EveryVariantMatchesTheInterpreter) {
  EmulatedDevice device;
  uint32_t seed = 11;
  int checked = 0;
  for (const EmulatedKernel* emulated : storage_kernels()) {
    const Loaded loaded = prepare(*emulated);
    SCOPED_TRACE(loaded.view.name);
    const auto compiled = load(device, loaded);
    const gpu_testing::GroupSpec spec =
        gpu_testing::mixed_group(emulated->chunk_elements, false, 6, seed);
    // Reductions (lamb) are summed in another order: one storage ulp at most, f32 16 ulps.
    EXPECT_EQ(gpu_testing::compare_optimizers(compiled, reference(loaded), spec, 3, seed), "");
    ++seed;
    ++checked;
  }
  EXPECT_GE(checked, 40);
  EXPECT_EQ(device.allocated.load(), 0u) << "device memory leaked";
}

Loaded find_variant(const std::string& rule, const std::string& buffer, const std::string& spec) {
  for (const EmulatedKernel* emulated : storage_kernels()) {
    auto found = emulated->storage.find(buffer);
    if (emulated->rule == rule && emulated->storage.size() == 1 &&
        found != emulated->storage.end() && found->second == spec) {
      return prepare(*emulated);
    }
  }
  throw std::runtime_error("no emulated " + rule + " " + buffer + "=" + spec);
}

// The comparison tells roundings apart: the stochastic kernel against the interpreter
// rounding to nearest, and a bf16 kernel against an f16 interpreter, differ.
TEST(StorageEmulation, TheComparisonSeesOtherRoundings) {
  EmulatedDevice device;
  const Loaded stochastic = find_variant("adam", "param", "bf16 stochastic");
  const Loaded nearest = find_variant("adam", "param", "bf16");
  const Loaded half = find_variant("adam", "param", "f16");
  gpu_testing::GroupSpec spec;
  spec.numels = {1000, 33};
  EXPECT_NE(
      gpu_testing::compare_optimizers(load(device, stochastic), reference(nearest), spec, 2, 3),
      "");
  EXPECT_NE(gpu_testing::compare_optimizers(load(device, nearest), reference(half), spec, 2, 3),
            "");
  EXPECT_EQ(gpu_testing::compare_optimizers(load(device, nearest), reference(nearest), spec, 2, 3),
            "");
}

TEST(StorageEmulation, StochasticRoundingDependsOnlyOnTheSeed) {
  EmulatedDevice device;
  int checked = 0;
  for (const EmulatedKernel* emulated : storage_kernels()) {
    const Loaded loaded = prepare(*emulated);
    if (!loaded.kernel.has_stochastic_store() || emulated->vector_width != 4) continue;
    if (emulated->rule != "adam" && emulated->rule != "lamb") continue;
    SCOPED_TRACE(loaded.view.name);
    gpu_testing::GroupSpec spec;
    spec.numels = {1, 77, 1025, 3000};
    EXPECT_EQ(gpu_testing::compare_stochastic_seeds(load(device, loaded), spec, 2, 5), "");
    ++checked;
  }
  EXPECT_GE(checked, 6);
}

// Adam, vector width 4, with only its parameter stored as stochastically rounded bf16.
const EmulatedKernel* adam_with_stochastic_bf16_param() {
  for (const EmulatedKernel* candidate : storage_kernels()) {
    if (candidate->rule == "adam" && candidate->vector_width == 4 &&
        candidate->storage == std::map<std::string, std::string>{{"param", "bf16 stochastic"}}) {
      return candidate;
    }
  }
  return nullptr;
}

// Element indices past 2^32 (tensors of more than 4G elements): one chunk that starts 6
// elements before 2^32, run through the emulated phase function with a hand-built table, draws
// the interpreter's random words for the indices on both sides of the boundary.
TEST(StorageEmulation, StochasticIndicesPast2To32) {
  const EmulatedKernel* emulated = adam_with_stochastic_bf16_param();
  ASSERT_NE(emulated, nullptr);
  const Loaded loaded = prepare(*emulated);
  const ir::Kernel& kernel = loaded.kernel;
  ASSERT_EQ(kernel.phases.size(), 1u);
  const size_t buffers = kernel.buffers.size();
  const int64_t count = 40;  // vectors, then a tail
  const int64_t start = (int64_t{1} << 32) - 6;

  // Host values for the interpreter (param as bf16 values) and the kernel's memory.
  std::vector<std::vector<float>> host(buffers, std::vector<float>(count));
  std::vector<std::vector<uint64_t>> memory(buffers,
                                            std::vector<uint64_t>(count));  // 8-byte aligned
  for (size_t b = 0; b < buffers; ++b) {
    for (int64_t i = 0; i < count; ++i) {
      float v = 0.25f + 0.01f * static_cast<float>(i) + 0.1f * static_cast<float>(b);
      if (b == 0) v = round_to_storage(v, StorageType::kBF16);
      host[b][static_cast<size_t>(i)] = v;
      const uint32_t bits = store_bits(v, kernel.buffers[b].storage);
      auto* base = reinterpret_cast<unsigned char*>(memory[b].data());
      if (kernel.buffers[b].storage == StorageType::kF32) {
        std::memcpy(base + 4 * i, &bits, 4);
      } else {
        const auto half = static_cast<uint16_t>(bits);
        std::memcpy(base + 2 * i, &half, 2);
      }
    }
  }
  // The table: a header, one tensor, one chunk at `start` whose addresses are the arrays.
  const size_t tensor_entry = runtime::cuda_tensor_entry_bytes(buffers);
  const size_t chunk_entry = runtime::cuda_chunk_entry_bytes(buffers);
  std::vector<uint64_t> table((32 + tensor_entry + chunk_entry) / 8, 0);
  auto* bytes = reinterpret_cast<unsigned char*>(table.data());
  runtime::CudaTableHeader header;
  header.tensors_offset = 32;
  header.chunks_offset = static_cast<int64_t>(32 + tensor_entry);
  header.tensor_count = 1;
  header.chunk_count = 1;
  std::memcpy(bytes, &header, sizeof(header));
  const int64_t numel = start + count;
  std::memcpy(bytes + 32, &numel, 8);
  const runtime::CudaChunk chunk{0, static_cast<uint32_t>(count), start};
  std::memcpy(bytes + header.chunks_offset, &chunk, sizeof(chunk));
  for (size_t b = 0; b < buffers; ++b) {
    const auto address = reinterpret_cast<uint64_t>(memory[b].data());
    std::memcpy(bytes + 32 + 8 + 8 * b, &address, 8);
    std::memcpy(bytes + header.chunks_offset + sizeof(chunk) + 8 * b, &address, 8);
  }
  const size_t inputs = ir::phase_scalar_inputs(kernel.phases[0]).size();
  const std::vector<float> scalars(inputs, 0.5f);
  const std::vector<double> scalar_values(inputs, 0.5);
  std::vector<uint32_t> keys(buffers);
  for (size_t b = 0; b < buffers; ++b)
    keys[b] = rounding_stream_key(7, 3, ir::rounding_stream(2, b));

  LaunchArgs launch;
  launch.table = table.data();
  launch.scalars = scalars.data();
  launch.rounding_keys = keys.data();
  run_grid(emulated->functions[0].second, 1, static_cast<unsigned>(emulated->block_size), launch);

  const ir::Interpreter interpreter(kernel);
  auto interpret = [&](int64_t first_index) {
    std::vector<std::vector<float>> values = host;
    std::vector<float*> pointers;
    for (std::vector<float>& v : values) pointers.push_back(v.data());
    interpreter.run_phase_chunk(0, count, pointers.data(), scalar_values, nullptr, first_index,
                                keys);
    return values[0];
  };
  const std::vector<float> expected = interpret(start);
  const auto* param = reinterpret_cast<const uint16_t*>(memory[0].data());
  for (int64_t i = 0; i < count; ++i) {
    EXPECT_EQ(param[i], store_bits(expected[static_cast<size_t>(i)], StorageType::kBF16))
        << "element " << i << " (index " << start + i << ")";
  }
  // The check sees the index's upper half: the same low 32 bits with another upper half
  // round some elements the other way.
  const std::vector<float> other_high = interpret(start + (int64_t{1} << 32));
  EXPECT_NE(std::memcmp(other_high.data(), expected.data(), count * sizeof(float)), 0);
}

// The keys go up with each step's scalars, and not again while they stay the same.
TEST(StorageEmulation, RoundingKeysAreUploadedWhenTheyChange) {
  const EmulatedKernel* emulated = adam_with_stochastic_bf16_param();
  ASSERT_NE(emulated, nullptr);
  EmulatedDevice device;
  const Loaded loaded = prepare(*emulated);
  const auto compiled = load(device, loaded);
  gpu_testing::GroupSpec spec;
  spec.numels = {100, 3, 500};
  gpu_testing::DeviceGroup group(device, loaded.kernel, spec, 3);
  gpu_testing::GroupStepper stepper(loaded.kernel, spec.numels);
  const int before = device.uploads.load();
  stepper.step(*compiled, group.device_buffers(), 77, 1);
  EXPECT_EQ(device.uploads.load() - before, 3);  // table, scalars, keys
  stepper.step(*compiled, group.device_buffers(), 77, 1);
  EXPECT_EQ(device.uploads.load() - before, 4);  // scalars: the same step, the same keys
  stepper.step(*compiled, group.device_buffers(), 77, 2);
  EXPECT_EQ(device.uploads.load() - before, 6);  // scalars and the next step's keys
  EXPECT_EQ(device.launches.load(), 3);
}

// The generated code: two-byte pointers, 8-byte vector loads of four elements behind an
// alignment test per element size, widening loads and rounded stores; keys only where a store
// is stochastic.
TEST(StorageEmulation, GeneratedCodeLoadsAndStoresTwoBytes) {
  const Loaded rne = find_variant("adam", "param", "bf16");
  const std::string& text = rne.source.text;
  EXPECT_NE(text.find("unsigned short* p_param = static_cast<unsigned short*>(chunk.buffers[0]);"),
            std::string::npos);
  EXPECT_NE(text.find("reinterpret_cast<const ushort4*>(p_param)"), std::string::npos);
  EXPECT_NE(text.find("& 7u)"), std::string::npos);   // 8-byte vectors of bf16
  EXPECT_NE(text.find("& 15u)"), std::string::npos);  // 16-byte vectors of f32
  EXPECT_NE(text.find("fuseopt_bf16_to_float(a_param[u].x)"), std::string::npos);
  EXPECT_NE(text.find("s_param.w = fuseopt_float_to_bf16(o_param.w);"), std::string::npos);
  EXPECT_NE(text.find("(void)rounding_keys;"), std::string::npos);
  EXPECT_EQ(text.find("fuseopt_rounding_random_split(key_"), std::string::npos);

  const Loaded stochastic = find_variant("adam", "param", "bf16 stochastic");
  const std::string& sr = stochastic.source.text;
  EXPECT_NE(sr.find("const unsigned int key_param = rounding_keys["), std::string::npos);
  EXPECT_NE(sr.find("fuseopt_float_to_bf16_sr(o_param.x, fuseopt_rounding_random_split(key_param"),
            std::string::npos);
  EXPECT_EQ(sr.find("(void)rounding_keys;"), std::string::npos);

  // f32 kernels carry no storage functions.
  const frontend::Rule rule = frontend::load_rule("adam");
  const ir::Kernel f32 = rule.compile(rule.resolve_options());
  EXPECT_EQ(codegen::generate_cuda_source(f32, {}).text.find("fuseopt_bf16_to_float"),
            std::string::npos);
}

// A stochastic kernel run without keys is a clear internal error, not a read of null.
TEST(StorageEmulation, StochasticKernelsNeedKeys) {
  EmulatedDevice device;
  const Loaded loaded = find_variant("adam", "param", "bf16 stochastic");
  const auto compiled = load(device, loaded);
  const int64_t numel = 10;
  const runtime::DeviceMemory& memory = *compiled->device;
  std::vector<void*> buffers;
  for (size_t b = 0; b < loaded.kernel.buffers.size(); ++b) {
    buffers.push_back(memory.allocate(static_cast<size_t>(numel) * 4));
  }
  std::vector<float> scalars(ir::phase_scalar_inputs(loaded.kernel.phases[0]).size(), 0.0f);
  runtime::GroupArgs args;
  args.tensor_count = 1;
  args.numels = &numel;
  args.buffers = buffers.data();
  args.scalars = scalars.data();
  EXPECT_THROW(compiled->group_phases[0]->run_group(args), InternalError);
  for (void* p : buffers) memory.free(p);
}

// What the GPU runs: storage variants compiled by NVRTC for sm_80 and sm_90 at the default
// launch shape, with no spills.
void expect_compiles(const gpu_testing::StorageVariant& variant) {
  SCOPED_TRACE(variant.label);
  const frontend::Rule rule = frontend::load_rule(variant.rule);
  ir::Kernel kernel = rule.compile(rule.resolve_options(variant.options));
  gpu_testing::apply_storage(kernel, variant.storage);
  for (const char* arch : {"sm_80", "sm_90"}) {
    const codegen::CudaBinary binary = codegen::compile_cuda_kernel(kernel, {}, arch);
    EXPECT_FALSE(binary.cubin.empty()) << arch;
    EXPECT_EQ(binary.spill_bytes, 0) << arch << "\n" << binary.log;
    EXPECT_EQ(binary.table_layout, runtime::cuda_tensor_table_layout(kernel.buffers.size()));
  }
}

bool have_nvrtc(std::string& why) {
  try {
    codegen::nvrtc_version();
    return true;
  } catch (const EnvironmentError& e) {
    why = e.what();
    return false;
  }
}

// A few in the default run: everything bf16 with a stochastic param (one phase, and lamb's
// reductions), f16 stochastic states.
TEST(StorageNvrtc, SomeVariantsCompileForSm80AndSm90) {
  std::string why;
  if (!have_nvrtc(why)) GTEST_SKIP() << why;
  int compiled = 0;
  for (const gpu_testing::StorageVariant& variant : gpu_testing::storage_variants()) {
    if (variant.label == "adam all=bf16 param stochastic" ||
        variant.label == "lamb all=bf16 param stochastic" ||
        variant.label == "adam states=f16 stochastic grad=f16") {
      expect_compiles(variant);
      ++compiled;
    }
  }
  EXPECT_EQ(compiled, 3);
}

// Every variant: label `slow` with the other AllRulesCompile tests (about a minute).
TEST(AllRulesCompile, EveryStorageVariantForSm80AndSm90) {
  std::string why;
  if (!have_nvrtc(why)) GTEST_SKIP() << why;
  for (const gpu_testing::StorageVariant& variant : gpu_testing::storage_variants()) {
    expect_compiles(variant);
  }
}

}  // namespace
}  // namespace fuseopt::emulation

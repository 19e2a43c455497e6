// GPU benchmarks for tools/gpu-check.sh: fp32 Adam over 2^28 elements against the
// device-to-device copy bandwidth measured in this process, bf16 Adam at the same size (param
// and grad bf16 with f32 states; everything bf16, rounded to nearest and with a stochastic
// param) in bytes per element and fraction of copy, 16384 tensors of 4096 elements (one
// launch per step), how long a loss-scaled step holds the host when the host or the device
// decides it, and NVRTC's compile time per built-in rule. Prints readable lines
// and "RESULT name value unit" lines for the summary. Without a GPU it prints the reason on
// one line and exits with 4.
//
// Usage: gpu_bench [--quick]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "codegen/cuda/cuda_codegen.h"
#include "frontend/rule.h"
#include "ir/grad_transform.h"
#include "rules/builtin_rules.h"
#include "runtime/cuda/cuda_driver.h"
#include "runtime/cuda/cuda_kernel.h"
#include "runtime/optimizer.h"
#include "support/error.h"
#include "tests/gpu/group_stepper.h"
#include "tests/gpu/storage_checks.h"

namespace fuseopt {
namespace {

using Clock = std::chrono::steady_clock;

void result(const std::string& name, double value, const char* unit) {
  std::printf("RESULT %s %.6g %s\n", name.c_str(), value, unit);
  std::fflush(stdout);
}

codegen::CudaLaunchShape shape(int block, int elements, int width) {
  codegen::CudaLaunchShape s;
  s.block_size = block;
  s.elements_per_thread = elements;
  s.vector_width = width;
  return s;
}

// The shapes tried (the autotuner's job later): the default first.
std::vector<codegen::CudaLaunchShape> candidate_shapes() {
  return {codegen::CudaLaunchShape{}, shape(256, 8, 4),  shape(512, 4, 4),
          shape(1024, 4, 4),          shape(256, 16, 4), shape(128, 8, 4)};
}

struct Timing {
  double gpu_ms = 0;   // median kernel time per step (events around the launches)
  double wall_ms = 0;  // host time per step, host work and uploads included
};

// Steps `kernel` over the group: `warmup` steps, then `steps` timed ones.
Timing time_steps(const runtime::CudaDriver& driver, const runtime::CompiledKernel& kernel,
                  gpu_testing::GroupStepper& stepper, const std::vector<void*>& buffers, int warmup,
                  int steps) {
  int64_t t = 1;
  for (int i = 0; i < warmup; ++i) stepper.step(kernel, buffers, 1, t++);
  driver.synchronize();
  runtime::CudaEvent start = driver.create_event();
  runtime::CudaEvent end = driver.create_event();
  std::vector<double> gpu;
  for (int i = 0; i < steps; ++i) {
    driver.record_event(start);
    stepper.step(kernel, buffers, 1, t++);
    driver.record_event(end);
    gpu.push_back(driver.elapsed_ms(start, end));
  }
  const auto wall_start = Clock::now();
  for (int i = 0; i < steps; ++i) stepper.step(kernel, buffers, 1, t++);
  driver.synchronize();
  const double wall = std::chrono::duration<double, std::milli>(Clock::now() - wall_start).count();
  driver.destroy_event(start);
  driver.destroy_event(end);
  std::sort(gpu.begin(), gpu.end());
  return {gpu[gpu.size() / 2], wall / steps};
}

// One buffer per role holding every tensor back to back, in each buffer's storage type (each
// tensor aligned for vectors when numel is a multiple of 4).
struct Arena {
  std::vector<runtime::CudaBuffer> roles;
  std::vector<void*> pointers;  // tensor-major
};

Arena make_arena(const runtime::CudaDriver& driver, const ir::Kernel& kernel, int64_t tensors,
                 int64_t numel) {
  Arena arena;
  for (size_t b = 0; b < kernel.buffers.size(); ++b) {
    const size_t element = runtime::buffer_element_bytes(kernel, b);
    const size_t bytes = static_cast<size_t>(tensors * numel) * element;
    arena.roles.emplace_back(driver, bytes);
    // Small positive values for param and grad (0x3c3c3c3c = 0.0115 as f32, 0x3c3c = 0.0115
    // as bf16), zero states: finite all along.
    const uint8_t fill = b == 0 ? 0x3c : b == 1 ? 0x3b : 0x00;
    driver.fill_bytes(arena.roles.back().get(), fill, bytes);
  }
  for (int64_t t = 0; t < tensors; ++t) {
    for (size_t b = 0; b < kernel.buffers.size(); ++b) {
      const size_t element = runtime::buffer_element_bytes(kernel, b);
      arena.pointers.push_back(reinterpret_cast<char*>(arena.roles[b].get()) +
                               static_cast<size_t>(t * numel) * element);
    }
  }
  return arena;
}

// Bytes one step moves per element: every buffer a phase loads, read once, and every buffer
// it stores, written once, at its storage size (for Adam: all four read, all but grad written).
double bytes_per_element(const ir::Kernel& kernel) {
  double bytes = 0;
  for (const ir::Phase& phase : kernel.phases) {
    std::vector<bool> read(kernel.buffers.size(), false);
    std::vector<bool> written(kernel.buffers.size(), false);
    std::vector<const ir::ExprNode*> stack;
    for (const ir::Store& store : phase.stores) {
      written[static_cast<size_t>(kernel.buffer_index(store.target))] = true;
      stack.push_back(store.value.get());
    }
    for (const ir::Reduction& reduction : phase.reductions) stack.push_back(reduction.body.get());
    std::vector<const ir::ExprNode*> seen;
    while (!stack.empty()) {
      const ir::ExprNode* node = stack.back();
      stack.pop_back();
      if (std::find(seen.begin(), seen.end(), node) != seen.end()) continue;
      seen.push_back(node);
      if (node->kind == ir::NodeKind::kLoad) {
        read[static_cast<size_t>(kernel.buffer_index(node->name))] = true;
      }
      for (const ir::Expr& operand : node->operands) stack.push_back(operand.get());
    }
    for (size_t b = 0; b < kernel.buffers.size(); ++b) {
      const double size = static_cast<double>(runtime::buffer_element_bytes(kernel, b));
      bytes += (read[b] ? size : 0) + (written[b] ? size : 0);
    }
  }
  return bytes;
}

int run(bool quick) {
  const std::string reason = runtime::CudaDriver::unavailable_reason();
  if (!reason.empty()) {
    std::fprintf(stderr, "gpu_bench: %s\n", reason.c_str());
    return 4;
  }
  const runtime::CudaDriver& driver = runtime::CudaDriver::get();
  const runtime::CudaDeviceInfo& info = driver.device();
  const std::string arch = codegen::cuda_arch_for_device(info.sm_major, info.sm_minor);
  std::printf("device %s (%s, %d SMs, %.0f GiB), driver %d, %s, compiling for %s\n",
              info.name.c_str(), info.arch().c_str(), info.sm_count,
              static_cast<double>(info.total_memory) / (1 << 30), info.driver_version,
              codegen::nvrtc_version().c_str(), arch.c_str());
  const int warmup = 3;
  const int steps = quick ? 5 : 20;

  // The reference: device-to-device copy of 1 GiB (read + write counted).
  const int64_t large = int64_t{1} << 28;
  const double copy =
      runtime::measure_copy_bandwidth(driver, static_cast<size_t>(large) * 4, steps);
  std::printf("device-to-device copy: %.0f GB/s\n", copy / 1e9);
  result("copy_bandwidth", copy / 1e9, "GB/s");

  const frontend::Rule adam = frontend::load_rule("adam");
  const ir::Kernel kernel = adam.compile(adam.resolve_options());
  // fp32 Adam reads param, grad, exp_avg, exp_avg_sq and writes three of them: 28 bytes.
  const double adam_bytes = bytes_per_element(kernel);
  result("adam_2p28_bytes_per_element", adam_bytes, "B");

  {
    Arena arena = make_arena(driver, kernel, 1, large);
    gpu_testing::GroupStepper stepper(kernel, {large});
    double best_bandwidth = 0;
    Timing best_timing;
    std::string best_shape;
    for (const codegen::CudaLaunchShape& s : candidate_shapes()) {
      const codegen::CudaBinary binary = codegen::compile_cuda_kernel(kernel, s, arch);
      const auto loaded = runtime::load_cuda_kernel(kernel, gpu_testing::view_of(binary));
      const Timing timing = time_steps(driver, *loaded, stepper, arena.pointers, warmup, steps);
      const double bandwidth = adam_bytes * static_cast<double>(large) / (timing.gpu_ms * 1e-3);
      std::printf(
          "adam 2^28 %-22s registers %3d spills %d: %.3f ms/step (wall %.3f ms), "
          "%.0f GB/s = %.2f of copy\n",
          s.spelling().c_str(), binary.registers[0], binary.spill_bytes, timing.gpu_ms,
          timing.wall_ms, bandwidth / 1e9, bandwidth / copy);
      if (s == codegen::CudaLaunchShape{}) {
        result("adam_2p28_default_ms", timing.wall_ms, "ms");
        result("adam_2p28_default_fraction_of_copy", bandwidth / copy, "");
      }
      if (bandwidth > best_bandwidth) {
        best_bandwidth = bandwidth;
        best_timing = timing;
        best_shape = s.spelling();
      }
    }
    std::printf("adam 2^28 best shape %s: %.0f GB/s = %.2f of copy\n", best_shape.c_str(),
                best_bandwidth / 1e9, best_bandwidth / copy);
    result("adam_2p28_best_ms", best_timing.wall_ms, "ms");
    result("adam_2p28_best_gpu_ms", best_timing.gpu_ms, "ms");
    result("adam_2p28_best_fraction_of_copy", best_bandwidth / copy, "");
    std::printf("RESULT adam_2p28_best_shape 0 %s\n", best_shape.c_str());
  }

  // bf16 Adam at 2^28 elements, default shape: what two-byte storage saves in bytes and
  // whether the kernel still runs at copy bandwidth (the rounding is integer work per store).
  {
    struct Variant {
      const char* name;  // RESULT prefix
      const char* label;
      std::map<std::string, std::string> storage;
    };
    const std::vector<Variant> variants = {
        {"adam_bf16pg", "param+grad bf16, states f32", {{"param", "bf16"}, {"grad", "bf16"}}},
        {"adam_bf16all",
         "all bf16",
         {{"param", "bf16"}, {"grad", "bf16"}, {"exp_avg", "bf16"}, {"exp_avg_sq", "bf16"}}},
        {"adam_bf16all_sr",
         "all bf16, param stochastic",
         {{"param", "bf16 stochastic"},
          {"grad", "bf16"},
          {"exp_avg", "bf16"},
          {"exp_avg_sq", "bf16"}}},
    };
    for (const Variant& variant : variants) {
      ir::Kernel narrow = kernel;
      gpu_testing::apply_storage(narrow, variant.storage);
      const double bytes = bytes_per_element(narrow);
      Arena arena = make_arena(driver, narrow, 1, large);
      gpu_testing::GroupStepper stepper(narrow, {large});
      const codegen::CudaBinary binary =
          codegen::compile_cuda_kernel(narrow, codegen::CudaLaunchShape{}, arch);
      const auto loaded = runtime::load_cuda_kernel(narrow, gpu_testing::view_of(binary));
      const Timing timing = time_steps(driver, *loaded, stepper, arena.pointers, warmup, steps);
      const double bandwidth = bytes * static_cast<double>(large) / (timing.gpu_ms * 1e-3);
      std::printf(
          "adam 2^28 %-28s %2.0f bytes/element, registers %3d spills %d: %.3f ms/step "
          "(wall %.3f ms), %.0f GB/s = %.2f of copy\n",
          variant.label, bytes, binary.registers[0], binary.spill_bytes, timing.gpu_ms,
          timing.wall_ms, bandwidth / 1e9, bandwidth / copy);
      const std::string prefix = std::string(variant.name) + "_2p28_";
      result(prefix + "bytes_per_element", bytes, "B");
      result(prefix + "gpu_ms", timing.gpu_ms, "ms");
      result(prefix + "fraction_of_copy", bandwidth / copy, "");
    }
  }

  {
    const int64_t tensors = 16384;
    const int64_t numel = 4096;
    Arena arena = make_arena(driver, kernel, tensors, numel);
    gpu_testing::GroupStepper stepper(kernel, std::vector<int64_t>(tensors, numel));
    double best_wall = 0;
    std::string best_shape;
    for (const codegen::CudaLaunchShape& s : candidate_shapes()) {
      const codegen::CudaBinary binary = codegen::compile_cuda_kernel(kernel, s, arch);
      const auto loaded = runtime::load_cuda_kernel(kernel, gpu_testing::view_of(binary));
      const Timing timing = time_steps(driver, *loaded, stepper, arena.pointers, warmup, steps);
      const double bandwidth =
          adam_bytes * static_cast<double>(tensors * numel) / (timing.wall_ms * 1e-3);
      std::printf("adam 16384x4096 %-22s %.3f ms/step wall (kernel %.3f ms), %.0f GB/s\n",
                  s.spelling().c_str(), timing.wall_ms, timing.gpu_ms, bandwidth / 1e9);
      if (s == codegen::CudaLaunchShape{})
        result("adam_16384x4096_default_ms", timing.wall_ms, "ms");
      if (best_wall == 0 || timing.wall_ms < best_wall) {
        best_wall = timing.wall_ms;
        best_shape = s.spelling();
      }
    }
    result("adam_16384x4096_best_ms", best_wall, "ms");
    std::printf("RESULT adam_16384x4096_best_shape 0 %s\n", best_shape.c_str());
  }

  // Loss-scaled, clipped Adam through the Optimizer (16 tensors of 2^22 elements), with a
  // 1 GiB device copy queued before each step as a stand-in for the backward pass: how long
  // step() keeps the host when the host decides (it waits for the copy and phase 0, to read
  // the statistics) and when the device decides (it returns once the launches are queued).
  {
    const frontend::Rule rule = frontend::load_rule("adam");
    ir::Kernel transformed = rule.compile(rule.resolve_options());
    ir::apply_grad_transform(transformed, {true, true});
    const codegen::CudaBinary binary =
        codegen::compile_cuda_kernel(transformed, codegen::CudaLaunchShape{}, arch);
    const auto loaded = runtime::load_cuda_kernel(transformed, gpu_testing::view_of(binary));
    const size_t backward_bytes = size_t{1} << 30;
    runtime::CudaBuffer from(driver, backward_bytes);
    runtime::CudaBuffer to(driver, backward_bytes);
    runtime::CudaBuffer found_inf(driver, sizeof(float));
    driver.fill_words(found_inf.get(), 0, 1);
    for (const bool on_device : {false, true}) {
      Optimizer optimizer(loaded, {{"grad_scale", 1024.0}, {"max_grad_norm", 1.0}});
      for (int t = 0; t < 16; ++t) optimizer.add_tensor(int64_t{1} << 22);
      optimizer.set_decide_on_device(on_device);
      if (on_device) {
        optimizer.set_device_loss_scale(nullptr, reinterpret_cast<void*>(found_inf.get()));
      }
      for (int i = 0; i < warmup; ++i) optimizer.step();
      optimizer.synchronize();
      double in_step = 0;
      const auto start = Clock::now();
      for (int i = 0; i < steps; ++i) {
        driver.copy_on_device(to.get(), from.get(), backward_bytes);
        const auto before = Clock::now();
        optimizer.step();
        in_step += std::chrono::duration<double, std::milli>(Clock::now() - before).count();
      }
      optimizer.synchronize();
      const double wall =
          std::chrono::duration<double, std::milli>(Clock::now() - start).count() / steps;
      const char* where = on_device ? "device" : "host";
      std::printf(
          "adam loss-scaled+clipped 16x2^22, decided on the %-6s: step() holds the host "
          "%.3f ms, %.3f ms/step wall with a 1 GiB copy before each\n",
          where, in_step / steps, wall);
      result(std::string("adam_loss_scaled_decided_on_") + where + "_step_call_ms", in_step / steps,
             "ms");
      result(std::string("adam_loss_scaled_decided_on_") + where + "_wall_ms", wall, "ms");
    }
  }

  // NVRTC time per rule (default options and shape), without the process cache.
  double total = 0;
  double slowest = 0;
  for (const rules::BuiltinRule& builtin : rules::builtin_rules()) {
    const frontend::Rule rule = frontend::load_rule(builtin.name);
    const ir::Kernel k = rule.compile(rule.resolve_options());
    const codegen::CudaBinary binary = codegen::compile_cuda_kernel(
        k, codegen::CudaLaunchShape{}, arch, codegen::CudaCompileCache::kNone);
    std::printf("jit %-12s %.3f s (%zu phases, registers", builtin.name.c_str(),
                binary.compile_seconds, binary.phase_functions.size());
    for (int r : binary.registers) std::printf(" %d", r);
    std::printf(", spills %d)\n", binary.spill_bytes);
    result("jit_" + builtin.name + "_s", binary.compile_seconds, "s");
    total += binary.compile_seconds;
    slowest = std::max(slowest, binary.compile_seconds);
  }
  result("jit_mean_s", total / static_cast<double>(rules::builtin_rules().size()), "s");
  result("jit_max_s", slowest, "s");
  return 0;
}

}  // namespace
}  // namespace fuseopt

int main(int argc, char** argv) {
  bool quick = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) {
      quick = true;
    } else {
      std::fprintf(stderr, "usage: gpu_bench [--quick]\n");
      return 1;
    }
  }
  try {
    return fuseopt::run(quick);
  } catch (const fuseopt::EnvironmentError& e) {
    std::fprintf(stderr, "gpu_bench: %s\n", e.what());
    return 4;
  } catch (const fuseopt::UserError& e) {
    std::fprintf(stderr, "gpu_bench: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gpu_bench: internal error: %s\n", e.what());
    return 3;
  }
}

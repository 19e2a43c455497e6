// Checks of bf16 and f16 storage on a CUDA backend, through the Optimizer: the same group and
// steps on a device kernel and on the interpreter, compared element by element in the storage
// type's bits. Written once for any device kernel: tests/gpu runs them on the GPU
// (compile_rule with the cuda backend), tests/codegen_cuda on the CPU emulation of the
// generated code (the kernel loaded on an emulated device).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "ir/kernel.h"
#include "runtime/kernel_abi.h"
#include "tests/gpu/device_checks.h"

namespace fuseopt::gpu_testing {

/// A rule, its options and how its buffers are stored (CompileOptions::storage spelling:
/// buffer -> "bf16", "f16 stochastic", ...).
struct StorageVariant {
  std::string rule;
  std::map<std::string, std::string> options;
  std::map<std::string, std::string> storage;
  std::string label;  ///< e.g. "adam param=bf16"
};

/// adam, adamw, lion, sgd (with momentum, see storage_check_hypers), lamb (reductions) and
/// adagrad, each with: param bf16; param f16; states bf16; grad bf16; param bf16 stochastic;
/// states bf16 stochastic; and everything bf16 with a stochastic param (rules without
/// states skip the state variants). Plus adam with f16 states stochastic and an f16 grad.
std::vector<StorageVariant> storage_variants();

/// `kernel` (compiled from variant.rule with variant.options) with variant.storage applied,
/// as compile_rule applies CompileOptions::storage.
void apply_storage(ir::Kernel& kernel, const std::map<std::string, std::string>& storage);

/// Hypers for the checks: lr 0.01 (updates large enough to move bf16 values), a non-zero
/// weight decay, momentum 0.9 where the rule has it, and rounding_seed `seed` where it exists.
std::map<std::string, double> storage_check_hypers(const ir::Kernel& kernel, uint64_t seed = 1234);

/// Distance between two values of storage type `type` (both representable in it) in units
/// in its last place; 0 when both are NaN.
int64_t storage_ulp_distance(float a, float b, StorageType type);

/// Steps `device_kernel` (a kernel with device memory) and `reference` (the interpreter
/// backend, same IR) through two Optimizers over the tensors of `spec` (empty ones left out;
/// `misaligned` tensors get caller-owned parameter and gradient memory one element past an
/// allocation, the others optimizer-owned memory, adjacent in its arenas, so odd sizes leave
/// two-byte buffers unaligned for vectors) from the same values, for `steps` steps with new
/// gradients each step. Returns "" when every buffer agrees: bit for bit when the kernel has
/// no reductions, else within `reduction_ulps` units of each buffer's storage type
/// (reductions are summed in another order); scalar states exactly or within 1e-9 relative.
/// Otherwise a description of the first differences.
std::string compare_optimizers(std::shared_ptr<const runtime::CompiledKernel> device_kernel,
                               std::shared_ptr<const runtime::CompiledKernel> reference,
                               const GroupSpec& spec, int steps, uint32_t seed,
                               int reduction_ulps = 1);

/// For a kernel with stochastic stores: two optimizers with the same rounding_seed give the
/// same bits after `steps` steps, and one with another seed gives different bits somewhere.
/// Returns "" when both hold.
std::string compare_stochastic_seeds(std::shared_ptr<const runtime::CompiledKernel> kernel,
                                     const GroupSpec& spec, int steps, uint32_t seed);

}  // namespace fuseopt::gpu_testing

// IR kernel -> CUDA C: one __global__ function per phase that steps a whole tensor group in
// one launch, by striding over the chunk map of a tensor table kept in device memory
// (runtime/cuda/tensor_table.h builds it; both sides must agree on cuda_table_layout()).
#pragma once

#include <string>
#include <vector>

#include "codegen/cuda/launch_shape.h"
#include "ir/kernel.h"

namespace fuseopt::codegen {

/// A generated CUDA C translation unit.
///
/// Phase k's function is `extern "C" __global__ void NAME(const FuseoptTable* table,
/// const float* scalars, unsigned int scalar_stride, double* partials,
/// const unsigned int* rounding_keys, const FuseoptGate* gate, const float* grad_scale,
/// float* found_inf, double max_grad_norm)`:
///   - `table`: the device tensor table (header, tensors, chunk map; cuda_table_layout());
///   - `scalars`: per tensor, ir::phase_scalar_inputs(phase) rounded to f32 (booleans 0 or
///     1), row `tensor * scalar_stride` (a stride of 0 shares one row between all tensors);
///   - `partials`: out, `chunk_count x reductions` doubles, each chunk's partial result
///     combined in a fixed order (unused when the phase has no reductions);
///   - `rounding_keys`: per tensor, one rounding stream key per buffer (`tensor * buffers +
///     buffer`; GroupArgs::rounding_keys), read only by phases with a stochastic store (may
///     be null otherwise).
///   - `gate`, `grad_scale`, `found_inf`, `max_grad_norm`: for kernels that decide a gradient
///     transform on the device (ir::can_decide_on_device; read by no other kernel). With a
///     null gate the phases read every scalar from their row, as the host decided. With a
///     gate, phase 0 is followed by one launch of `decide_function` (grid 1, block 32, the
///     same arguments), which combines phase 0's partials and writes the gate (kCudaGateBytes:
///     f64 skip, clip, total_norm, bad_scale); later phases return at once when it says skip
///     and read the clip factor from it. A non-null `grad_scale` (a device float, the loss
///     scale) replaces the rows' unscale factor in every phase; a non-null `found_inf` (a
///     device float) skips the step when nonzero, and the decide function sets it to 1 when
///     it skips the step; `max_grad_norm` is the clipping threshold.
/// Buffer b's table pointers address elements of kernel.buffers[b].storage: float for f32,
/// the 16-bit patterns of support/low_precision.h for bf16 and f16.
/// Launch: block = shape.block_size threads, any grid (blocks stride over the chunks), no
/// dynamic shared memory.
struct CudaSource {
  std::string text;
  std::string file_name;                     ///< e.g. "adam_amsgrad0_maximize0.cu"
  std::vector<std::string> phase_functions;  ///< one per phase
  /// The decide function (see above), or "" for a kernel that cannot decide on the device.
  std::string decide_function;
  std::string table_layout;  ///< cuda_table_layout(kernel.buffers.size())
};

/// The bytes of the gate the decide function writes (four f64 values).
inline constexpr size_t kCudaGateBytes = 32;

/// Describes the tensor table's layout (field offsets and sizes) as the generated code
/// declares it, for `buffer_count` buffers per tensor. runtime/cuda builds tables with the
/// same layout and checks this string.
std::string cuda_table_layout(size_t buffer_count);

/// Generates the CUDA C for `kernel` (verified, split and optimized: element code reads only
/// scalar names and constants). Throws UserError for a bad shape, InternalError for a
/// kernel the pipeline did not prepare.
CudaSource generate_cuda_source(const ir::Kernel& kernel, const CudaLaunchShape& shape);

/// The NVRTC options every generated file is compiled with: f32 `+ - * /` and sqrt round
/// exactly as on the host (no contraction into fused multiply-adds, IEEE division and
/// square root, denormals kept), so element results match the interpreter bit for bit.
const std::vector<std::string>& cuda_exact_math_options();

}  // namespace fuseopt::codegen

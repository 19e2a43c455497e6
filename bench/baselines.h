// The yardsticks fuseopt's kernels are measured against, compiled in the same process with
// `-O3 -march=native -fno-math-errno -fopenmp` (bench/CMakeLists.txt): a streaming-triad
// bandwidth probe and a hand-fused fp32 Adam loop, one tensor or many.
//
// Bytes convention (docs/performance.md): the bytes that really move between memory and the
// core. A buffer read counts 4 bytes per element, a buffer written 4 more, and a buffer
// written without being read in the same pass 4 more again, because the cache reads the
// line before the core overwrites it (write-allocate). The triad a[i] = b[i] + s*c[i] thus
// moves 16 bytes per element (STREAM's own convention counts 12); in-place Adam moves 28
// (param, exp_avg and exp_avg_sq read and written, grad read).
#pragma once

#include <cstdint>
#include <span>

namespace fuseopt::bench {

/// True when the baselines were built with OpenMP; without it they run on one thread.
bool baselines_have_openmp();

/// What one triad measurement found.
struct TriadResult {
  int threads = 1;
  int64_t elements = 0;     ///< per array (three float32 arrays)
  double best_seconds = 0;  ///< the fastest of the timed repetitions
  /// 16 bytes per element (write-allocate counted): the rate memory really delivers, and
  /// the one fuseopt's bandwidth fraction divides by.
  double gb_per_s = 0;
  /// 12 bytes per element (2 reads + 1 write): STREAM's published convention.
  double stream_gb_per_s = 0;
};

/// a[i] = b[i] + s * c[i] over three float32 arrays of `elements` each (pick them much
/// larger than the last-level cache: 2^25 floats are 128 MiB each) on `threads` threads:
/// first-touch initialisation by the same threads, one untimed pass, then the best of
/// `repetitions` passes. GB are 10^9 bytes.
TriadResult measure_triad(int threads, int64_t elements = int64_t{1} << 25,
                          int repetitions = 6);

/// measure_triad(threads, elements).gb_per_s: the write-allocate-counted rate.
double measure_triad_gb_per_s(int threads, int64_t elements = int64_t{1} << 25);

/// The in-place update a[i] = a[i] + s * b[i] (12 bytes per element, no write-allocate:
/// every written line was just read), the access pattern of optimizer kernels. Best of
/// `repetitions`, in GB/s.
double measure_update_gb_per_s(int threads, int64_t elements = int64_t{1} << 25,
                               int repetitions = 6);

/// Adam's hypers (torch.optim.Adam's defaults).
struct AdamHypers {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0;
};

/// One tensor's memory for the hand-fused loop; everything is updated in place.
struct AdamTensor {
  float* param = nullptr;
  const float* grad = nullptr;
  float* exp_avg = nullptr;
  float* exp_avg_sq = nullptr;
  int64_t numel = 0;
};

/// Bytes per element one Adam step moves (see the convention above): 28.
inline constexpr int kAdamBytesPerElement = 28;

/// Step `step` (1 for the first) of torch.optim.Adam's single-tensor formula (L2 weight
/// decay, no AMSGrad, no maximize), fused into one pass: bias corrections computed once in
/// float64 and rounded to float32, as fuseopt's prologue does, and then per element
///   g = grad (+ weight_decay * param);  m += (g - m) * (1 - beta1);
///   v = beta2 * v + (1 - beta2) * g * g;  param -= step_size * m / (sqrt(v) / bc2_sqrt + eps)
/// with `#pragma omp parallel for simd` over the elements on `threads` threads.
void hand_adam_step(const AdamTensor& tensor, int64_t step, const AdamHypers& hypers,
                    int threads);

/// The same over many tensors in one parallel region: the tensors are shared out among the
/// threads (static schedule), each tensor's loop vectorised.
void hand_adam_step_many(std::span<const AdamTensor> tensors, int64_t step,
                         const AdamHypers& hypers, int threads);

/// Fills `data` with deterministic values in [lo, hi) (a hash of the index and `seed`),
/// on `threads` threads, so that the threads that use the memory touch it first.
void fill_deterministic(float* data, int64_t count, uint32_t seed, float lo, float hi,
                        int threads);

}  // namespace fuseopt::bench

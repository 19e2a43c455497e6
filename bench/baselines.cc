#include "bench/baselines.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <memory>
#include <new>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace fuseopt::bench {
namespace {

using Clock = std::chrono::steady_clock;

struct FreeDeleter {
  void operator()(float* p) const { std::free(p); }
};
using FloatArray = std::unique_ptr<float[], FreeDeleter>;

// 64-byte aligned (one cache line), so no thread's share starts mid-line by accident.
FloatArray allocate_floats(int64_t count) {
  const size_t bytes = (static_cast<size_t>(std::max<int64_t>(count, 1)) * sizeof(float) + 63) /
                       64 * 64;
  void* p = std::aligned_alloc(64, bytes);
  if (!p) throw std::bad_alloc();
  return FloatArray(static_cast<float*>(p));
}

int clamp_threads(int threads) { return std::max(threads, 1); }

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// The scalars of one Adam step, computed once in float64 and rounded to float32 as
// fuseopt's host prologue hands them to the element code.
struct AdamScalars {
  float one_minus_beta1;
  float beta2;
  float one_minus_beta2;
  float step_size;
  float bc2_sqrt;
  float eps;
  float weight_decay;
  bool has_weight_decay;
};

AdamScalars adam_scalars(int64_t step, const AdamHypers& h) {
  const double t = static_cast<double>(step);
  const double bc1 = 1.0 - std::pow(h.beta1, t);
  const double bc2 = 1.0 - std::pow(h.beta2, t);
  return {
      .one_minus_beta1 = static_cast<float>(1.0 - h.beta1),
      .beta2 = static_cast<float>(h.beta2),
      .one_minus_beta2 = static_cast<float>(1.0 - h.beta2),
      .step_size = static_cast<float>(h.lr / bc1),
      .bc2_sqrt = static_cast<float>(std::sqrt(bc2)),
      .eps = static_cast<float>(h.eps),
      .weight_decay = static_cast<float>(h.weight_decay),
      .has_weight_decay = h.weight_decay != 0,
  };
}

// One element; inlined into vectorised loops. The weight-decay test is loop-invariant.
inline void adam_element(float* __restrict param, const float* __restrict grad,
                         float* __restrict exp_avg, float* __restrict exp_avg_sq, int64_t i,
                         const AdamScalars& s) {
  const float p = param[i];
  const float g = s.has_weight_decay ? grad[i] + s.weight_decay * p : grad[i];
  const float m = exp_avg[i] + s.one_minus_beta1 * (g - exp_avg[i]);
  const float v = s.beta2 * exp_avg_sq[i] + s.one_minus_beta2 * g * g;
  const float denom = std::sqrt(v) / s.bc2_sqrt + s.eps;
  exp_avg[i] = m;
  exp_avg_sq[i] = v;
  param[i] = p - s.step_size * m / denom;
}

// One tensor on the calling thread, vectorised.
void adam_serial(const AdamTensor& t, const AdamScalars& s) {
  float* __restrict param = t.param;
  const float* __restrict grad = t.grad;
  float* __restrict exp_avg = t.exp_avg;
  float* __restrict exp_avg_sq = t.exp_avg_sq;
  const int64_t n = t.numel;
#ifdef _OPENMP
#pragma omp simd
#endif
  for (int64_t i = 0; i < n; ++i) {
    adam_element(param, grad, exp_avg, exp_avg_sq, i, s);
  }
}

}  // namespace

bool baselines_have_openmp() {
#ifdef _OPENMP
  return true;
#else
  return false;
#endif
}

TriadResult measure_triad(int threads, int64_t elements, int repetitions) {
  threads = clamp_threads(threads);
  elements = std::max<int64_t>(elements, 1);
  repetitions = std::max(repetitions, 1);
  FloatArray a_storage = allocate_floats(elements);
  FloatArray b_storage = allocate_floats(elements);
  FloatArray c_storage = allocate_floats(elements);
  float* __restrict a = a_storage.get();
  float* __restrict b = b_storage.get();
  float* __restrict c = c_storage.get();
  const int64_t n = elements;

  // First touch by the threads that will stream the memory, with the same static schedule.
#ifdef _OPENMP
#pragma omp parallel for simd schedule(static) num_threads(threads)
#endif
  for (int64_t i = 0; i < n; ++i) {
    a[i] = 0.0f;
    b[i] = 1.0f;
    c[i] = 2.0f;
  }

  double best = std::numeric_limits<double>::infinity();
  for (int rep = -1; rep < repetitions; ++rep) {  // rep -1: untimed warm-up
    const float scalar = 3.0f + static_cast<float>(rep) * 1e-3f;
    const Clock::time_point start = Clock::now();
#ifdef _OPENMP
#pragma omp parallel for simd schedule(static) num_threads(threads)
#endif
    for (int64_t i = 0; i < n; ++i) a[i] = b[i] + scalar * c[i];
    const double seconds = seconds_since(start);
    if (rep >= 0) best = std::min(best, seconds);
  }
  // Keep the stores observable.
  volatile float sink = a[n / 2];
  (void)sink;

  TriadResult result;
  result.threads = threads;
  result.elements = elements;
  result.best_seconds = best;
  result.gb_per_s = 16.0 * static_cast<double>(n) / best / 1e9;
  result.stream_gb_per_s = 12.0 * static_cast<double>(n) / best / 1e9;
  return result;
}

double measure_triad_gb_per_s(int threads, int64_t elements) {
  return measure_triad(threads, elements).gb_per_s;
}

double measure_update_gb_per_s(int threads, int64_t elements, int repetitions) {
  threads = clamp_threads(threads);
  elements = std::max<int64_t>(elements, 1);
  repetitions = std::max(repetitions, 1);
  FloatArray a_storage = allocate_floats(elements);
  FloatArray b_storage = allocate_floats(elements);
  float* __restrict a = a_storage.get();
  float* __restrict b = b_storage.get();
  const int64_t n = elements;
#ifdef _OPENMP
#pragma omp parallel for simd schedule(static) num_threads(threads)
#endif
  for (int64_t i = 0; i < n; ++i) {
    a[i] = 0.0f;
    b[i] = 1.0f;
  }
  double best = std::numeric_limits<double>::infinity();
  for (int rep = -1; rep < repetitions; ++rep) {
    const float scalar = 1e-3f;
    const Clock::time_point start = Clock::now();
#ifdef _OPENMP
#pragma omp parallel for simd schedule(static) num_threads(threads)
#endif
    for (int64_t i = 0; i < n; ++i) a[i] = a[i] + scalar * b[i];
    const double seconds = seconds_since(start);
    if (rep >= 0) best = std::min(best, seconds);
  }
  volatile float sink = a[n / 2];
  (void)sink;
  return 12.0 * static_cast<double>(n) / best / 1e9;
}

void hand_adam_step(const AdamTensor& tensor, int64_t step, const AdamHypers& hypers,
                    int threads) {
  threads = clamp_threads(threads);
  const AdamScalars s = adam_scalars(step, hypers);
  float* __restrict param = tensor.param;
  const float* __restrict grad = tensor.grad;
  float* __restrict exp_avg = tensor.exp_avg;
  float* __restrict exp_avg_sq = tensor.exp_avg_sq;
  const int64_t n = tensor.numel;
#ifdef _OPENMP
#pragma omp parallel for simd schedule(static) num_threads(threads)
#endif
  for (int64_t i = 0; i < n; ++i) {
    adam_element(param, grad, exp_avg, exp_avg_sq, i, s);
  }
}

void hand_adam_step_many(std::span<const AdamTensor> tensors, int64_t step,
                         const AdamHypers& hypers, int threads) {
  threads = clamp_threads(threads);
  const AdamScalars s = adam_scalars(step, hypers);
  const int64_t count = static_cast<int64_t>(tensors.size());
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(threads)
#endif
  for (int64_t k = 0; k < count; ++k) adam_serial(tensors[static_cast<size_t>(k)], s);
}

void fill_deterministic(float* data, int64_t count, uint32_t seed, float lo, float hi,
                        int threads) {
  threads = clamp_threads(threads);
  const float scale = (hi - lo) / 16777216.0f;  // 2^24 steps
#ifdef _OPENMP
#pragma omp parallel for simd schedule(static) num_threads(threads)
#endif
  for (int64_t i = 0; i < count; ++i) {
    // A 32-bit mix (lowbias32) of the index and the seed: cheap, deterministic, spread out.
    uint32_t x = static_cast<uint32_t>(i) ^ (seed * 0x9E3779B9u);
    x ^= x >> 16;
    x *= 0x7FEB352Du;
    x ^= x >> 15;
    x *= 0x846CA68Bu;
    x ^= x >> 16;
    data[i] = lo + static_cast<float>(x >> 8) * scale;
  }
}

}  // namespace fuseopt::bench

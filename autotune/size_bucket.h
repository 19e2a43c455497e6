// Problem sizes in buckets: decisions are kept per bucket, not per exact size. Elementwise
// optimizer steps are smooth in size, so half-octave buckets of the element count (edges
// at 2^k and 1.5 * 2^k) lose little; the tensor count gets a log2 bucket of its own
// because many small tensors behave unlike one large one (docs/autotuning.md).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace fuseopt::autotune {

struct SizeBucket {
  int index = 0;       ///< 2k for [2^k, 1.5 * 2^k), 2k + 1 for [1.5 * 2^k, 2^(k+1))
  int64_t lower = 1;   ///< the smallest element count in the bucket
  int64_t upper = 2;   ///< one past the largest
  /// The size tuned for the bucket: its geometric centre, rounded to a multiple of 64
  /// elements when the bucket is that wide.
  int64_t center = 1;
  /// "e20.0" for [2^20, 1.5 * 2^20), "e20.5" for [1.5 * 2^20, 2^21).
  std::string name() const;
};

/// The bucket of `elements` (at least 1; smaller counts go to the first bucket).
SizeBucket bucket_for(int64_t elements);
/// The bucket with this index; nullopt outside [0, 125].
std::optional<SizeBucket> bucket_at(int index);

/// The key under which decisions for a problem are stored: "n:e20.5|t:0", element bucket
/// and log2 bucket of the tensor count.
std::string problem_key(const SizeBucket& elements, int64_t tensors);

/// A problem key read back: bucket index and tensor bucket. nullopt for other text.
struct ProblemKey {
  int element_bucket = 0;
  int tensor_bucket = 0;
};
std::optional<ProblemKey> parse_problem_key(const std::string& key);

/// How far apart two problem keys are, in half-octaves (tensor buckets count double).
int problem_distance(const ProblemKey& a, const ProblemKey& b);

}  // namespace fuseopt::autotune

// Half-octave size buckets and the problem keys built from them.
#include "autotune/size_bucket.h"

#include <bit>
#include <cmath>
#include <cstdlib>

namespace fuseopt::autotune {
namespace {

int floor_log2(int64_t value) { return 63 - std::countl_zero(static_cast<uint64_t>(value)); }

int64_t ceil_half_power(int k) {
  // ceil(1.5 * 2^k): 2 for k = 0, exact from k = 1 on.
  return k == 0 ? 2 : (int64_t{3} << (k - 1));
}

}  // namespace

std::string SizeBucket::name() const {
  return "e" + std::to_string(index / 2) + (index % 2 == 0 ? ".0" : ".5");
}

std::optional<SizeBucket> bucket_at(int index) {
  if (index < 0 || index > 125) return std::nullopt;
  const int k = index / 2;
  SizeBucket bucket;
  bucket.index = index;
  if (index % 2 == 0) {
    bucket.lower = int64_t{1} << k;
    bucket.upper = ceil_half_power(k);
  } else {
    bucket.lower = ceil_half_power(k);
    bucket.upper = k + 1 < 63 ? int64_t{1} << (k + 1) : INT64_MAX;
  }
  const double center = std::sqrt(static_cast<double>(bucket.lower) *
                                  static_cast<double>(bucket.upper));
  int64_t rounded = static_cast<int64_t>(std::llround(center));
  if (bucket.upper - bucket.lower >= 256) rounded = (rounded + 32) / 64 * 64;
  if (rounded < bucket.lower) rounded = bucket.lower;
  if (rounded >= bucket.upper) rounded = bucket.upper - 1;
  bucket.center = rounded;
  return bucket;
}

SizeBucket bucket_for(int64_t elements) {
  if (elements < 1) elements = 1;
  const int k = floor_log2(elements);
  const bool upper_half = elements >= ceil_half_power(k);
  return *bucket_at(2 * k + (upper_half ? 1 : 0));
}

std::string problem_key(const SizeBucket& elements, int64_t tensors) {
  const int tensor_bucket = floor_log2(tensors < 1 ? 1 : tensors);
  return "n:" + elements.name() + "|t:" + std::to_string(tensor_bucket);
}

std::optional<ProblemKey> parse_problem_key(const std::string& key) {
  // "n:e<k>.<0|5>|t:<b>"
  if (!key.starts_with("n:e")) return std::nullopt;
  const size_t dot = key.find('.', 3);
  const size_t bar = key.find("|t:");
  if (dot == std::string::npos || bar == std::string::npos || bar != dot + 2) return std::nullopt;
  try {
    size_t used = 0;
    const int k = std::stoi(key.substr(3, dot - 3), &used);
    if (used != dot - 3 || k < 0 || k > 62) return std::nullopt;
    const char half = key[dot + 1];
    if (half != '0' && half != '5') return std::nullopt;
    const std::string tensors = key.substr(bar + 3);
    const int t = std::stoi(tensors, &used);
    if (used != tensors.size() || t < 0 || t > 62) return std::nullopt;
    return ProblemKey{2 * k + (half == '5' ? 1 : 0), t};
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

int problem_distance(const ProblemKey& a, const ProblemKey& b) {
  return std::abs(a.element_bucket - b.element_bucket) +
         2 * std::abs(a.tensor_bucket - b.tensor_bucket);
}

}  // namespace fuseopt::autotune

// Summaries of timing samples: the tuner ranks by the median (robust to a preempted sample)
// and keeps the rest so a decision can be re-derived later.
#pragma once

#include <cstdint>
#include <vector>

namespace fuseopt::autotune {

struct SampleStats {
  int64_t count = 0;
  double median = 0;
  double p20 = 0;
  double p25 = 0;
  double p75 = 0;
  double p80 = 0;
  double min = 0;
  double mean = 0;
  double rel_stddev = 0;  ///< standard deviation / mean
  /// (p75 - p25) / median: the noise measure the stopping rule uses.
  double rel_spread() const { return median > 0 ? (p75 - p25) / median : 0; }
};

/// The quantile `q` in [0, 1] of `sorted` (ascending, not empty), interpolating linearly.
double quantile(const std::vector<double>& sorted, double q);
SampleStats summarize(std::vector<double> samples);
double median_of(std::vector<double> values);
/// Median absolute deviation from the median, scaled by 1.4826 to estimate a standard
/// deviation for normal data.
double robust_stddev(const std::vector<double>& values);

}  // namespace fuseopt::autotune

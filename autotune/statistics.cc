// Quantiles and robust spreads of timing samples.
#include "autotune/statistics.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "support/error.h"

namespace fuseopt::autotune {

double quantile(const std::vector<double>& sorted, double q) {
  FUSEOPT_CHECK(!sorted.empty(), "quantile of no samples");
  const double position = q * static_cast<double>(sorted.size() - 1);
  const size_t below = static_cast<size_t>(std::floor(position));
  const size_t above = std::min(below + 1, sorted.size() - 1);
  const double fraction = position - static_cast<double>(below);
  return sorted[below] + (sorted[above] - sorted[below]) * fraction;
}

SampleStats summarize(std::vector<double> samples) {
  SampleStats stats;
  stats.count = static_cast<int64_t>(samples.size());
  if (samples.empty()) return stats;
  std::sort(samples.begin(), samples.end());
  stats.median = quantile(samples, 0.5);
  stats.p20 = quantile(samples, 0.2);
  stats.p25 = quantile(samples, 0.25);
  stats.p75 = quantile(samples, 0.75);
  stats.p80 = quantile(samples, 0.8);
  stats.min = samples.front();
  stats.mean = std::accumulate(samples.begin(), samples.end(), 0.0) /
               static_cast<double>(samples.size());
  double squares = 0;
  for (double s : samples) squares += (s - stats.mean) * (s - stats.mean);
  const double variance =
      samples.size() > 1 ? squares / static_cast<double>(samples.size() - 1) : 0.0;
  stats.rel_stddev = stats.mean > 0 ? std::sqrt(variance) / stats.mean : 0;
  return stats;
}

double median_of(std::vector<double> values) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  return quantile(values, 0.5);
}

double robust_stddev(const std::vector<double>& values) {
  if (values.size() < 2) return 0;
  const double center = median_of(values);
  std::vector<double> deviations;
  deviations.reserve(values.size());
  for (double v : values) deviations.push_back(std::fabs(v - center));
  return 1.4826 * median_of(std::move(deviations));
}

}  // namespace fuseopt::autotune

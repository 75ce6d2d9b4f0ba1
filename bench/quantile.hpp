// Order statistics of a side's samples, shared by sidecore-bench and sidecore-bench-mpi.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <vector>

namespace sidecore::bench {

// Samples of one side: round-trip or transfer times in ns, or rates in operations per second.
using Samples = std::vector<double>;

// The q-quantile (0 to 1), interpolated between the two nearest samples; 0 when there are none.
inline double quantile(Samples samples, double q) {
  if (samples.empty()) return 0.0;
  const double position = q * static_cast<double>(samples.size() - 1);
  const auto low = static_cast<size_t>(std::floor(position));
  const auto high = static_cast<size_t>(std::ceil(position));
  std::nth_element(samples.begin(), samples.begin() + static_cast<long>(low), samples.end());
  const double a = samples[low];
  std::nth_element(samples.begin(), samples.begin() + static_cast<long>(high), samples.end());
  const double b = samples[high];
  return a + (b - a) * (position - static_cast<double>(low));
}

inline double median(const Samples& samples) { return quantile(samples, 0.5); }

}  // namespace sidecore::bench

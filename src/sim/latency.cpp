#include "sim/latency.h"

#include <algorithm>
#include <cmath>

namespace lifeline::sim {
namespace {
// Bucket b holds latencies up to kGrowth^b µs: 1.02^1023 µs is about 1,000 s.
const double kLogGrowth = std::log(1.02);
}  // namespace

int LatencyHistogram::Bucket(std::int64_t us) {
  if (us <= 1) {
    return 0;
  }
  const int bucket = static_cast<int>(std::ceil(std::log(static_cast<double>(us)) / kLogGrowth));
  return std::clamp(bucket, 0, kBuckets - 1);
}

std::int64_t LatencyHistogram::UpperBound(int bucket) {
  return static_cast<std::int64_t>(std::ceil(std::exp(kLogGrowth * bucket)));
}

void LatencyHistogram::Record(std::chrono::microseconds latency) {
  const std::int64_t us = std::max<std::int64_t>(latency.count(), 0);
  ++counts_[static_cast<std::size_t>(Bucket(us))];
  ++count_;
  max_us_ = std::max(max_us_, us);
}

void LatencyHistogram::Merge(const LatencyHistogram& other) {
  for (std::size_t i = 0; i < counts_.size(); ++i) {
    counts_[i] += other.counts_[i];
  }
  count_ += other.count_;
  max_us_ = std::max(max_us_, other.max_us_);
}

std::chrono::microseconds LatencyHistogram::Percentile(double fraction) const {
  if (count_ == 0) {
    return std::chrono::microseconds(0);
  }
  const auto rank = static_cast<std::uint64_t>(std::ceil(std::clamp(fraction, 0.0, 1.0) * static_cast<double>(count_)));
  std::uint64_t seen = 0;
  for (int b = 0; b < kBuckets; ++b) {
    seen += counts_[static_cast<std::size_t>(b)];
    if (seen >= std::max<std::uint64_t>(rank, 1)) {
      // Never report more than the largest latency recorded.
      return std::chrono::microseconds(std::min(UpperBound(b), max_us_));
    }
  }
  return std::chrono::microseconds(max_us_);
}

}  // namespace lifeline::sim

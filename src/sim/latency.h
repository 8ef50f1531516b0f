#pragma once
// A fixed-size latency histogram: buckets about 2% wide from 1 µs to about 17 minutes, so percentiles
// are read within 2% whatever the run's length, in 8 KiB. Not thread-safe: one per thread, Merge at
// the end.
#include <array>
#include <chrono>
#include <cstdint>

namespace lifeline::sim {

class LatencyHistogram {
 public:
  void Record(std::chrono::microseconds latency);
  void Merge(const LatencyHistogram& other);
  std::uint64_t count() const { return count_; }
  /// The latency at or below which `fraction` (0..1) of the recorded ones fall (a bucket's upper
  /// bound); zero when empty.
  std::chrono::microseconds Percentile(double fraction) const;
  std::chrono::microseconds Max() const { return std::chrono::microseconds(max_us_); }

 private:
  static constexpr int kBuckets = 1024;
  static int Bucket(std::int64_t us);
  static std::int64_t UpperBound(int bucket);

  std::array<std::uint64_t, kBuckets> counts_{};
  std::uint64_t count_ = 0;
  std::int64_t max_us_ = 0;
};

}  // namespace lifeline::sim

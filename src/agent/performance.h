#pragma once
// Performance: CPU, memory, disk I/O and network rates sampled every sample_interval, aggregated into
// min/avg/max per metric and sent every report_interval as kPerformance:
//   {"start_ms":T0,"end_ms":T1,"sample_interval_s":60,"samples":N,
//    "metrics":{"cpu.busy_percent":{"min":..,"avg":..,"max":..}, "net.eth0.rx_bytes_per_s":{...}, ...}}
// Memory stays bounded: an aggregate is four numbers per metric, at most kMaxMetrics metrics.
#include "agent/reports.h"

#include <boost/json.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace lifeline::agent {

// Parsers of /proc text. Pure; they skip what they cannot read and never throw.
struct CpuTimes {
  std::uint64_t total = 0;   // jiffies, all states
  std::uint64_t idle = 0;    // idle + iowait
  std::uint64_t iowait = 0;
};
/// The aggregate "cpu " line of /proc/stat.
std::optional<CpuTimes> ParseProcStat(std::string_view text);
struct DiskCounters {
  std::string name;
  std::uint64_t read_bytes = 0;
  std::uint64_t write_bytes = 0;
  std::uint64_t reads = 0;
  std::uint64_t writes = 0;
};
/// /proc/diskstats (sectors are 512 bytes there, whatever the disk's).
std::vector<DiskCounters> ParseDiskstats(std::string_view text);
struct NetCounters {
  std::string name;
  std::uint64_t rx_bytes = 0;
  std::uint64_t tx_bytes = 0;
  std::uint64_t rx_packets = 0;
  std::uint64_t tx_packets = 0;
  std::uint64_t rx_errors = 0;
  std::uint64_t tx_errors = 0;
};
/// /proc/net/dev.
std::vector<NetCounters> ParseNetDev(std::string_view text);

/// Counters read at one moment.
struct PerformanceSample {
  std::chrono::steady_clock::time_point at;
  std::optional<CpuTimes> cpu;
  std::map<std::string, std::int64_t> meminfo;  // bytes
  std::vector<DiskCounters> disks;              // whole disks only (as in /sys/block), no loop/ram
  std::vector<NetCounters> nets;                // without lo
};
/// Reads /proc of this machine.
PerformanceSample ReadPerformanceSample();

/// Metric values between two samples: cpu.busy_percent, cpu.iowait_percent, memory.used_percent,
/// memory.available_bytes, swap.used_bytes, disk.<d>.{read,write}_bytes_per_s, disk.<d>.{reads,writes}_per_s,
/// net.<if>.{rx,tx}_bytes_per_s, net.<if>.{rx,tx}_packets_per_s, net.<if>.errors_per_s. A counter that
/// went backwards (reset, wrap) gives no value for that pair.
std::map<std::string, double> ComputeMetrics(const PerformanceSample& before, const PerformanceSample& after);

class PerformanceAggregate {
 public:
  static constexpr std::size_t kMaxMetrics = 512;
  void Add(const std::map<std::string, double>& values);
  std::size_t samples() const { return samples_; }
  std::size_t metrics() const { return stats_.size(); }
  /// {"name":{"min":..,"avg":..,"max":..},...}
  boost::json::object ToJson() const;
  void Clear();

 private:
  struct Stats {
    double min = 0;
    double max = 0;
    double sum = 0;
    std::int64_t count = 0;
  };
  std::map<std::string, Stats> stats_;
  std::size_t samples_ = 0;
};

class PerformanceSource final : public PeriodicSource {
 public:
  using Sampler = std::function<PerformanceSample()>;
  PerformanceSource(std::chrono::seconds sample_interval, std::chrono::seconds report_interval,
                    Sampler sampler = ReadPerformanceSample);
  ~PerformanceSource() override;
  std::string name() const override { return "performance"; }

  /// Takes one sample; queues a report when report_interval has passed since the last. Returns whether
  /// a report was queued. Public for tests.
  bool SampleAndMaybeReport(DetectionSink& sink, std::int64_t now_ms);

 protected:
  std::chrono::milliseconds Tick(DetectionSink& sink) override;

 private:
  std::chrono::seconds sample_interval_;
  std::chrono::seconds report_interval_;
  Sampler sampler_;
  std::optional<PerformanceSample> last_;
  PerformanceAggregate aggregate_;
  std::int64_t window_start_ms_ = 0;
};

}  // namespace lifeline::agent

#include "agent/performance.h"

#include "agent/proc_text.h"

#include "agent/inventory.h"  // ParseMeminfo

#include "common/clock.h"
#include "common/log.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <filesystem>

namespace lifeline::agent {
namespace json = boost::json;
namespace {

std::shared_ptr<spdlog::logger> Log() { return log::Get("agent"); }



bool ToUint(std::string_view s, std::uint64_t* out) {
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && end == s.data() + s.size();
}

// Rounded to three decimals: more digits than that are noise and cost bytes.
double Round(double value) { return std::round(value * 1000.0) / 1000.0; }

constexpr std::size_t kMaxDevices = 64;

}  // namespace

std::optional<CpuTimes> ParseProcStat(std::string_view text) {
  std::optional<CpuTimes> result;
  ForEachLine(text, [&](std::string_view line) {
    if (result || !line.starts_with("cpu ")) {
      return;
    }
    const auto fields = Fields(line);
    // cpu user nice system idle iowait irq softirq steal guest guest_nice; guest time is already in user.
    if (fields.size() < 5) {
      return;
    }
    std::uint64_t values[8] = {};
    for (std::size_t i = 1; i < fields.size() && i <= 8; ++i) {
      if (!ToUint(fields[i], &values[i - 1])) {
        return;
      }
    }
    CpuTimes times;
    for (auto value : values) {
      times.total += value;
    }
    times.iowait = values[4];
    times.idle = values[3] + values[4];
    result = times;
  });
  return result;
}

std::vector<DiskCounters> ParseDiskstats(std::string_view text) {
  std::vector<DiskCounters> disks;
  ForEachLine(text, [&](std::string_view line) {
    const auto fields = Fields(line);
    // major minor name reads merged sectors_read ms_reading writes merged sectors_written ...
    if (fields.size() < 10) {
      return;
    }
    DiskCounters disk;
    disk.name = std::string(fields[2]);
    std::uint64_t sectors_read = 0;
    std::uint64_t sectors_written = 0;
    if (!ToUint(fields[3], &disk.reads) || !ToUint(fields[5], &sectors_read) || !ToUint(fields[7], &disk.writes) ||
        !ToUint(fields[9], &sectors_written)) {
      return;
    }
    disk.read_bytes = sectors_read * 512;
    disk.write_bytes = sectors_written * 512;
    disks.push_back(std::move(disk));
  });
  return disks;
}

std::vector<NetCounters> ParseNetDev(std::string_view text) {
  std::vector<NetCounters> nets;
  ForEachLine(text, [&](std::string_view line) {
    const auto colon = line.find(':');
    if (colon == std::string_view::npos) {
      return;  // the two header lines
    }
    const auto name_fields = Fields(line.substr(0, colon));
    const auto fields = Fields(line.substr(colon + 1));
    // rx: bytes packets errs drop fifo frame compressed multicast; tx: bytes packets errs drop ...
    if (name_fields.size() != 1 || fields.size() < 11) {
      return;
    }
    NetCounters net;
    net.name = std::string(name_fields[0]);
    if (!ToUint(fields[0], &net.rx_bytes) || !ToUint(fields[1], &net.rx_packets) ||
        !ToUint(fields[2], &net.rx_errors) || !ToUint(fields[8], &net.tx_bytes) ||
        !ToUint(fields[9], &net.tx_packets) || !ToUint(fields[10], &net.tx_errors)) {
      return;
    }
    nets.push_back(std::move(net));
  });
  return nets;
}

PerformanceSample ReadPerformanceSample() {
  PerformanceSample sample;
  sample.at = std::chrono::steady_clock::now();
  if (auto stat = ReadFileBounded("/proc/stat", 1024 * 1024)) {
    sample.cpu = ParseProcStat(*stat);
  }
  if (auto meminfo = ReadFileBounded("/proc/meminfo", 64 * 1024)) {
    sample.meminfo = ParseMeminfo(*meminfo);
  }
  if (auto diskstats = ReadFileBounded("/proc/diskstats", 1024 * 1024)) {
    for (auto& disk : ParseDiskstats(*diskstats)) {
      // Whole disks only: partitions double-count, loop and RAM disks are not the device's disks.
      std::error_code ec;
      if (disk.name.starts_with("loop") || disk.name.starts_with("ram") || disk.name.find('/') != std::string::npos ||
          !std::filesystem::exists("/sys/block/" + disk.name, ec) || sample.disks.size() >= kMaxDevices) {
        continue;
      }
      sample.disks.push_back(std::move(disk));
    }
  }
  if (auto netdev = ReadFileBounded("/proc/net/dev", 1024 * 1024)) {
    for (auto& net : ParseNetDev(*netdev)) {
      if (net.name != "lo" && sample.nets.size() < kMaxDevices) {
        sample.nets.push_back(std::move(net));
      }
    }
  }
  return sample;
}

std::map<std::string, double> ComputeMetrics(const PerformanceSample& before, const PerformanceSample& after) {
  std::map<std::string, double> metrics;
  if (before.cpu && after.cpu && after.cpu->total > before.cpu->total && after.cpu->idle >= before.cpu->idle &&
      after.cpu->iowait >= before.cpu->iowait) {
    const double total = static_cast<double>(after.cpu->total - before.cpu->total);
    const double idle = static_cast<double>(after.cpu->idle - before.cpu->idle);
    metrics["cpu.busy_percent"] = std::clamp(100.0 * (total - idle) / total, 0.0, 100.0);
    metrics["cpu.iowait_percent"] =
        std::clamp(100.0 * static_cast<double>(after.cpu->iowait - before.cpu->iowait) / total, 0.0, 100.0);
  }
  const auto mem = [&](const char* key) -> std::optional<double> {
    auto it = after.meminfo.find(key);
    return it == after.meminfo.end() ? std::nullopt : std::optional<double>(static_cast<double>(it->second));
  };
  if (auto total = mem("MemTotal"), available = mem("MemAvailable"); total && available && *total > 0) {
    metrics["memory.available_bytes"] = *available;
    metrics["memory.used_percent"] = std::clamp(100.0 * (*total - *available) / *total, 0.0, 100.0);
  }
  if (auto total = mem("SwapTotal"), free = mem("SwapFree"); total && free) {
    metrics["swap.used_bytes"] = std::max(0.0, *total - *free);
  }
  const double seconds = std::chrono::duration<double>(after.at - before.at).count();
  if (seconds <= 0) {
    return metrics;
  }
  const auto rate = [&](const std::string& name, std::uint64_t was, std::uint64_t is) {
    if (is >= was) {
      metrics[name] = static_cast<double>(is - was) / seconds;
    }
  };
  for (const auto& disk : after.disks) {
    auto old = std::find_if(before.disks.begin(), before.disks.end(), [&](const auto& d) { return d.name == disk.name; });
    if (old == before.disks.end()) {
      continue;
    }
    const std::string prefix = "disk." + disk.name + ".";
    rate(prefix + "read_bytes_per_s", old->read_bytes, disk.read_bytes);
    rate(prefix + "write_bytes_per_s", old->write_bytes, disk.write_bytes);
    rate(prefix + "reads_per_s", old->reads, disk.reads);
    rate(prefix + "writes_per_s", old->writes, disk.writes);
  }
  for (const auto& net : after.nets) {
    auto old = std::find_if(before.nets.begin(), before.nets.end(), [&](const auto& n) { return n.name == net.name; });
    if (old == before.nets.end()) {
      continue;
    }
    const std::string prefix = "net." + net.name + ".";
    rate(prefix + "rx_bytes_per_s", old->rx_bytes, net.rx_bytes);
    rate(prefix + "tx_bytes_per_s", old->tx_bytes, net.tx_bytes);
    rate(prefix + "rx_packets_per_s", old->rx_packets, net.rx_packets);
    rate(prefix + "tx_packets_per_s", old->tx_packets, net.tx_packets);
    rate(prefix + "errors_per_s", old->rx_errors + old->tx_errors, net.rx_errors + net.tx_errors);
  }
  return metrics;
}

void PerformanceAggregate::Add(const std::map<std::string, double>& values) {
  for (const auto& [name, value] : values) {
    if (!std::isfinite(value)) {
      continue;
    }
    auto it = stats_.find(name);
    if (it == stats_.end()) {
      if (stats_.size() >= kMaxMetrics) {
        continue;  // bounded: a machine with thousands of interfaces reports the first ones
      }
      it = stats_.emplace(name, Stats{value, value, 0, 0}).first;
    }
    auto& stats = it->second;
    stats.min = std::min(stats.min, value);
    stats.max = std::max(stats.max, value);
    stats.sum += value;
    ++stats.count;
  }
  ++samples_;
}

json::object PerformanceAggregate::ToJson() const {
  json::object metrics;
  for (const auto& [name, stats] : stats_) {
    metrics[name] = json::object{{"min", Round(stats.min)},
                                 {"avg", Round(stats.sum / static_cast<double>(std::max<std::int64_t>(1, stats.count)))},
                                 {"max", Round(stats.max)}};
  }
  return metrics;
}

void PerformanceAggregate::Clear() {
  stats_.clear();
  samples_ = 0;
}

PerformanceSource::PerformanceSource(std::chrono::seconds sample_interval, std::chrono::seconds report_interval,
                                     Sampler sampler)
    : sample_interval_(sample_interval), report_interval_(report_interval), sampler_(std::move(sampler)) {}

PerformanceSource::~PerformanceSource() { Stop(); }

bool PerformanceSource::SampleAndMaybeReport(DetectionSink& sink, std::int64_t now_ms) {
  PerformanceSample sample = sampler_();
  if (window_start_ms_ == 0) {
    window_start_ms_ = now_ms;
  }
  if (last_) {
    aggregate_.Add(ComputeMetrics(*last_, sample));
  }
  last_ = std::move(sample);
  // Half a sample of slack, so a report is not a whole sample late because of timer drift.
  const std::int64_t slack_ms = std::chrono::milliseconds(sample_interval_).count() / 2;
  if (aggregate_.samples() == 0 ||
      now_ms - window_start_ms_ + slack_ms < std::chrono::milliseconds(report_interval_).count()) {
    return false;
  }
  json::object payload{{"start_ms", window_start_ms_},
                       {"end_ms", now_ms},
                       {"sample_interval_s", sample_interval_.count()},
                       {"samples", static_cast<std::int64_t>(aggregate_.samples())},
                       {"metrics", aggregate_.ToJson()}};
  protocol::Message message;
  message.type = protocol::MessageType::kPerformance;
  message.timestamp_ms = now_ms;
  message.payload_json = json::serialize(payload);
  if (!sink.Emit({std::move(message)})) {
    // Kept and offered again after the next sample; the aggregate is bounded, so waiting costs nothing.
    Log()->warn("performance: the queue refused a report; it is kept and retried");
    return false;
  }
  aggregate_.Clear();
  window_start_ms_ = now_ms;
  return true;
}

std::chrono::milliseconds PerformanceSource::Tick(DetectionSink& sink) {
  SampleAndMaybeReport(sink, SystemClock::Instance().NowUnixMillis());
  return sample_interval_;
}

}  // namespace lifeline::agent

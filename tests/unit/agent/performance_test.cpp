// Performance: /proc parsers against fixtures and this machine, rates between two samples, min/avg/max
// aggregation with bounded memory, and a report per interval.
#include "agent/performance.h"

#include <boost/json.hpp>
#include <gtest/gtest.h>

#include <thread>

namespace lifeline::agent {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;

constexpr std::string_view kStat1 =
    "cpu  1000 0 500 8000 500 0 0 0 0 0\ncpu0 500 0 250 4000 250 0 0 0 0 0\nintr 12345\nctxt 999\n";
constexpr std::string_view kStat2 =
    "cpu  1600 0 700 8600 600 0 0 0 0 0\ncpu0 800 0 350 4300 300 0 0 0 0 0\n";
constexpr std::string_view kDiskstats1 =
    "   8       0 sda 100 0 2000 50 200 0 4000 80 0 100 130 0 0 0 0 0 0\n"
    "   8       1 sda1 90 0 1800 45 190 0 3900 75 0 90 120\n"
    "   7       0 loop0 1 0 2 0 0 0 0 0 0 0 0\n";
constexpr std::string_view kDiskstats2 =
    "   8       0 sda 150 0 4048 50 260 0 6048 80 0 100 130 0 0 0 0 0 0\n";
constexpr std::string_view kNetDev1 =
    "Inter-|   Receive                                                |  Transmit\n"
    " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n"
    "    lo:  5000      50    0    0    0     0          0         0     5000      50    0    0    0     0       0          0\n"
    "  eth0: 100000    1000    1    0    0     0          0         0    50000     500    0    0    0     0       0          0\n";
constexpr std::string_view kNetDev2 =
    "  eth0: 300000    3000    2    0    0     0          0         0    60000     600    1    0    0     0       0          0\n";

TEST(PerformanceParsers, ProcStat) {
  const auto times = ParseProcStat(kStat1);
  ASSERT_TRUE(times);
  EXPECT_EQ(times->total, 10000u);
  EXPECT_EQ(times->idle, 8500u);
  EXPECT_EQ(times->iowait, 500u);
  EXPECT_FALSE(ParseProcStat("cpu0 1 2 3 4\n"));
  EXPECT_FALSE(ParseProcStat("cpu  x y z w v\n"));
}

TEST(PerformanceParsers, Diskstats) {
  const auto disks = ParseDiskstats(kDiskstats1);
  ASSERT_EQ(disks.size(), 3u);
  EXPECT_EQ(disks[0].name, "sda");
  EXPECT_EQ(disks[0].reads, 100u);
  EXPECT_EQ(disks[0].read_bytes, 2000u * 512);
  EXPECT_EQ(disks[0].writes, 200u);
  EXPECT_EQ(disks[0].write_bytes, 4000u * 512);
  EXPECT_TRUE(ParseDiskstats("8 0 sda 1 2\n").empty());
}

TEST(PerformanceParsers, NetDev) {
  const auto nets = ParseNetDev(kNetDev1);
  ASSERT_EQ(nets.size(), 2u);
  EXPECT_EQ(nets[1].name, "eth0");
  EXPECT_EQ(nets[1].rx_bytes, 100000u);
  EXPECT_EQ(nets[1].rx_packets, 1000u);
  EXPECT_EQ(nets[1].rx_errors, 1u);
  EXPECT_EQ(nets[1].tx_bytes, 50000u);
  EXPECT_EQ(nets[1].tx_packets, 500u);
}

PerformanceSample Fixture(std::string_view stat, std::string_view diskstats, std::string_view netdev,
                          std::chrono::steady_clock::time_point at) {
  PerformanceSample sample;
  sample.at = at;
  sample.cpu = ParseProcStat(stat);
  sample.disks = ParseDiskstats(diskstats);
  sample.nets = ParseNetDev(netdev);
  sample.meminfo = {{"MemTotal", 1000}, {"MemAvailable", 250}, {"SwapTotal", 100}, {"SwapFree", 40}};
  return sample;
}

TEST(PerformanceMetrics, RatesBetweenTwoSamples) {
  const auto t0 = std::chrono::steady_clock::time_point(100s);
  const auto before = Fixture(kStat1, kDiskstats1, kNetDev1, t0);
  const auto after = Fixture(kStat2, kDiskstats2, kNetDev2, t0 + 2s);
  const auto metrics = ComputeMetrics(before, after);
  // cpu: total +1500, idle (idle+iowait) +700 -> busy 800/1500; iowait 100/1500.
  EXPECT_NEAR(metrics.at("cpu.busy_percent"), 100.0 * 800 / 1500, 1e-9);
  EXPECT_NEAR(metrics.at("cpu.iowait_percent"), 100.0 * 100 / 1500, 1e-9);
  EXPECT_DOUBLE_EQ(metrics.at("memory.used_percent"), 75.0);
  EXPECT_DOUBLE_EQ(metrics.at("memory.available_bytes"), 250.0);
  EXPECT_DOUBLE_EQ(metrics.at("swap.used_bytes"), 60.0);
  EXPECT_DOUBLE_EQ(metrics.at("disk.sda.read_bytes_per_s"), 2048.0 * 512 / 2);
  EXPECT_DOUBLE_EQ(metrics.at("disk.sda.write_bytes_per_s"), 2048.0 * 512 / 2);
  EXPECT_DOUBLE_EQ(metrics.at("disk.sda.reads_per_s"), 25.0);
  EXPECT_DOUBLE_EQ(metrics.at("disk.sda.writes_per_s"), 30.0);
  EXPECT_DOUBLE_EQ(metrics.at("net.eth0.rx_bytes_per_s"), 100000.0);
  EXPECT_DOUBLE_EQ(metrics.at("net.eth0.tx_bytes_per_s"), 5000.0);
  EXPECT_DOUBLE_EQ(metrics.at("net.eth0.rx_packets_per_s"), 1000.0);
  EXPECT_DOUBLE_EQ(metrics.at("net.eth0.errors_per_s"), 1.0);  // rx 1 -> 2, tx 0 -> 1, over 2 s
  EXPECT_EQ(metrics.count("disk.sda1.read_bytes_per_s"), 0u);  // gone in the second sample

  // Counters that went backwards (a reset, a replaced interface) give no rate rather than a huge one.
  const auto reset = ComputeMetrics(after, Fixture(kStat1, kDiskstats1, kNetDev1, t0 + 4s));
  EXPECT_EQ(reset.count("cpu.busy_percent"), 0u);
  EXPECT_EQ(reset.count("net.eth0.rx_bytes_per_s"), 0u);
  EXPECT_EQ(reset.count("disk.sda.read_bytes_per_s"), 0u);
}

TEST(PerformanceMetrics, ThisMachine) {
  const auto first = ReadPerformanceSample();
  std::this_thread::sleep_for(200ms);
  const auto second = ReadPerformanceSample();
  ASSERT_TRUE(first.cpu);
  EXPECT_GT(first.cpu->total, 0u);
  EXPECT_GT(first.meminfo.at("MemTotal"), 0);
  for (const auto& disk : first.disks) {
    EXPECT_FALSE(disk.name.starts_with("loop")) << disk.name;
  }
  for (const auto& net : first.nets) {
    EXPECT_NE(net.name, "lo");
  }
  const auto metrics = ComputeMetrics(first, second);
  ASSERT_TRUE(metrics.contains("cpu.busy_percent"));
  EXPECT_GE(metrics.at("cpu.busy_percent"), 0.0);
  EXPECT_LE(metrics.at("cpu.busy_percent"), 100.0);
  EXPECT_GT(metrics.at("memory.available_bytes"), 0.0);
  EXPECT_GT(metrics.at("memory.used_percent"), 0.0);
  for (const auto& [name, value] : metrics) {
    EXPECT_GE(value, 0.0) << name;
  }
}

TEST(PerformanceAggregate, MinAvgMaxAndBounded) {
  PerformanceAggregate aggregate;
  aggregate.Add({{"cpu", 10.0}, {"mem", 1.0}});
  aggregate.Add({{"cpu", 30.0}});
  aggregate.Add({{"cpu", 20.0}, {"mem", 3.0}, {"nan", std::nan("")}});
  EXPECT_EQ(aggregate.samples(), 3u);
  const auto out = aggregate.ToJson();
  EXPECT_EQ(json::serialize(out.at("cpu")), R"({"min":1E1,"avg":2E1,"max":3E1})");
  EXPECT_DOUBLE_EQ(out.at("mem").at("avg").as_double(), 2.0);
  EXPECT_FALSE(out.contains("nan"));
  for (int i = 0; i < 2000; ++i) {
    aggregate.Add({{"metric" + std::to_string(i), 1.0}});
  }
  EXPECT_EQ(aggregate.metrics(), PerformanceAggregate::kMaxMetrics);
  aggregate.Clear();
  EXPECT_EQ(aggregate.samples(), 0u);
  EXPECT_TRUE(aggregate.ToJson().empty());
}

class CollectingSink final : public DetectionSink {
 public:
  bool Emit(std::vector<protocol::Message> drafts, std::optional<std::pair<std::string, FilePosition>>) override {
    if (refuse) {
      return false;
    }
    for (auto& draft : drafts) {
      messages.push_back(std::move(draft));
    }
    return true;
  }
  bool refuse = false;
  std::vector<protocol::Message> messages;
};

TEST(PerformanceSource, ReportsOncePerIntervalAndKeepsARefusedReport) {
  int tick = 0;
  const auto t0 = std::chrono::steady_clock::time_point(1000s);
  // CPU busy 50 % then 100 %, then 50 % ...
  auto sampler = [&] {
    PerformanceSample sample;
    sample.at = t0 + std::chrono::seconds(tick);
    const std::uint64_t busy = (tick * 3 + (tick / 2)) * 100;  // steps of 300 or 400 jiffies busy
    sample.cpu = CpuTimes{.total = static_cast<std::uint64_t>(tick) * 400 + 1000, .idle = tick * 400ull + 1000 - busy,
                          .iowait = 0};
    ++tick;
    return sample;
  };
  PerformanceSource source(1s, 3s, sampler);
  CollectingSink sink;
  const std::int64_t ms0 = 1'700'000'000'000;
  EXPECT_FALSE(source.SampleAndMaybeReport(sink, ms0));
  EXPECT_FALSE(source.SampleAndMaybeReport(sink, ms0 + 1000));
  EXPECT_FALSE(source.SampleAndMaybeReport(sink, ms0 + 2000));
  sink.refuse = true;
  EXPECT_FALSE(source.SampleAndMaybeReport(sink, ms0 + 3000));
  sink.refuse = false;
  EXPECT_TRUE(source.SampleAndMaybeReport(sink, ms0 + 4000));
  ASSERT_EQ(sink.messages.size(), 1u);
  EXPECT_EQ(sink.messages[0].type, protocol::MessageType::kPerformance);
  const auto payload = json::parse(sink.messages[0].payload_json).as_object();
  EXPECT_EQ(payload.at("start_ms").as_int64(), ms0);
  EXPECT_EQ(payload.at("end_ms").as_int64(), ms0 + 4000);
  EXPECT_EQ(payload.at("samples").as_int64(), 4);  // nothing lost by the refusal
  EXPECT_EQ(payload.at("sample_interval_s").as_int64(), 1);
  const auto& cpu = payload.at("metrics").at("cpu.busy_percent").as_object();
  EXPECT_DOUBLE_EQ(cpu.at("min").as_double(), 75.0);
  EXPECT_DOUBLE_EQ(cpu.at("max").as_double(), 100.0);
  EXPECT_DOUBLE_EQ(cpu.at("avg").as_double(), 87.5);
  // The next window starts afresh.
  EXPECT_FALSE(source.SampleAndMaybeReport(sink, ms0 + 5000));
}

}  // namespace
}  // namespace lifeline::agent

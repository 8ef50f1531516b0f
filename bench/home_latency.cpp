#include "bench/home_latency.h"

#include <fmt/format.h>
#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>
#include <vector>

#include "bench/home_ingest.h"
#include "cli/subprocess.h"
#include "crypto/keys.h"
#include "sim/batch_client.h"
#include "sim/fleet.h"

namespace lifeline::bench {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

std::int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string ReadAll(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

double Percentile(std::vector<double> values, double fraction) {
  if (values.empty()) {
    return 0;
  }
  std::sort(values.begin(), values.end());
  const auto rank = static_cast<std::size_t>(std::ceil(fraction * static_cast<double>(values.size())));
  return values[std::clamp<std::size_t>(rank, 1, values.size()) - 1];
}

std::vector<fs::path> MailFiles(const fs::path& dir) {
  std::vector<fs::path> files;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (entry.path().extension() == ".eml") {
      files.push_back(entry.path());
    }
  }
  return files;
}

}  // namespace

LatencyFigures BenchAlertToEmail(const LatencyBenchOptions& o) {
  LatencyFigures f;
  std::error_code ec;
  fs::create_directories(o.dir / "mail", ec);
  auto sink = cli::Subprocess::Spawn({"/usr/bin/python3", std::string(LIFELINE_SOURCE_DIR) + "/scripts/mail-sink",
                                      "--listen", "127.0.0.1:0", "--port-file", (o.dir / "port").string(), "--dir",
                                      (o.dir / "mail").string()},
                                     o.dir / "mail-sink.log");
  if (!sink) {
    f.error = "cannot start scripts/mail-sink: " + sink.error().message();
    return f;
  }
  const auto sink_deadline = Clock::now() + std::chrono::seconds(20);
  while (ReadAll(o.dir / "port").empty() && Clock::now() < sink_deadline && sink->Running()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  const std::string port = ReadAll(o.dir / "port");
  if (port.empty()) {
    f.error = "the mail sink did not start (needs /usr/bin/python3 with python3-aiosmtpd): " +
              ReadAll(o.dir / "mail-sink.log").substr(0, 300);
    return f;
  }
  const int devices = std::max(1, (o.alerts + o.alerts_per_device - 1) / std::max(o.alerts_per_device, 1));
  std::string why;
  auto home = StartBenchHome(o.dir / "home", fmt::format("path = \"{}/home/home.db\"", o.dir.string()),
                             fmt::format("smtp://127.0.0.1:{}", std::stoi(port)), devices, &why);
  if (!home) {
    f.error = why;
    return f;
  }
  BenchHome& h = **home;
  sim::BatchClient client(h.trust, h.devices.size(), std::chrono::seconds(10));
  std::mt19937_64 random(7);
  // Each device's first request opens its connection: warm them with a heartbeat, so the alerts'
  // figures are not a TLS handshake each.
  for (const auto& device : h.devices) {
    protocol::Batch batch{.batch_id = crypto::RandomHex(16), .device = device.identity,
                          .sent_at_ms = NowNs() / 1'000'000, .agent_version = LIFELINE_VERSION};
    batch.messages.push_back(sim::MakeHeartbeat(batch.sent_at_ms, 1, 3600, random));
    client.Send(device, h.url, sim::BatchClient::Seal(batch, device, h.trust), batch.batch_id);
  }

  std::vector<std::int64_t> sent_ns(static_cast<std::size_t>(o.alerts), 0);
  std::vector<double> replies;
  const sim::CatalogueEntry entry{"LAT", protocol::Severity::kCritical, "Latency probe: controller fault", 1,
                                  std::chrono::seconds(0), 1};
  auto next = Clock::now();
  for (int i = 0; i < o.alerts; ++i) {
    std::this_thread::sleep_until(next);
    next += o.spacing;
    const auto& device = h.devices[static_cast<std::size_t>(i) % h.devices.size()];
    const std::int64_t start_ns = NowNs();
    protocol::Batch batch{.batch_id = crypto::RandomHex(16), .device = device.identity,
                          .sent_at_ms = start_ns / 1'000'000, .agent_version = LIFELINE_VERSION};
    auto alert = sim::MakeAlert(batch.sent_at_ms, static_cast<std::uint64_t>(i) + 2, entry, random);
    alert.alert.code = fmt::format("LAT-{:06}", i);
    batch.messages.push_back(std::move(alert));
    const auto out = client.Send(device, h.url, sim::BatchClient::Seal(batch, device, h.trust), batch.batch_id);
    if (out.kind != sim::SendOutcome::Kind::kAnswered || out.accepted != 1) {
      f.error = "an alert was not taken: " + out.detail;
      break;
    }
    sent_ns[static_cast<std::size_t>(i)] = start_ns;
    replies.push_back(static_cast<double>(NowNs() - start_ns) / 1e6);
    ++f.sent;
  }

  const auto deadline = Clock::now() + o.max_wait;
  while (static_cast<int>(MailFiles(o.dir / "mail").size()) < f.sent && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  std::vector<double> latencies;
  const std::regex code("LAT-(\\d{6})");
  for (const auto& file : MailFiles(o.dir / "mail")) {
    std::smatch match;
    const std::string text = ReadAll(file);
    struct stat info {};
    if (!std::regex_search(text, match, code) || stat(file.c_str(), &info) != 0) {
      continue;
    }
    const auto index = static_cast<std::size_t>(std::stoi(match[1].str()));
    if (index >= sent_ns.size() || sent_ns[index] == 0) {
      continue;
    }
    const std::int64_t written_ns = static_cast<std::int64_t>(info.st_mtim.tv_sec) * 1'000'000'000 + info.st_mtim.tv_nsec;
    latencies.push_back(static_cast<double>(written_ns - sent_ns[index]) / 1e6);
  }
  f.received = static_cast<int>(latencies.size());
  f.email_p50_ms = Percentile(latencies, 0.5);
  f.email_p99_ms = Percentile(latencies, 0.99);
  f.email_max_ms = latencies.empty() ? 0 : *std::max_element(latencies.begin(), latencies.end());
  f.reply_p50_ms = Percentile(replies, 0.5);
  f.reply_p99_ms = Percentile(replies, 0.99);
  if (f.error.empty() && f.received < f.sent) {
    f.error = fmt::format("{} of {} emails arrived within {} s", f.received, f.sent, o.max_wait.count());
  }
  home->reset();
  sink->Terminate(std::chrono::seconds(5));
  return f;
}

}  // namespace lifeline::bench

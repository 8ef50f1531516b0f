#include "agent/heartbeat_source.h"

#include "common/clock.h"
#include "protocol/codec.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace lifeline::agent {

std::string FormatUptime(std::chrono::seconds uptime) {
  const std::int64_t s = std::max<std::int64_t>(0, uptime.count());
  const std::int64_t days = s / 86400;
  const std::int64_t hours = s % 86400 / 3600;
  const std::int64_t minutes = s % 3600 / 60;
  if (days > 0) {
    return fmt::format("{}d {}h", days, hours);
  }
  if (hours > 0) {
    return fmt::format("{}h {}m", hours, minutes);
  }
  if (minutes > 0) {
    return fmt::format("{}m {}s", minutes, s % 60);
  }
  return fmt::format("{}s", s);
}

std::string HeartbeatStatus(std::string_view agent_version, std::chrono::seconds uptime,
                            std::string_view queue_status) {
  std::string status = fmt::format("ok; agent {}; up {}", agent_version, FormatUptime(uptime));
  if (!queue_status.empty()) {
    status += "; ";
    status += queue_status;
  }
  return CleanUtf8(status, protocol::kMaxTextBytes);
}

HeartbeatSource::HeartbeatSource(HeartbeatOptions options)
    : options_(std::move(options)), random_(options_.seed) {}

HeartbeatSource::~HeartbeatSource() { Stop(); }

std::chrono::milliseconds HeartbeatSource::Tick(DetectionSink& sink) {
  protocol::Message heartbeat;
  heartbeat.type = protocol::MessageType::kHeartbeat;
  heartbeat.timestamp_ms = SystemClock::Instance().NowUnixMillis();
  // The latest the next one is due, so a home watching for silence does not count jitter as lateness.
  const double jitter = std::clamp(options_.jitter, 0.0, 0.9);
  heartbeat.heartbeat.interval_seconds =
      static_cast<std::int64_t>(std::ceil(static_cast<double>(options_.interval.count()) * (1.0 + jitter) - 1e-6));
  const auto uptime =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - started_);
  heartbeat.heartbeat.status =
      HeartbeatStatus(LIFELINE_VERSION, uptime, options_.queue_status ? options_.queue_status() : "");
  if (!sink.Emit({heartbeat})) {
    // A heartbeat that could not be stored is tried again soon rather than a whole interval later.
    return std::chrono::seconds(1);
  }
  return JitteredInterval(options_.interval, options_.jitter, random_);
}

}  // namespace lifeline::agent

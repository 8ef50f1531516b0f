#pragma once
// The report sources (heartbeat, inventory, configuration files, performance) and what they share: a
// periodic thread, jittered intervals, text made safe for JSON, SHA-256.
#include "agent/agent_config.h"
#include "agent/queue.h"
#include "agent/source.h"
#include "common/utf8.h"  // CleanUtf8, used by every report

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace lifeline::agent {

/// What the service may add to the reports. Empty members get defaults.
struct ReportHooks {
  /// The queue part of the heartbeat's status, e.g. "queue 12, evicted 0". Default: "queue depth N".
  /// Called on the heartbeat's thread.
  std::function<std::string()> queue_status;
};

/// Builds the report sources the config asks for. Returns Errc::kBadRule (naming the key in `error`)
/// for an invalid [[config_files]] redact pattern or inconsistent intervals.
[[nodiscard]] Result<std::vector<std::unique_ptr<Source>>> MakeReportSources(const AgentConfig& config,
                                                                             AgentQueue& queue, std::string* error,
                                                                             ReportHooks hooks = {});

/// Payloads are kept below this, leaving room under protocol::kMaxPayloadBytes (256 KiB) and keeping a
/// batch of a few reports under the home's request-size limit.
inline constexpr std::size_t kReportPayloadBudget = 192 * 1024;

/// `interval` scaled by a uniform random factor in [1 - fraction, 1 + fraction] (fraction clamped to
/// [0, 0.9]); at least 1 ms.
std::chrono::milliseconds JitteredInterval(std::chrono::milliseconds interval, double fraction,
                                           std::mt19937_64& random);

/// Lowercase hex SHA-256.
std::string Sha256Hex(std::string_view data);

/// Reads at most `max_bytes` of a file (for /proc files and configuration files). `truncated` (when
/// not null) says whether there was more. Errors for a missing or unreadable file.
[[nodiscard]] Result<std::string> ReadFileBounded(const std::string& path, std::size_t max_bytes,
                                                  bool* truncated = nullptr);

/// A Source whose thread calls Tick() and then waits as long as it returns, until Stop(). Derived
/// classes must call Stop() in their destructor (before their members go).
class PeriodicSource : public Source {
 public:
  ~PeriodicSource() override;
  void Start(DetectionSink& sink) final;
  void Stop() final;

 protected:
  /// One round of work; returns the wait before the next round.
  virtual std::chrono::milliseconds Tick(DetectionSink& sink) = 0;
  /// Cuts the current wait short: the next Tick runs now.
  void Wake();

 private:
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  bool woken_ = false;
  std::thread thread_;
};

}  // namespace lifeline::agent

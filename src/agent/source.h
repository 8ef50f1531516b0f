#pragma once
// What the agent watches. Every detection source (log files, command checks, health checks, syslog) and
// every report (heartbeat, inventory, configuration, performance) is a Source: it runs on its own thread
// and hands what it found to the DetectionSink, which stores it in the durable queue before anything is
// sent. Sources never talk to the network towards the home; only the sender does.
#include "agent/log_follower.h"
#include "protocol/message.h"

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace lifeline::agent {

class DetectionSink {
 public:
  virtual ~DetectionSink() = default;
  /// Stores `drafts` in the queue (ids and sequence numbers are assigned there) together with a log
  /// position, in one transaction. False when nothing could be stored: the source keeps what it has and
  /// offers it again later, so nothing is lost.
  [[nodiscard]] virtual bool Emit(std::vector<protocol::Message> drafts,
                                  std::optional<std::pair<std::string, FilePosition>> position = std::nullopt) = 0;
};

class Source {
 public:
  virtual ~Source() = default;
  /// For log lines: "logs", "heartbeat", "syslog udp 127.0.0.1:5514", ...
  virtual std::string name() const = 0;
  /// Starts the source's thread; it emits into `sink` until Stop(). `sink` outlives the source.
  virtual void Start(DetectionSink& sink) = 0;
  /// Stops and joins the thread. Idempotent.
  virtual void Stop() = 0;
  /// Asks the source to report now (the home's 'send inventory now'); false if it cannot.
  virtual bool SendNow() { return false; }
};

}  // namespace lifeline::agent

#pragma once
// Alert to email on loopback (issue 4): a real home (HomeService in this process, SQLite) with
// scripts/mail-sink as its SMTP server; the simulator's client sends alerts one at a time, each with
// a new code (so each opens a ticket and queues one email), and the latency of each is the time from
// just before the device sealed and sent it to the mail sink writing the message file (its mtime).
// Beside it, the same alerts' ingest round trip (send to the home's signed reply): the rest of the
// time is the outbox, the notifier and SMTP.
#include <chrono>
#include <filesystem>
#include <string>

namespace lifeline::bench {

struct LatencyBenchOptions {
  std::filesystem::path dir;
  int alerts = 100;
  std::chrono::milliseconds spacing{100};  // between alerts: latency, not queueing, is measured
  std::chrono::seconds max_wait{30};       // for the emails after the last alert
  int alerts_per_device = 5;  // below the home's storm control (10 per device per hour)
};

struct LatencyFigures {
  std::string error;  // set when it could not run
  int sent = 0;
  int received = 0;  // emails matched to an alert
  double email_p50_ms = 0;
  double email_p99_ms = 0;
  double email_max_ms = 0;
  double reply_p50_ms = 0;
  double reply_p99_ms = 0;
};

/// Bounded: alerts * spacing, then at most max_wait.
LatencyFigures BenchAlertToEmail(const LatencyBenchOptions& options);

}  // namespace lifeline::bench

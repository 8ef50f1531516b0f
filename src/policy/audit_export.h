#pragma once
// The audit log leaving the policy manager: exports (JSON lines, CSV), reading a JSON-lines export
// back for offline verification, and forwarding each record to a syslog server (RFC 5424).
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <ostream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "common/result.h"
#include "policy/audit_log.h"

namespace lifeline::policy {

/// One JSON object per line, in sequence order; each checkpoint is its own line right after the
/// record it covers:
///   {"type":"record","sequence":1,"time_ms":..,"received_ms":..,"record_id":"..","source":"..",
///    "kind":"..","actor":"..","subject":"..","details":"{...}","prev_hash":"..","hash":".."}
///   {"type":"checkpoint","sequence":1,"hash":"..","time_ms":..,"signature":"<base64>"}
/// "details" is the exact hashed text of the details object (a JSON string), so an auditor hashes
/// what is there without re-serializing JSON.
std::string AuditRecordJson(const AuditRecord& record);
std::string AuditCheckpointJson(const AuditCheckpoint& checkpoint);
void WriteAuditJsonLines(std::ostream& out, const std::vector<AuditRecord>& records,
                         const std::vector<AuditCheckpoint>& checkpoints);
/// RFC 4180 CSV with a header row: type,sequence,time,time_ms,received_ms,record_id,source,kind,
/// actor,subject,details,prev_hash,hash,signature (time is RFC 3339 UTC; checkpoints are rows of
/// type "checkpoint" with only sequence, time, time_ms, hash and signature).
void WriteAuditCsv(std::ostream& out, const std::vector<AuditRecord>& records,
                   const std::vector<AuditCheckpoint>& checkpoints);

/// A JSON-lines export read back, in file order. Lines that are not a record or a checkpoint are
/// kept as problems (line number and why) rather than failing the whole read.
struct AuditExport {
  std::vector<AuditRecord> records;
  std::vector<AuditCheckpoint> checkpoints;
  struct BadLine {
    std::int64_t line = 0;
    std::string why;
  };
  std::vector<BadLine> bad_lines;
};
AuditExport ParseAuditJsonLines(std::string_view text);

/// The RFC 5424 line for a record: <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID
/// [lifeline-audit@32473 seq=".." source=".." actor=".." subject=".." record_id=".." hash=".."] details
/// with PRI = facility * 8 + 6 (informational), TIMESTAMP the record's own time, MSGID its kind.
/// (32473 is the example enterprise number of RFC 5612.)
std::string FormatAuditSyslog(const AuditRecord& record, const AuditSyslogOptions& options,
                              std::string_view hostname, int pid);

/// Sends lines to a syslog server from its own thread, so a slow or absent server never holds up an
/// append: UDP datagrams, or TCP with RFC 6587 octet counting ("<len> <line>"), reconnecting after
/// a failure. At most 10,000 lines wait; beyond that, and when a send fails, lines are dropped and
/// counted (the log itself is the record; syslog is a copy).
class SyslogForwarder {
 public:
  explicit SyslogForwarder(AuditSyslogOptions options);
  ~SyslogForwarder();
  SyslogForwarder(const SyslogForwarder&) = delete;
  void Send(const AuditRecord& record);
  std::int64_t dropped() const { return dropped_.load(); }

 private:
  void Run();
  bool Deliver(const std::string& line);
  AuditSyslogOptions options_;
  std::string hostname_;
  int fd_ = -1;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::string> queue_;
  bool stopping_ = false;
  std::atomic<std::int64_t> dropped_{0};
  std::thread thread_;
};

}  // namespace lifeline::policy

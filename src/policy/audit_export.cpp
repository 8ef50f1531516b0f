#include "policy/audit_export.h"

#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <fmt/format.h>

#include <chrono>

#include "common/clock.h"
#include "common/log.h"

namespace lifeline::policy {
namespace {

constexpr std::size_t kMaxQueuedLines = 10000;

std::string Rfc3339(std::int64_t ms) {
  return FormatRfc3339(std::chrono::system_clock::time_point(std::chrono::milliseconds(ms)));
}

std::string CsvField(std::string_view text) {
  if (text.find_first_of(",\"\r\n") == std::string_view::npos) {
    return std::string(text);
  }
  std::string out = "\"";
  for (const char c : text) {
    if (c == '"') {
      out += '"';
    }
    out += c;
  }
  out += '"';
  return out;
}

/// SD-PARAM values escape '"', '\' and ']' (RFC 5424 section 6.3.3).
std::string SdValue(std::string_view text) {
  std::string out;
  for (const char c : text) {
    if (c == '"' || c == '\\' || c == ']') {
      out += '\\';
    }
    out += c;
  }
  return out;
}

/// Header fields are printable US-ASCII without spaces (RFC 5424 section 6); "-" when empty.
std::string HeaderField(std::string_view text, std::size_t max) {
  std::string out;
  for (const char c : text.substr(0, max)) {
    out += (c > 32 && c < 127) ? c : '_';
  }
  return out.empty() ? "-" : out;
}

bool ReadString(const boost::json::object& o, const char* key, std::string* out) {
  const auto* v = o.if_contains(key);
  if (v == nullptr || !v->is_string()) {
    return false;
  }
  *out = std::string(v->as_string());
  return true;
}

bool ReadInt(const boost::json::object& o, const char* key, std::int64_t* out) {
  const auto* v = o.if_contains(key);
  if (v == nullptr || !v->is_int64()) {
    if (v != nullptr && v->is_uint64() && v->as_uint64() <= INT64_MAX) {
      *out = static_cast<std::int64_t>(v->as_uint64());
      return true;
    }
    return false;
  }
  *out = v->as_int64();
  return true;
}

}  // namespace

std::string AuditRecordJson(const AuditRecord& r) {
  boost::json::object o;
  o["type"] = "record";
  o["sequence"] = r.sequence;
  o["time_ms"] = r.time_ms;
  o["received_ms"] = r.received_ms;
  o["record_id"] = r.record_id;
  o["source"] = r.source;
  o["kind"] = r.kind;
  o["actor"] = r.actor;
  o["subject"] = r.subject;
  o["details"] = r.details;
  o["prev_hash"] = r.prev_hash;
  o["hash"] = r.hash;
  return boost::json::serialize(o);
}

std::string AuditCheckpointJson(const AuditCheckpoint& c) {
  boost::json::object o;
  o["type"] = "checkpoint";
  o["sequence"] = c.sequence;
  o["hash"] = c.hash;
  o["time_ms"] = c.time_ms;
  o["signature"] = c.signature;
  return boost::json::serialize(o);
}

void WriteAuditJsonLines(std::ostream& out, const std::vector<AuditRecord>& records,
                         const std::vector<AuditCheckpoint>& checkpoints) {
  std::size_t next_checkpoint = 0;
  for (const auto& record : records) {
    out << AuditRecordJson(record) << '\n';
    while (next_checkpoint < checkpoints.size() && checkpoints[next_checkpoint].sequence <= record.sequence) {
      out << AuditCheckpointJson(checkpoints[next_checkpoint++]) << '\n';
    }
  }
  // Checkpoints beyond the last record (a truncated store): exported so verify can say so.
  for (; next_checkpoint < checkpoints.size(); ++next_checkpoint) {
    out << AuditCheckpointJson(checkpoints[next_checkpoint]) << '\n';
  }
}

void WriteAuditCsv(std::ostream& out, const std::vector<AuditRecord>& records,
                   const std::vector<AuditCheckpoint>& checkpoints) {
  out << "type,sequence,time,time_ms,received_ms,record_id,source,kind,actor,subject,details,prev_hash,hash,"
         "signature\r\n";
  std::size_t next_checkpoint = 0;
  auto write_checkpoint = [&out](const AuditCheckpoint& c) {
    out << fmt::format("checkpoint,{},{},{},,,,,,,,,{},{}\r\n", c.sequence, Rfc3339(c.time_ms), c.time_ms,
                       CsvField(c.hash), CsvField(c.signature));
  };
  for (const auto& r : records) {
    out << fmt::format("record,{},{},{},{},{},{},{},{},{},{},{},{},\r\n", r.sequence, Rfc3339(r.time_ms),
                       r.time_ms, r.received_ms, CsvField(r.record_id), CsvField(r.source), CsvField(r.kind),
                       CsvField(r.actor), CsvField(r.subject), CsvField(r.details), CsvField(r.prev_hash),
                       CsvField(r.hash));
    while (next_checkpoint < checkpoints.size() && checkpoints[next_checkpoint].sequence <= r.sequence) {
      write_checkpoint(checkpoints[next_checkpoint++]);
    }
  }
  for (; next_checkpoint < checkpoints.size(); ++next_checkpoint) {
    write_checkpoint(checkpoints[next_checkpoint]);
  }
}

AuditExport ParseAuditJsonLines(std::string_view text) {
  AuditExport parsed;
  std::int64_t line_number = 0;
  while (!text.empty()) {
    const auto end = text.find('\n');
    std::string_view line = text.substr(0, end);
    text = end == std::string_view::npos ? std::string_view() : text.substr(end + 1);
    ++line_number;
    if (!line.empty() && line.back() == '\r') {
      line.remove_suffix(1);
    }
    if (line.empty()) {
      continue;
    }
    boost::system::error_code ec;
    auto value = boost::json::parse(line, ec);
    if (ec || !value.is_object()) {
      parsed.bad_lines.push_back({line_number, "not a JSON object"});
      continue;
    }
    const auto& o = value.as_object();
    std::string type;
    ReadString(o, "type", &type);
    if (type == "record") {
      AuditRecord r;
      if (!ReadInt(o, "sequence", &r.sequence) || !ReadInt(o, "time_ms", &r.time_ms) ||
          !ReadInt(o, "received_ms", &r.received_ms) || !ReadString(o, "record_id", &r.record_id) ||
          !ReadString(o, "source", &r.source) || !ReadString(o, "kind", &r.kind) ||
          !ReadString(o, "actor", &r.actor) || !ReadString(o, "subject", &r.subject) ||
          !ReadString(o, "details", &r.details) || !ReadString(o, "prev_hash", &r.prev_hash) ||
          !ReadString(o, "hash", &r.hash)) {
        parsed.bad_lines.push_back({line_number, "a record with a missing or mistyped field"});
        continue;
      }
      parsed.records.push_back(std::move(r));
    } else if (type == "checkpoint") {
      AuditCheckpoint c;
      if (!ReadInt(o, "sequence", &c.sequence) || !ReadString(o, "hash", &c.hash) ||
          !ReadInt(o, "time_ms", &c.time_ms) || !ReadString(o, "signature", &c.signature)) {
        parsed.bad_lines.push_back({line_number, "a checkpoint with a missing or mistyped field"});
        continue;
      }
      parsed.checkpoints.push_back(std::move(c));
    } else {
      parsed.bad_lines.push_back({line_number, "neither a record nor a checkpoint"});
    }
  }
  return parsed;
}

std::string FormatAuditSyslog(const AuditRecord& r, const AuditSyslogOptions& options,
                              std::string_view hostname, int pid) {
  const int pri = options.facility * 8 + 6;
  return fmt::format(
      "<{}>1 {} {} {} {} {} [lifeline-audit@32473 seq=\"{}\" source=\"{}\" actor=\"{}\" subject=\"{}\" "
      "record_id=\"{}\" hash=\"{}\"] {}",
      pri, Rfc3339(r.time_ms), HeaderField(hostname, 255), HeaderField(options.app_name, 48), pid,
      HeaderField(r.kind, 32), r.sequence, SdValue(r.source), SdValue(r.actor), SdValue(r.subject),
      SdValue(r.record_id), r.hash, r.details);
}

SyslogForwarder::SyslogForwarder(AuditSyslogOptions options) : options_(std::move(options)) {
  hostname_ = options_.hostname;
  if (hostname_.empty()) {
    char name[256] = {};
    ::gethostname(name, sizeof(name) - 1);
    hostname_ = name;
  }
  thread_ = std::thread([this] { Run(); });
}

SyslogForwarder::~SyslogForwarder() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
  if (fd_ >= 0) {
    ::close(fd_);
  }
}

void SyslogForwarder::Send(const AuditRecord& record) {
  std::string line = FormatAuditSyslog(record, options_, hostname_, static_cast<int>(::getpid()));
  {
    std::lock_guard lock(mutex_);
    if (queue_.size() >= kMaxQueuedLines) {
      ++dropped_;
      return;
    }
    queue_.push_back(std::move(line));
  }
  wake_.notify_one();
}

void SyslogForwarder::Run() {
  std::unique_lock lock(mutex_);
  while (true) {
    wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
    // On stop, what is queued still goes out (bounded: each send has a 2 s timeout).
    if (queue_.empty()) {
      return;
    }
    std::string line = std::move(queue_.front());
    queue_.pop_front();
    lock.unlock();
    if (!Deliver(line)) {
      ++dropped_;
    }
    lock.lock();
  }
}

bool SyslogForwarder::Deliver(const std::string& line) {
  const bool tcp = options_.transport == AuditSyslogOptions::Transport::kTcp;
  if (fd_ < 0) {
    addrinfo hints{};
    hints.ai_socktype = tcp ? SOCK_STREAM : SOCK_DGRAM;
    addrinfo* found = nullptr;
    if (::getaddrinfo(options_.host.c_str(), std::to_string(options_.port).c_str(), &hints, &found) != 0 ||
        found == nullptr) {
      log::Get("policy")->warn("audit syslog: cannot resolve {}", options_.host);
      return false;
    }
    fd_ = ::socket(found->ai_family, found->ai_socktype | SOCK_CLOEXEC, 0);
    if (fd_ >= 0) {
      timeval timeout{.tv_sec = 2, .tv_usec = 0};
      ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
      // connect() on UDP only fixes the peer; on TCP it is bounded by SO_SNDTIMEO as well.
      if (::connect(fd_, found->ai_addr, found->ai_addrlen) != 0) {
        ::close(fd_);
        fd_ = -1;
      }
    }
    ::freeaddrinfo(found);
    if (fd_ < 0) {
      log::Get("policy")->warn("audit syslog: cannot reach {}:{} ({})", options_.host, options_.port,
                               tcp ? "tcp" : "udp");
      return false;
    }
  }
  // RFC 6587 octet counting on TCP; one datagram per message on UDP (RFC 5426).
  const std::string framed = tcp ? fmt::format("{} {}", line.size(), line) : line;
  std::size_t sent = 0;
  while (sent < framed.size()) {
    const ssize_t n = ::send(fd_, framed.data() + sent, framed.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) {
      ::close(fd_);
      fd_ = -1;
      return false;
    }
    sent += static_cast<std::size_t>(n);
    if (!tcp) {
      break;
    }
  }
  return true;
}

}  // namespace lifeline::policy

#pragma once
// The agent's durable outbound queue and state: one SQLite file (WAL, synchronous=FULL, so a call that
// returned is on disk). Messages get their id and sequence number here, in the same transaction that
// stores them and, for log alerts, the log position reached; a SIGKILL at any moment leaves all of it or
// none of it. Every method is one transaction and is safe to call from several threads (the capture and
// sender threads share one AgentQueue).
//
// Tables: messages (rowid order = send order), log_positions (path -> device, inode, offset),
// state (key -> value, e.g. "last_contact_ms"), tickets (message_id, ticket, alert code, received_at).
#include "agent/log_follower.h"  // FilePosition, Errc
#include "common/result.h"
#include "protocol/message.h"

#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace lifeline::store::sqlite {
class Database;
}

namespace lifeline::agent {

struct TicketRecord {
  std::string message_id;
  std::string alert_code;
  std::string ticket;
  std::int64_t received_at_ms = 0;  // device clock, when the reply naming the ticket arrived
};

class AgentQueue {
 public:
  /// State keys the queue writes itself (readable with GetState).
  static constexpr std::string_view kLastContactKey = "last_contact_ms";  // decimal Unix ms
  static constexpr std::string_view kNextSequenceKey = "next_sequence";   // not settable
  /// RecentTickets keeps this many; older ticket records are pruned.
  static constexpr std::size_t kTicketsKept = 1000;

  /// Opens or creates the queue file and brings its schema up to date. The directory must exist.
  [[nodiscard]] static Result<std::unique_ptr<AgentQueue>> Open(const std::filesystem::path& path);
  /// For `lifeline agent status` beside a running agent: read-only, never creates the file
  /// (Errc::kQueueMissing when it is not there). Writing methods fail on such a queue.
  [[nodiscard]] static Result<std::unique_ptr<AgentQueue>> OpenForStatus(const std::filesystem::path& path);
  ~AgentQueue();
  AgentQueue(const AgentQueue&) = delete;
  AgentQueue& operator=(const AgentQueue&) = delete;

  /// Stores `drafts` in order, giving each a fresh random id (32 lowercase hex characters) and the
  /// next sequence number (strictly increasing for the life of the file, never reused), and saves
  /// `position` for its log path if given, all in one transaction. Other fields are stored as given.
  /// Empty `drafts` with a position just saves the position (lines that matched no rule).
  [[nodiscard]] Result<std::vector<protocol::Message>> Enqueue(
      std::vector<protocol::Message> drafts,
      std::optional<std::pair<std::string, FilePosition>> position = std::nullopt);
  /// The oldest `max` messages, in send order.
  [[nodiscard]] Result<std::vector<protocol::Message>> Peek(std::size_t max);
  /// Deletes these messages; unknown ids are ignored.
  [[nodiscard]] VoidResult Remove(const std::vector<std::string>& ids);
  [[nodiscard]] Result<std::int64_t> Depth();

  /// Removes every message the reply answered (accepted or rejected: a rejection is final), records
  /// the ticket numbers it gave and sets last_contact_ms to `now_ms`, in one transaction.
  [[nodiscard]] VoidResult Acknowledge(const protocol::BatchReply& reply, std::int64_t now_ms);
  /// Same, with the system clock's now.
  [[nodiscard]] VoidResult Acknowledge(const protocol::BatchReply& reply);

  [[nodiscard]] VoidResult SavePosition(const std::string& path, const FilePosition& position);
  [[nodiscard]] Result<std::optional<FilePosition>> LoadPosition(const std::string& path);

  /// Records (or updates) the ticket the home gave a message.
  [[nodiscard]] VoidResult RecordTicket(const std::string& message_id, const std::string& alert_code,
                                        const std::string& ticket, std::int64_t when_ms);
  /// The newest `max` ticket records, newest first.
  [[nodiscard]] Result<std::vector<TicketRecord>> RecentTickets(std::size_t max);

  /// Free-form state (last_contact_ms and whatever the agent needs). kNextSequenceKey is refused.
  [[nodiscard]] VoidResult SetState(const std::string& key, const std::string& value);
  [[nodiscard]] Result<std::optional<std::string>> GetState(const std::string& key);

 private:
  explicit AgentQueue(std::unique_ptr<store::sqlite::Database> db);
  VoidResult SavePositionLocked(const std::string& path, const FilePosition& position);
  VoidResult RecordTicketLocked(const std::string& message_id, const std::string& alert_code,
                                const std::string& ticket, std::int64_t when_ms);
  VoidResult SetStateLocked(std::string_view key, const std::string& value);

  std::mutex mutex_;  // one connection, used by one thread at a time
  std::unique_ptr<store::sqlite::Database> db_;
};

}  // namespace lifeline::agent

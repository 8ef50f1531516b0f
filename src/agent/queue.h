#pragma once
// The agent's durable outbound queue and state: one SQLite file (WAL, synchronous=FULL, so a call that
// returned is on disk). Messages get their id and sequence number here, in the same transaction that
// stores them and, for log alerts, the log position reached; a SIGKILL at any moment leaves all of it or
// none of it. Every method is one transaction and is safe to call from several threads (the capture and
// sender threads share one AgentQueue).
//
// Priorities: alerts and clears > heartbeats > inventory, configuration (and bundle manifests) >
// performance. Peek returns higher priorities first and, within one, capture order; sequence numbers stay
// in capture order. A disk budget (QueueOptions::max_bytes) bounds the file: bulk data (inventory,
// configuration, performance) is evicted oldest-lowest-priority first to make room, never alerts or
// heartbeats; every eviction is counted per message type (persisted), reported through
// TakeEvictionReport() and, at most once per eviction_alert_interval, by an alert
// "LIFELINE-QUEUE-EVICTION" queued like any other. A file SQLite reports corrupt at Open is moved aside
// (queue.db.corrupt-<time>), what can be read from it is salvaged into a fresh queue. See the "Queue"
// section of docs/architecture.md.
//
// Tables: messages (rowid order = capture order; priority, size), log_positions (path -> device, inode,
// offset), state (key -> value, e.g. "last_contact_ms"; "queue.*" keys are the queue's own),
// tickets (message_id, ticket, alert code, received_at).
#include "agent/log_follower.h"  // FilePosition, Errc
#include "common/clock.h"
#include "common/result.h"
#include "protocol/message.h"

#include <array>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
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

/// Send priority; a lower value goes first. Derived from the message type at Enqueue.
enum class QueuePriority : int {
  kAlert = 0,        // alert, clear
  kHeartbeat = 1,    // heartbeat
  kReport = 2,       // inventory, configuration, bundle manifest
  kPerformance = 3,  // performance
};
inline constexpr std::size_t kQueuePriorityCount = 4;
QueuePriority PriorityOf(protocol::MessageType type);
/// True for the kinds the budget may evict (inventory, configuration, bundle manifests, performance).
inline bool IsBulk(QueuePriority priority) { return priority >= QueuePriority::kReport; }

struct QueueOptions {
  static constexpr std::int64_t kDefaultMaxBytes = 256LL * 1024 * 1024;
  /// Disk budget: bytes of the queue file in use (pages not on SQLite's free list).
  std::int64_t max_bytes = kDefaultMaxBytes;
  /// The eviction alert is queued at most once per this interval (while evictions happen).
  std::chrono::seconds eviction_alert_interval = std::chrono::hours(1);
  /// Timestamps of the eviction alert and of the "corrupt-<time>" name; must outlive the queue.
  const Clock* clock = &SystemClock::Instance();
  /// Review before sending: messages of these types are held until a local operator approves them.
  std::vector<protocol::MessageType> held_for_review;
};

/// Evicted message counts by message type name ("performance", "inventory", ...); absent = 0.
using EvictionCounts = std::map<std::string, std::int64_t>;
/// "performance=12, inventory=1" (empty for no evictions), for heartbeat status and log lines.
std::string FormatEvictionCounts(const EvictionCounts& counts);

struct QueueStats {
  std::array<std::int64_t, kQueuePriorityCount> depth{};          // messages by QueuePriority
  std::array<std::int64_t, kQueuePriorityCount> message_bytes{};  // their estimated stored bytes
  std::int64_t bytes_used = 0;  // file pages in use * page size: what the budget bounds
  std::int64_t file_bytes = 0;  // page_count * page_size (free pages included; the -wal not)
  std::int64_t max_bytes = 0;
  EvictionCounts evicted;       // every eviction since the file was created
  std::int64_t Depth() const;
};

class AgentQueue {
 public:
  /// State keys the queue writes itself (readable with GetState).
  static constexpr std::string_view kLastContactKey = "last_contact_ms";  // decimal Unix ms
  static constexpr std::string_view kNextSequenceKey = "next_sequence";   // not settable
  /// RecentTickets keeps this many; older ticket records are pruned.
  static constexpr std::size_t kTicketsKept = 1000;
  /// The alert code of the eviction alert (severity warning, source kEvictionAlertSource).
  static constexpr std::string_view kEvictionAlertCode = "LIFELINE-QUEUE-EVICTION";
  static constexpr std::string_view kEvictionAlertSource = "agent queue";
  /// SetState refuses keys with this prefix: the queue's own counters live there.
  static constexpr std::string_view kReservedStatePrefix = "queue.";
  /// Size of each reserve file ("<path>.reserve", "<path>.reserve-evict"), released when the disk fills.
  static constexpr std::int64_t kReserveBytes = 1024 * 1024;
  /// Bulk data is evicted when the file system has less than this left (room for the WAL, about 1 MiB
  /// between checkpoints, and for alerts): a full disk acts as a smaller budget.
  static constexpr std::int64_t kDiskHeadroomBytes = 2 * 1024 * 1024;

  /// Opens or creates the queue file and brings its schema up to date. The directory must exist.
  /// A file SQLite finds corrupt (or not a database) is renamed to "<path>.corrupt-<UTC time>" with
  /// its -wal, the messages, log positions and counters that can still be read are copied into a
  /// fresh file, and one error line says so; Open fails only on other errors (permissions, disk).
  [[nodiscard]] static Result<std::unique_ptr<AgentQueue>> Open(const std::filesystem::path& path,
                                                                QueueOptions options);
  [[nodiscard]] static Result<std::unique_ptr<AgentQueue>> Open(const std::filesystem::path& path) {
    return Open(path, QueueOptions{});
  }
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
  ///
  /// Budget: when a draft does not fit, bulk messages of its own or a lower priority are evicted,
  /// oldest of the lowest priority first. A bulk draft that still does not fit is dropped itself
  /// (counted, not returned); an alert, clear or heartbeat is stored over the budget (error logged,
  /// rate-limited). Returns the messages stored. On a full disk (SQLite's "database or disk is full")
  /// bulk data is evicted and the store tried once more; if that fails too the error is returned and
  /// nothing of the call was stored (the caller keeps its data and retries). Acknowledge and Remove
  /// release a reserve file kept beside the queue (kReserveBytes, "<path>.reserve", made at Open and
  /// remade when there is room again) and retry once, so a full disk never stops the queue draining;
  /// the eviction above has its own ("<path>.reserve-evict"), so it cannot use up the drain reserve.
  [[nodiscard]] Result<std::vector<protocol::Message>> Enqueue(
      std::vector<protocol::Message> drafts,
      std::optional<std::pair<std::string, FilePosition>> position = std::nullopt);
  /// Up to `max` messages in send order: higher priority first, within one priority capture order.
  [[nodiscard]] Result<std::vector<protocol::Message>> Peek(std::size_t max);
  /// Deletes these messages; unknown ids are ignored.
  [[nodiscard]] VoidResult Remove(const std::vector<std::string>& ids);
  /// Messages held for review (QueueOptions::held_for_review), oldest first. Peek never returns them.
  [[nodiscard]] Result<std::vector<protocol::Message>> Held(std::size_t max);
  /// Approves (releases for sending) or rejects (deletes) held messages: those in `ids`, or every held
  /// one when `ids` is empty. Returns how many changed.
  [[nodiscard]] Result<std::int64_t> Review(const std::vector<std::string>& ids, bool approve);
  [[nodiscard]] Result<std::int64_t> Depth();
  /// Depth and bytes per priority, budget use, eviction totals. One scan of the messages index.
  [[nodiscard]] Result<QueueStats> Stats();
  /// Evictions not yet taken (by type), and marks them taken: for the heartbeat's status line. The
  /// counts are persisted, so evictions before a crash are reported after it.
  [[nodiscard]] Result<EvictionCounts> TakeEvictionReport();

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

  /// Free-form state (last_contact_ms and whatever the agent needs). kNextSequenceKey and keys starting
  /// with kReservedStatePrefix are refused.
  [[nodiscard]] VoidResult SetState(const std::string& key, const std::string& value);
  [[nodiscard]] Result<std::optional<std::string>> GetState(const std::string& key);

 private:
  struct Staged;
  AgentQueue(std::unique_ptr<store::sqlite::Database> db, QueueOptions options);
  static Result<std::unique_ptr<AgentQueue>> OpenOrRecover(const std::filesystem::path& path, QueueOptions options,
                                                          bool may_recover);
  static Result<std::unique_ptr<store::sqlite::Database>> OpenChecked(const std::filesystem::path& path);
  static VoidResult Recover(const std::filesystem::path& path, const QueueOptions& options, std::error_code why);
  Result<std::vector<protocol::Message>> EnqueueLocked(
      const std::vector<protocol::Message>& drafts,
      const std::optional<std::pair<std::string, FilePosition>>& position, Staged* staged);
  Result<std::int64_t> BytesUsedLocked();
  // The budget for this call: max_bytes, or less when the file system has less room left.
  std::int64_t LimitLocked(std::int64_t used);
  // Evicts bulk messages of priority >= `floor` (and never above kReport), lowest priority and oldest
  // first, until `need` estimated bytes are freed or none is left; returns the estimated bytes freed.
  Result<std::int64_t> EvictLocked(QueuePriority floor, std::int64_t need, EvictionCounts* evicted);
  Result<std::uint64_t> NextSequenceLocked();
  VoidResult RemoveLocked(const std::vector<std::string>& ids);
  VoidResult AcknowledgeLocked(const protocol::BatchReply& reply, std::int64_t now_ms);
  // Two reserves of kReserveBytes each, allocated beside the queue and deleted when SQLite reports a
  // full disk, so that writes to the WAL still work: "<path>.reserve-evict" lets Enqueue evict bulk data,
  // "<path>.reserve" lets Remove and Acknowledge drain the queue. Two, because a full disk can be hit
  // twice before there is room to remake them: with one, the eviction would use it up and the alerts
  // stored afterwards would fill the disk with no room left to acknowledge them.
  enum class Reserve { kDrain = 0, kEvict = 1 };
  std::filesystem::path ReservePath(Reserve which) const;
  void MaybeCreateReservesLocked();
  bool ReleaseReserveLocked(Reserve which);  // true when the file was there
  /// True when bulk messages (reports, performance) are queued: only they can be evicted for room.
  Result<bool> HasBulkLocked();
  void LogDiskFullLocked(std::int64_t total, const EvictionCounts& evicted, const VoidResult& eviction, bool stored);
  template <class Body>
  VoidResult RetryIfDiskFullLocked(Body&& body);
  Result<std::int64_t> StateIntLocked(std::string_view key);
  VoidResult SavePositionLocked(const std::string& path, const FilePosition& position);
  VoidResult RecordTicketLocked(const std::string& message_id, const std::string& alert_code,
                                const std::string& ticket, std::int64_t when_ms);
  VoidResult SetStateLocked(std::string_view key, const std::string& value);

  std::mutex mutex_;  // one connection, used by one thread at a time
  std::unique_ptr<store::sqlite::Database> db_;
  QueueOptions options_;
  // Cached from the state table so the common path (no evictions) costs no extra query.
  bool evictions_unalerted_ = false;
  std::int64_t last_eviction_alert_ms_ = 0;
  std::chrono::steady_clock::time_point last_over_budget_log_{};
  std::chrono::steady_clock::time_point last_disk_full_log_{};
  std::chrono::steady_clock::time_point last_reserve_attempt_{};
  bool reserve_present_[2] = {false, false};  // by Reserve
  bool read_only_ = false;
};

}  // namespace lifeline::agent

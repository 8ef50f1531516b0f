#pragma once
// The gateway's durable side of the policy manager (docs/gateway.md, "Policy"): data_dir/policy.db
// (SQLite, WAL, synchronous=FULL, 0600) keeps
//   - the newest policy set the gateway has seen (JSON and version; never replaced by an older one),
//     so the gateway decides from it at start, before the policy manager answers;
//   - synced_ms, the last time the policy manager answered (a device deployed after it is refused
//     until the policy manager answers again), and the watch's decision cursor;
//   - the audit outbox: every record the gateway owes the policy manager's audit log, appended
//     (and on disk) before the event it records is acted on, removed only once delivered.
// The compiled form of the newest set is kept in memory for the session manager's decisions.
//
// Threads: every method is thread-safe; one SQLite connection behind a mutex.
#include "common/result.h"
#include "policy/policy_rules.h"

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace lifeline::store::sqlite {
class Database;
}

namespace lifeline::gateway {

/// One record for the policy manager's audit log (POST /v1/gateway/audit). `details_json` is a JSON
/// object's text; `time_ms` is when it happened (kept when it is delivered late).
struct AuditRecord {
  std::string record_id;  // unique; the policy manager ignores a second delivery of the same id
  std::int64_t time_ms = 0;
  std::string kind;  // decision, request, approval, session_start, session_end, ...
  std::string actor;
  std::string subject;
  std::string details_json = "{}";
};

class PolicyCache {
 public:
  /// Opens (creating, 0600) the cache and loads the newest policy set into memory. A stored set
  /// that no longer compiles is logged and treated as none.
  [[nodiscard]] static Result<std::unique_ptr<PolicyCache>> Open(const std::filesystem::path& path);
  ~PolicyCache();
  PolicyCache(const PolicyCache&) = delete;
  PolicyCache& operator=(const PolicyCache&) = delete;

  /// The newest policy set, compiled; null when the gateway has none yet.
  std::shared_ptr<const policy::CompiledPolicy> Current() const;
  /// Its version; 0 when none.
  std::uint64_t Version() const;
  /// Decides `request` from the newest set; nullopt when there is none. `version` (if given) gets the
  /// set's version. The hot path touches no shared state: each thread keeps its own reference to the
  /// compiled set and refreshes it only when the set changes. (Copying the shared_ptr per decision,
  /// as Current() does, made two threads decide slower than one: they fought over its reference
  /// count.) A thread keeps an old set alive until its next decision.
  std::optional<policy::Decision> Decide(const policy::DecisionRequest& request,
                                         std::uint64_t* version = nullptr) const;

  /// Keeps `set` when its version is above the cached one: stored first, then it replaces the
  /// in-memory policy. Returns false (nothing changes) for an older or equal version. An invalid
  /// set fails with its PolicyError and every problem in `why`; a write failure with SQLite's code.
  [[nodiscard]] Result<bool> Offer(policy::PolicySet set, std::string* why);

  /// The last time (Unix ms) the policy manager answered; 0 when never.
  std::int64_t SyncedMs() const { return synced_ms_.load(std::memory_order_acquire); }
  [[nodiscard]] VoidResult SetSyncedMs(std::int64_t ms);
  /// The watch's decision cursor (the sequence of the last approval decision received).
  std::int64_t Cursor() const { return cursor_.load(std::memory_order_acquire); }
  [[nodiscard]] VoidResult SetCursor(std::int64_t cursor);

  /// Appends to the outbox; a record whose id is already there is not added again. Durable when it
  /// returns. Then calls the append listener (outside the cache's lock).
  [[nodiscard]] VoidResult Append(const AuditRecord& record);
  /// The oldest `limit` records of the outbox, oldest first.
  [[nodiscard]] Result<std::vector<AuditRecord>> OldestRecords(std::size_t limit) const;
  /// Removes delivered records.
  [[nodiscard]] VoidResult MarkDelivered(const std::vector<std::string>& record_ids);
  [[nodiscard]] Result<std::size_t> OutboxSize() const;
  /// Called after every Append (the policy client wakes its sender). Set before use.
  void SetAppendListener(std::function<void()> listener);

 private:
  explicit PolicyCache(std::unique_ptr<store::sqlite::Database> db);
  VoidResult Load();
  VoidResult PutState(const char* key, std::int64_t value);

  mutable std::mutex mutex_;
  std::unique_ptr<store::sqlite::Database> db_;
  std::shared_ptr<const policy::CompiledPolicy> current_;
  std::atomic<std::uint64_t> generation_{0};  // raised whenever current_ changes
  const std::uint64_t instance_;              // tells this cache's thread-local copies from another's
  std::atomic<std::int64_t> synced_ms_{0};
  std::atomic<std::int64_t> cursor_{0};
  std::mutex listener_mutex_;
  std::function<void()> append_listener_;
};

/// A fresh record id (32 hex characters).
std::string NewAuditRecordId();

}  // namespace lifeline::gateway

#pragma once
// sql::Database: a small pool of Sessions on one database, and the way store code runs work on it:
// Transaction() (begin, body, commit; rollback when the body fails; run again on a serialization
// failure or deadlock) and WithSession() for single statements outside a transaction.
#include "common/result.h"
#include "store/sql/session.h"

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

namespace lifeline::store::sql {

class Database {
 public:
  using Connect = std::function<Result<std::unique_ptr<Session>>()>;

  /// A pool of at most `max_sessions` connections made by `connect` (opened on demand, reused while
  /// healthy). `description` names the database in log lines and must not contain secrets.
  Database(Backend backend, Connect connect, int max_sessions, std::string description);
  ~Database();
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;

  Backend backend() const { return backend_; }
  const std::string& description() const { return description_; }

  /// A session borrowed from the pool; given back (or dropped when unhealthy) when it goes away.
  class Lease {
   public:
    Lease(Lease&& other) noexcept
        : pool_(std::exchange(other.pool_, nullptr)), session_(std::move(other.session_)) {}
    Lease& operator=(Lease&&) = delete;
    ~Lease();
    Session& operator*() const { return *session_; }
    Session* operator->() const { return session_.get(); }

   private:
    friend class Database;
    Lease(Database* pool, std::unique_ptr<Session> session)
        : pool_(pool), session_(std::move(session)) {}
    Database* pool_;
    std::unique_ptr<Session> session_;
  };

  /// Waits up to `wait` for a free session, opening a new one while under the limit.
  /// Errors: kPoolExhausted, or the driver's error when connecting fails.
  [[nodiscard]] Result<Lease> Acquire(std::chrono::milliseconds wait = std::chrono::seconds(30));
  /// Puts a session the driver already opened (to check the connection at start-up) into the pool.
  void Adopt(std::unique_ptr<Session> session);

  /// How often Transaction runs a body that keeps failing with a retryable error.
  static constexpr int kMaxAttempts = 8;

  /// Runs `body(Session&)` in one transaction and returns what it returned. The body returns a
  /// Result; an error rolls everything back. Retryable errors (IsRetryable) run the whole body again,
  /// up to kMaxAttempts times with a short randomised pause, so the body must only write to the
  /// database and to values it rebuilds on every run. A connection found closed at BEGIN is replaced
  /// and the transaction started again.
  template <class Body>
  auto Transaction(TxMode mode, Body&& body) -> decltype(body(std::declval<Session&>())) {
    using R = decltype(body(std::declval<Session&>()));
    for (int attempt = 1;; ++attempt) {
      auto lease = Acquire();
      if (!lease) {
        return Fail(lease.error());
      }
      Session& session = **lease;
      std::error_code failure;
      bool retry = false;
      if (auto begun = session.Begin(mode); !begun) {
        failure = begun.error();
        // A pooled connection the server has since closed fails at BEGIN, before anything ran: the
        // pool drops it and the next attempt connects afresh.
        retry = failure == Errc::kConnectionFailed;
      } else {
        R result = body(session);
        if (result) {
          auto committed = session.Commit();
          if (committed) {
            return result;
          }
          failure = committed.error();
        } else {
          failure = result.error();
        }
        session.Rollback();
      }
      if (!(retry || IsRetryable(failure)) || attempt >= kMaxAttempts) {
        return Fail(failure);
      }
      if (!retry) {
        PauseBeforeRetry(attempt);
      }
    }
  }

  /// Like Transaction(TxMode::kWrite, body), with group commit on SQLite: calls made at the same time
  /// from several threads share one write transaction and one COMMIT (one fsync) instead of taking
  /// turns at a commit each. The first caller to find no group running leads one: it runs its own
  /// body and those of the callers waiting or arriving meanwhile (up to kMaxGroup), each inside its
  /// own SAVEPOINT, then commits for all. Every caller returns only after the commit that holds its
  /// work (or with its own error):
  ///  - a body that returns an error is rolled back to its savepoint alone; the others stay, and
  ///    its caller gets its error at once;
  ///  - a failed COMMIT (or a retryable error) runs the group's bodies again, as Transaction does,
  ///    and if it keeps failing every caller in the group gets the error;
  ///  - if SQLite rolled the whole transaction back after an error (full disk, I/O), the failing
  ///    body's caller gets its error and the others run again in a fresh transaction.
  /// Bodies may run on another caller's thread (sql::LastErrorDetail() is carried back to the
  /// caller's) and must not throw. On PostgreSQL, which commits concurrent transactions side by side
  /// and groups their WAL flushes itself, this is exactly Transaction(TxMode::kWrite, body).
  template <class Body>
  auto GroupTransaction(Body&& body) -> decltype(body(std::declval<Session&>())) {
    using R = decltype(body(std::declval<Session&>()));
    if (backend_ != Backend::kSqlite) {
      return Transaction(TxMode::kWrite, std::forward<Body>(body));
    }
    std::optional<R> result;
    GroupMember member;
    member.body = [&](Session& session) -> std::error_code {
      result.emplace(body(session));
      return *result ? std::error_code() : result->error();
    };
    if (const std::error_code failed = RunInGroup(member); failed) {
      return Fail(failed);
    }
    return std::move(*result);
  }

  /// Most bodies one group commit holds: bounds how long the first caller of a group waits for the
  /// others' work.
  static constexpr int kMaxGroup = 32;

  /// Runs `body(Session&)` on a borrowed session without a transaction (each statement commits on
  /// its own): for single statements.
  template <class Body>
  auto WithSession(Body&& body) -> decltype(body(std::declval<Session&>())) {
    auto lease = Acquire();
    if (!lease) {
      return Fail(lease.error());
    }
    return body(**lease);
  }

 private:
  /// One caller of GroupTransaction, waiting on its own stack while a leader runs its body.
  struct GroupMember {
    std::function<std::error_code(Session&)> body;
    std::error_code outcome;  // what the caller returns: its body's error, or the commit's
    std::string error_detail;  // sql::LastErrorDetail() on the leader's thread, for the caller's
    bool done = false;         // guarded by group_mutex_
  };
  /// Queues `member`, leads a group or waits for one to finish it; returns the member's outcome
  /// (empty: its body succeeded and is committed).
  std::error_code RunInGroup(GroupMember& member);
  /// The leader's part: one transaction for the queued members and those arriving meanwhile.
  void LeadGroup();
  /// Runs the group's bodies in one transaction; returns the error that ends the attempt for all
  /// of them (empty: committed), and settles members whose own body failed on the way.
  std::error_code RunGroupOnce(Session& session, std::vector<GroupMember*>& members, bool* retry_all);
  /// Hands members their outcomes and wakes their callers.
  void Settle(std::span<GroupMember* const> members, std::error_code outcome, const std::string& detail);

  void Release(std::unique_ptr<Session> session);
  static void PauseBeforeRetry(int attempt);

  const Backend backend_;
  const Connect connect_;
  const int max_sessions_;
  const std::string description_;
  std::mutex mutex_;
  std::condition_variable freed_;
  std::vector<std::unique_ptr<Session>> idle_;
  int open_ = 0;  // sessions that exist: idle, lent out, or being connected

  std::mutex group_mutex_;
  std::condition_variable group_changed_;
  std::vector<GroupMember*> group_queue_;  // callers waiting for a group to take them
  bool group_leader_ = false;              // a caller is leading a group now
};

}  // namespace lifeline::store::sql

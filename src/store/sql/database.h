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
#include <string>
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
};

}  // namespace lifeline::store::sql

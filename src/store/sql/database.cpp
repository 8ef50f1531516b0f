#include "store/sql/database.h"

#include "common/log.h"

#include <algorithm>
#include <random>
#include <thread>

namespace lifeline::store::sql {

Database::Database(Backend backend, Connect connect, int max_sessions, std::string description)
    : backend_(backend),
      connect_(std::move(connect)),
      max_sessions_(std::max(max_sessions, 1)),
      description_(std::move(description)) {}

Database::~Database() {
  std::lock_guard lock(mutex_);
  idle_.clear();
}

Database::Lease::~Lease() {
  if (pool_ != nullptr && session_) {
    pool_->Release(std::move(session_));
  }
}

Result<Database::Lease> Database::Acquire(std::chrono::milliseconds wait) {
  std::unique_lock lock(mutex_);
  const auto deadline = std::chrono::steady_clock::now() + wait;
  while (idle_.empty() && open_ >= max_sessions_) {
    if (freed_.wait_until(lock, deadline) == std::cv_status::timeout && idle_.empty() &&
        open_ >= max_sessions_) {
      SetLastErrorDetail("all " + std::to_string(max_sessions_) + " connections to " + description_ +
                         " stayed busy");
      return Fail(make_error_code(Errc::kPoolExhausted));
    }
  }
  if (!idle_.empty()) {
    auto session = std::move(idle_.back());
    idle_.pop_back();
    return Lease(this, std::move(session));
  }
  // Connect outside the lock: a slow connect must not stall the sessions being given back.
  ++open_;
  lock.unlock();
  auto session = connect_();
  if (!session) {
    lock.lock();
    --open_;
    freed_.notify_one();
    return Fail(session.error());
  }
  return Lease(this, std::move(*session));
}

void Database::Adopt(std::unique_ptr<Session> session) {
  std::lock_guard lock(mutex_);
  ++open_;
  idle_.push_back(std::move(session));
  freed_.notify_one();
}

void Database::Release(std::unique_ptr<Session> session) {
  std::lock_guard lock(mutex_);
  if (session->Healthy()) {
    idle_.push_back(std::move(session));
  } else {
    log::Get("store")->warn("dropping a broken connection to {}", description_);
    --open_;
  }
  freed_.notify_one();
}

std::error_code Database::RunInGroup(GroupMember& member) {
  std::unique_lock lock(group_mutex_);
  group_queue_.push_back(&member);
  while (!member.done) {
    if (!group_leader_) {
      group_leader_ = true;
      lock.unlock();
      LeadGroup();
      lock.lock();
      group_leader_ = false;
      group_changed_.notify_all();  // someone still queued leads the next group
    } else {
      group_changed_.wait(lock);
    }
  }
  lock.unlock();
  if (member.outcome) {
    SetLastErrorDetail(std::move(member.error_detail));
  }
  return member.outcome;
}

void Database::LeadGroup() {
  std::vector<GroupMember*> members;
  {
    std::lock_guard lock(group_mutex_);
    const auto take = std::min<std::size_t>(group_queue_.size(), kMaxGroup);
    members.assign(group_queue_.begin(), group_queue_.begin() + static_cast<std::ptrdiff_t>(take));
    group_queue_.erase(group_queue_.begin(), group_queue_.begin() + static_cast<std::ptrdiff_t>(take));
  }
  for (int attempt = 1; !members.empty(); ++attempt) {
    auto lease = Acquire();
    if (!lease) {
      Settle(members, lease.error(), LastErrorDetail());
      return;
    }
    Session& session = **lease;
    std::error_code failure;
    bool reconnect = false;
    bool restart = false;
    if (auto begun = session.Begin(TxMode::kWrite); !begun) {
      failure = begun.error();
      reconnect = failure == Errc::kConnectionFailed;  // as in Transaction: a closed pooled connection
    } else {
      failure = RunGroupOnce(session, members, &restart);
      if (!failure) {
        Settle(members, {}, {});
        return;
      }
      session.Rollback();
    }
    if (members.empty()) {
      return;  // every member failed on its own and has its answer
    }
    if (!(reconnect || restart || IsRetryable(failure)) || attempt >= kMaxAttempts) {
      Settle(members, failure, LastErrorDetail());
      return;
    }
    if (!reconnect && !restart) {
      PauseBeforeRetry(attempt);
    }
  }
}

std::error_code Database::RunGroupOnce(Session& session, std::vector<GroupMember*>& members, bool* restart) {
  auto check = [](const Result<std::int64_t>& done) { return done ? std::error_code() : done.error(); };
  for (std::size_t i = 0;; ++i) {
    if (i == members.size()) {
      // Callers that arrived while the bodies before ran join this commit.
      std::lock_guard lock(group_mutex_);
      while (members.size() < static_cast<std::size_t>(kMaxGroup) && !group_queue_.empty()) {
        members.push_back(group_queue_.front());
        group_queue_.erase(group_queue_.begin());
      }
      if (i == members.size()) {
        break;
      }
    }
    GroupMember* member = members[i];
    if (auto ec = check(session.Exec("SAVEPOINT group_member")); ec) {
      return ec;
    }
    const std::error_code failed = member->body(session);
    if (!failed) {
      if (auto ec = check(session.Exec("RELEASE group_member")); ec) {
        return ec;
      }
      continue;
    }
    if (IsRetryable(failed)) {
      return failed;  // the whole group runs again, as Transaction runs a body again
    }
    // The member's own failure (a replayed batch, an unknown device, a refused row): it alone is
    // undone, and its caller can go.
    const std::string detail = LastErrorDetail();
    Settle(std::span<GroupMember* const>(&member, 1), failed, detail);
    members.erase(members.begin() + static_cast<std::ptrdiff_t>(i));
    if (!session.InTransaction()) {
      // SQLite gave up the whole transaction (full disk, I/O error): the others' work is gone with
      // it and they run again in a new one.
      *restart = true;
      SetLastErrorDetail(detail);
      return failed;
    }
    if (auto ec = check(session.Exec("ROLLBACK TO group_member")); ec) {
      return ec;
    }
    if (auto ec = check(session.Exec("RELEASE group_member")); ec) {
      return ec;
    }
    --i;
  }
  if (auto committed = session.Commit(); !committed) {
    return committed.error();
  }
  return {};
}

void Database::Settle(std::span<GroupMember* const> members, std::error_code outcome, const std::string& detail) {
  std::lock_guard lock(group_mutex_);
  for (GroupMember* member : members) {
    member->outcome = outcome;
    if (outcome) {
      member->error_detail = detail;
    }
    member->done = true;
  }
  group_changed_.notify_all();
}

void Database::PauseBeforeRetry(int attempt) {
  // Randomised so two transactions that collided do not collide again in lockstep.
  thread_local std::minstd_rand random(std::random_device{}());
  const int ceiling_ms = std::min(2 << attempt, 200);
  std::uniform_int_distribution<int> pause(1, ceiling_ms);
  std::this_thread::sleep_for(std::chrono::milliseconds(pause(random)));
}

}  // namespace lifeline::store::sql

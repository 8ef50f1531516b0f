#include "store/sql/database.h"

#include "common/log.h"

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

void Database::PauseBeforeRetry(int attempt) {
  // Randomised so two transactions that collided do not collide again in lockstep.
  thread_local std::minstd_rand random(std::random_device{}());
  const int ceiling_ms = std::min(2 << attempt, 200);
  std::uniform_int_distribution<int> pause(1, ceiling_ms);
  std::this_thread::sleep_for(std::chrono::milliseconds(pause(random)));
}

}  // namespace lifeline::store::sql

#include "policy/peer_changes.h"

#include "common/log.h"

namespace lifeline::policy {

PeerChanges::PeerChanges(std::shared_ptr<store::sql::Database> db, PolicySets& sets, ChangeFeed& feed,
                         std::chrono::milliseconds period)
    : db_(std::move(db)), sets_(sets), feed_(feed), period_(period), thread_([this] { Run(); }) {}

PeerChanges::~PeerChanges() { Stop(); }

void PeerChanges::Stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) {
    thread_.join();
  }
}

void PeerChanges::Run() {
  std::unique_lock lock(mutex_);
  while (!wake_.wait_for(lock, period_, [this] { return stopping_; })) {
    lock.unlock();
    CheckOnce();
    lock.lock();
  }
}

void PeerChanges::CheckOnce() {
  auto decisions = db_->WithSession([](store::sql::Session& s) {
    return s.QueryRow("SELECT COALESCE(MAX(decision_seq), 0) FROM approval_requests");
  });
  auto refreshed = sets_.Refresh();
  if (!decisions || !refreshed) {
    if (!failing_) {
      log::Get("policy")->warn("cannot read the changes of other policy managers in {}: {} (trying again)",
                               db_->description(), store::sql::LastErrorDetail());
    }
    failing_ = true;
    return;
  }
  failing_ = false;
  const std::int64_t head = *decisions && *decisions ? (**decisions).Int(0) : 0;
  const bool decided = decisions_seen_ >= 0 && head != decisions_seen_;
  decisions_seen_ = head;
  if (*refreshed || decided) {
    feed_.Notify();
  }
}

}  // namespace lifeline::policy

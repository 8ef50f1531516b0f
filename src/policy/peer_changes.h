#pragma once
// Policy managers sharing one PostgreSQL database (policy_database.h) each answer their own
// gateways' watches, which wake on their own process's ChangeFeed. PeerChanges brings the others'
// writes in: every `period` it reads the newest policy version and the newest decision sequence
// number; when another process stored a version, this one loads it (PolicySets::Refresh), and when
// either head moved it wakes the watches, which then read the new policy or decisions themselves.
// One small query per period; a failed one is logged once and tried again at the next.
#include "policy/change_feed.h"
#include "policy/policy_sets.h"
#include "store/sql/database.h"

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>

namespace lifeline::policy {

class PeerChanges {
 public:
  /// Starts the thread. `sets` and `feed` must outlive this.
  PeerChanges(std::shared_ptr<store::sql::Database> db, PolicySets& sets, ChangeFeed& feed,
              std::chrono::milliseconds period = std::chrono::seconds(1));
  ~PeerChanges();
  PeerChanges(const PeerChanges&) = delete;
  PeerChanges& operator=(const PeerChanges&) = delete;

  /// Stops the thread (within one query). Idempotent.
  void Stop();

 private:
  void Run();
  /// One look at the heads; wakes the watches when they moved.
  void CheckOnce();

  std::shared_ptr<store::sql::Database> db_;
  PolicySets& sets_;
  ChangeFeed& feed_;
  const std::chrono::milliseconds period_;
  std::int64_t decisions_seen_ = -1;  // -1: not read yet (the first read only sets it)
  bool failing_ = false;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::thread thread_;  // last: starts once everything above is ready
};

}  // namespace lifeline::policy

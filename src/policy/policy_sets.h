#pragma once
// The policy manager's policy sets, every version kept (docs/policy.md "Policies API"), and the
// routes that read and change them:
//   GET /v1/policies          (auditor)  {"version", "changed_ms", "changed_by", "policy"}
//   PUT /v1/policies          (admin)    a PolicySet -> {"version": N+1}; 409 version_conflict,
//                                        400 invalid_policy with every problem
//   GET /v1/policies/history  (auditor)  {"versions": [{"version", "changed_ms", "changed_by",
//                                        "groups", "rules", "grants"}, ...]} newest first
//
// Storage: table `policy_versions` in the policy manager's store (policy_database.h: SQLite
// data_dir/policy.db beside users and tokens, or the PostgreSQL database), created with CREATE TABLE
// IF NOT EXISTS, so it needs no step in the users store's schema versions. Each row is one version:
// the set's JSON with its `version` field equal to the row's version. A Put reads the stored head
// under lock_key::kPolicyVersions, so two policy managers sharing one PostgreSQL database never
// store the same version twice: the second gets the version conflict.
#include "common/clock.h"
#include "common/result.h"
#include "policy/policy_rules.h"

#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace lifeline::store::sql {
class Database;
class Session;
}

namespace lifeline::policy {

class AuditLog;
class ChangeFeed;
class PolicyServer;

/// One stored version without its content.
struct PolicyVersionInfo {
  std::int64_t version = 0;  // 0: nothing stored yet
  std::int64_t changed_ms = 0;
  std::string changed_by;
  std::size_t groups = 0, rules = 0, grants = 0;
};

/// The current version with its content. Version 0 is the empty set (every request denied).
struct StoredPolicy {
  PolicyVersionInfo info;
  PolicySet set;     // set.version == info.version
  std::string json;  // EncodePolicySet(set): what the watch and GET send
};

struct PutPolicyOutcome {
  enum class Status { kStored, kVersionConflict, kInvalid };
  Status status = Status::kStored;
  std::int64_t version = 0;           // kStored: the new version; kVersionConflict: the current one
  std::vector<std::string> problems;  // kInvalid: every problem Validate found
  PolicyVersionInfo stored;           // kStored: what was stored
};

class PolicySets {
 public:
  /// Opens `db_path` (SQLite, created 0600 if missing) and its policy_versions table.
  [[nodiscard]] static Result<std::unique_ptr<PolicySets>> Open(const std::filesystem::path& db_path,
                                                                const Clock& clock = SystemClock::Instance());
  /// The same on an open database of either backend.
  [[nodiscard]] static Result<std::unique_ptr<PolicySets>> Open(std::shared_ptr<store::sql::Database> db,
                                                                const Clock& clock = SystemClock::Instance());
  ~PolicySets();
  PolicySets(const PolicySets&) = delete;
  PolicySets& operator=(const PolicySets&) = delete;

  /// The newest version (kept in memory: the watch reads it on every wake-up).
  std::shared_ptr<const StoredPolicy> Current() const;
  std::int64_t CurrentVersion() const { return Current()->info.version; }

  /// Validates `set` and stores it as the next version by `actor`. `expected_version` (the set's own
  /// `version` field when not 0) must equal the current version, else nothing is stored.
  [[nodiscard]] Result<PutPolicyOutcome> Put(PolicySet set, std::optional<std::int64_t> expected_version,
                                             std::string_view actor);

  /// Loads the newest stored version when it is newer than Current() (stored by another policy
  /// manager on the same database); returns whether it was.
  [[nodiscard]] Result<bool> Refresh();

  /// Every stored version, newest first, at most `limit`.
  [[nodiscard]] Result<std::vector<PolicyVersionInfo>> History(std::size_t limit = 1000) const;

 private:
  PolicySets(std::shared_ptr<store::sql::Database> db, const Clock& clock);
  [[nodiscard]] VoidResult Load();
  /// The newest stored version, read on `session`; nullptr when none is stored.
  [[nodiscard]] Result<std::shared_ptr<StoredPolicy>> ReadNewest(store::sql::Session& session) const;

  std::shared_ptr<store::sql::Database> db_;
  const Clock& clock_;
  mutable std::mutex mutex_;  // writers in this process (one Put at a time)
  mutable std::mutex current_mutex_;
  std::shared_ptr<const StoredPolicy> current_;
};

/// Registers GET/PUT /v1/policies and GET /v1/policies/history. A stored change appends a
/// `policy_change` audit record (actor, subject "policy", details {version, groups, rules, grants})
/// and wakes the gateways' watches through `feed`. All references must outlive the server.
void RegisterPolicyRoutes(PolicyServer& server, PolicySets& sets, AuditLog& audit, ChangeFeed& feed);

}  // namespace lifeline::policy

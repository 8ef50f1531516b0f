#include "policy/policy_sets.h"

#include "common/log.h"
#include "policy/audit_log.h"
#include "policy/change_feed.h"
#include "policy/policy_json.h"
#include "policy/policy_server.h"
#include "policy/policy_database.h"
#include "store/sql/database.h"

#include <boost/json.hpp>
#include <fmt/format.h>

namespace lifeline::policy {
namespace json = boost::json;
using transport::HttpRequest;
using transport::HttpResponse;

namespace {

std::shared_ptr<spdlog::logger> Log() { return log::Get("policy"); }

// Idempotent: the table lives in the users store's database but outside its numbered schema steps,
// so either may be opened first and neither needs to know the other's version.
constexpr std::string_view kTable = R"sql(
CREATE TABLE IF NOT EXISTS policy_versions (
  version    INTEGER PRIMARY KEY,
  changed_ms INTEGER NOT NULL,
  changed_by TEXT NOT NULL,
  groups     INTEGER NOT NULL,
  rules      INTEGER NOT NULL,
  grants     INTEGER NOT NULL,
  policy     TEXT NOT NULL
);
)sql";
constexpr std::string_view kPostgresTable = R"sql(
CREATE TABLE IF NOT EXISTS policy_versions (
  version    BIGINT PRIMARY KEY,
  changed_ms BIGINT NOT NULL,
  changed_by TEXT NOT NULL,
  groups     BIGINT NOT NULL,
  rules      BIGINT NOT NULL,
  grants     BIGINT NOT NULL,
  policy     TEXT NOT NULL
);
)sql";

constexpr std::string_view kNewestVersion =
    "SELECT version, changed_ms, changed_by, groups, rules, grants, policy FROM policy_versions "
    "ORDER BY version DESC LIMIT 1";

HttpResponse Json(const json::value& value, int status = 200) {
  HttpResponse response;
  response.status = status;
  response.body = json::serialize(value);
  return response;
}

json::object InfoJson(const PolicyVersionInfo& info) {
  return json::object{{"version", info.version},
                      {"changed_ms", info.changed_ms},
                      {"changed_by", info.changed_by},
                      {"groups", info.groups},
                      {"rules", info.rules},
                      {"grants", info.grants}};
}

std::shared_ptr<const StoredPolicy> EmptyPolicy() {
  auto empty = std::make_shared<StoredPolicy>();
  empty->json = EncodePolicySet(empty->set);
  return empty;
}

}  // namespace

PolicySets::PolicySets(std::shared_ptr<store::sql::Database> db, const Clock& clock)
    : db_(std::move(db)), clock_(clock), current_(EmptyPolicy()) {}

PolicySets::~PolicySets() = default;

Result<std::unique_ptr<PolicySets>> PolicySets::Open(const std::filesystem::path& db_path, const Clock& clock) {
  auto db = OpenPolicySqlite(db_path);
  if (!db) {
    return db.error();
  }
  return Open(std::move(*db), clock);
}

Result<std::unique_ptr<PolicySets>> PolicySets::Open(std::shared_ptr<store::sql::Database> db, const Clock& clock) {
  if (auto created = EnsureTables(*db, kTable, kPostgresTable, "policy_versions table"); !created) {
    return created.error();
  }
  std::unique_ptr<PolicySets> sets(new PolicySets(std::move(db), clock));
  if (auto loaded = sets->Load(); !loaded) {
    return loaded.error();
  }
  return sets;
}

Result<std::shared_ptr<StoredPolicy>> PolicySets::ReadNewest(store::sql::Session& session) const {
  auto row = session.QueryRow(kNewestVersion);
  if (!row) {
    return row.error();
  }
  if (!*row) {
    return std::shared_ptr<StoredPolicy>();  // nothing stored yet: version 0, the empty set
  }
  const auto& r = **row;
  auto stored = std::make_shared<StoredPolicy>();
  stored->info = {r.Int(0), r.Int(1), r.Text(2), static_cast<std::size_t>(r.Int(3)),
                  static_cast<std::size_t>(r.Int(4)), static_cast<std::size_t>(r.Int(5))};
  std::string why;
  auto set = DecodePolicySet(r.Text(6), &why);
  if (!set) {
    // Only this code writes the table; a row it cannot read means the database was damaged or edited.
    Log()->error("{}: policy version {} does not decode: {}", db_->description(), stored->info.version, why);
    return set.error();
  }
  stored->set = std::move(*set);
  stored->json = EncodePolicySet(stored->set);
  return stored;
}

VoidResult PolicySets::Load() {
  std::lock_guard lock(mutex_);
  auto newest = db_->WithSession([&](store::sql::Session& s) { return ReadNewest(s); });
  if (!newest) {
    return newest.error();
  }
  if (*newest) {
    std::lock_guard current_lock(current_mutex_);
    current_ = std::move(*newest);
  }
  return {};
}

Result<bool> PolicySets::Refresh() {
  auto head = db_->WithSession(
      [](store::sql::Session& s) { return s.QueryRow("SELECT COALESCE(MAX(version), 0) FROM policy_versions"); });
  if (!head) {
    return Fail(head.error());
  }
  if ((*head ? (**head).Int(0) : 0) <= CurrentVersion()) {
    return false;
  }
  std::lock_guard lock(mutex_);
  auto newest = db_->WithSession([&](store::sql::Session& s) { return ReadNewest(s); });
  if (!newest) {
    return Fail(newest.error());
  }
  std::lock_guard current_lock(current_mutex_);
  if (!*newest || (*newest)->info.version <= current_->info.version) {
    return false;  // a Put of this process got there first
  }
  Log()->info("policy version {} stored by '{}' through another policy manager", (*newest)->info.version,
              (*newest)->info.changed_by);
  current_ = std::move(*newest);
  return true;
}

std::shared_ptr<const StoredPolicy> PolicySets::Current() const {
  std::lock_guard lock(current_mutex_);
  return current_;
}

Result<PutPolicyOutcome> PolicySets::Put(PolicySet set, std::optional<std::int64_t> expected_version,
                                         std::string_view actor) {
  PutPolicyOutcome outcome;
  for (const auto& problem : Validate(set)) {
    outcome.problems.push_back(problem.message);
  }
  const std::vector<std::string> problems = std::move(outcome.problems);
  std::lock_guard lock(mutex_);
  std::shared_ptr<StoredPolicy> stored;
  std::shared_ptr<StoredPolicy> seen;  // the stored head when another process wrote it meanwhile
  auto written = db_->Transaction(store::sql::TxMode::kWrite, [&](store::sql::Session& s) -> VoidResult {
    // Another policy manager on the same PostgreSQL database may have stored versions since this one
    // loaded its own: the head is read under the lock, so the check and the insert see the same one.
    if (auto locked = LockForWrite(s, lock_key::kPolicyVersions); !locked) {
      return locked;
    }
    auto newest = ReadNewest(s);
    if (!newest) {
      return newest.error();
    }
    seen = *newest;
    const std::int64_t current = seen ? seen->info.version : 0;
    stored.reset();
    outcome = PutPolicyOutcome{};
    // The version check comes first: a set written against an old version is refused as a conflict
    // even when it is also invalid, since fixing it would still overwrite someone else's change.
    if (expected_version && *expected_version != current) {
      outcome.status = PutPolicyOutcome::Status::kVersionConflict;
      outcome.version = current;
      return {};
    }
    if (!problems.empty()) {
      outcome.status = PutPolicyOutcome::Status::kInvalid;
      outcome.version = current;
      outcome.problems = problems;
      return {};
    }
    stored = std::make_shared<StoredPolicy>();
    stored->info = {current + 1, clock_.NowUnixMillis(), std::string(actor),
                    set.groups.size(),  set.rules.size(),     set.grants.size()};
    stored->set = set;
    stored->set.version = static_cast<std::uint64_t>(current + 1);
    stored->json = EncodePolicySet(stored->set);
    const auto& i = stored->info;
    if (auto inserted = s.Exec(
            "INSERT INTO policy_versions (version, changed_ms, changed_by, groups, rules, grants, policy) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7)",
            i.version, i.changed_ms, i.changed_by, static_cast<std::int64_t>(i.groups),
            static_cast<std::int64_t>(i.rules), static_cast<std::int64_t>(i.grants), stored->json);
        !inserted) {
      return inserted.error();
    }
    outcome.version = i.version;
    outcome.stored = i;
    return {};
  });
  if (!written) {
    Log()->error("cannot store a policy version in {}: {} ({})", db_->description(), written.error().message(),
                 store::sql::LastErrorDetail());
    return written.error();
  }
  std::lock_guard current_lock(current_mutex_);
  if (stored) {
    current_ = std::move(stored);
  } else if (seen && seen->info.version > current_->info.version) {
    current_ = std::move(seen);  // stored by another process: this one serves it from now on
  }
  return outcome;
}

Result<std::vector<PolicyVersionInfo>> PolicySets::History(std::size_t limit) const {
  auto rows = db_->WithSession([&](store::sql::Session& s) {
    return s.Query(
        "SELECT version, changed_ms, changed_by, groups, rules, grants FROM policy_versions "
        "ORDER BY version DESC LIMIT $1",
        static_cast<std::int64_t>(limit));
  });
  if (!rows) {
    return rows.error();
  }
  std::vector<PolicyVersionInfo> out;
  for (const auto& r : *rows) {
    out.push_back({r.Int(0), r.Int(1), r.Text(2), static_cast<std::size_t>(r.Int(3)),
                   static_cast<std::size_t>(r.Int(4)), static_cast<std::size_t>(r.Int(5))});
  }
  return out;
}

void RegisterPolicyRoutes(PolicyServer& server, PolicySets& sets, AuditLog& audit, ChangeFeed& feed) {
  server.Route("GET", "/v1/policies", Role::kAuditor, [&sets](const HttpRequest&, const Caller&) {
    const auto current = sets.Current();
    boost::system::error_code ec;
    json::value policy = json::parse(current->json, ec);
    return Json(json::object{{"version", current->info.version},
                             {"changed_ms", current->info.changed_ms},
                             {"changed_by", current->info.changed_by},
                             {"policy", std::move(policy)}});
  });

  server.Route("GET", "/v1/policies/history", Role::kAuditor, [&sets](const HttpRequest&, const Caller&) {
    auto history = sets.History();
    if (!history) {
      return JsonError(500, "internal", "cannot read the policy history; see the policy manager's log");
    }
    json::array versions;
    for (const auto& info : *history) {
      versions.push_back(InfoJson(info));
    }
    return Json(json::object{{"versions", std::move(versions)}});
  });

  server.Route("PUT", "/v1/policies", Role::kAdmin,
               [&sets, &audit, &feed](const HttpRequest& request, const Caller& caller) {
                 boost::system::error_code ec;
                 json::value body = json::parse(request.body, ec);
                 if (ec || !body.is_object()) {
                   return Json(json::object{{"error", "invalid_policy"},
                                            {"message", "the body must be a policy set (a JSON object)"},
                                            {"problems", json::array{"the body is not a JSON object"}}},
                               400);
                 }
                 // `version` is optional here (absent or 0: no check); the decoder wants one.
                 if (!body.as_object().contains("version")) {
                   body.as_object()["version"] = 0;
                 }
                 std::string why;
                 auto set = PolicySetFromJson(body, &why);
                 if (!set) {
                   return Json(json::object{{"error", "invalid_policy"},
                                            {"message", "the policy set is malformed"},
                                            {"problems", json::array{json::string(why)}}},
                               400);
                 }
                 std::optional<std::int64_t> expected;
                 if (set->version != 0) {
                   expected = static_cast<std::int64_t>(set->version);
                 }
                 auto outcome = sets.Put(std::move(*set), expected, caller.name);
                 if (!outcome) {
                   return JsonError(500, "internal", "cannot store the policy; see the policy manager's log");
                 }
                 using Status = PutPolicyOutcome::Status;
                 if (outcome->status == Status::kVersionConflict) {
                   return Json(json::object{{"error", "version_conflict"},
                                            {"message", fmt::format("the policy is at version {} now, not {}: "
                                                                    "someone changed it meanwhile; get it again",
                                                                    outcome->version, *expected)},
                                            {"version", outcome->version}},
                               409);
                 }
                 if (outcome->status == Status::kInvalid) {
                   json::array problems;
                   for (const auto& p : outcome->problems) {
                     problems.push_back(json::string(p));
                   }
                   return Json(json::object{{"error", "invalid_policy"},
                                            {"message", fmt::format("the policy set has {} problem{}",
                                                                    problems.size(), problems.size() == 1 ? "" : "s")},
                                            {"problems", std::move(problems)}},
                               400);
                 }
                 const PolicyVersionInfo& stored = outcome->stored;
                 Log()->info("policy version {} stored by '{}' ({} groups, {} rules, {} grants)", stored.version,
                             caller.name, stored.groups, stored.rules, stored.grants);
                 AuditRecord record;
                 record.source = "policy";
                 record.kind = std::string(audit_kind::kPolicyChange);
                 record.actor = caller.name;
                 record.subject = "policy";
                 json::object details = InfoJson(stored);
                 details.erase("changed_ms");
                 details.erase("changed_by");
                 record.details = json::serialize(details);
                 if (auto appended = audit.Append(std::move(record)); !appended) {
                   // The version is stored and gateways will get it; the log line keeps the trace.
                   Log()->error("policy version {} by '{}': cannot append the audit record: {}", outcome->version,
                                caller.name, appended.error().message());
                 }
                 feed.Notify();
                 return Json(json::object{{"version", outcome->version}});
               });
}

}  // namespace lifeline::policy

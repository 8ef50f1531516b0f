#include "policy/policy_sets.h"

#include "common/log.h"
#include "policy/audit_log.h"
#include "policy/change_feed.h"
#include "policy/policy_json.h"
#include "policy/policy_server.h"
#include "store/sqlite/database.h"

#include <boost/json.hpp>
#include <fmt/format.h>

namespace lifeline::policy {
namespace json = boost::json;
using transport::HttpRequest;
using transport::HttpResponse;

namespace {

std::shared_ptr<spdlog::logger> Log() { return log::Get("policy"); }

// Idempotent: the table lives in the users store's file but outside its numbered schema steps, so
// either may be opened first and neither needs to know the other's version.
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

PolicySets::PolicySets(std::unique_ptr<store::sqlite::Database> db, const Clock& clock)
    : db_(std::move(db)), clock_(clock), current_(EmptyPolicy()) {}

PolicySets::~PolicySets() = default;

Result<std::unique_ptr<PolicySets>> PolicySets::Open(const std::filesystem::path& db_path, const Clock& clock) {
  auto db = store::sqlite::Database::Open(db_path, {.private_file = true});
  if (!db) {
    Log()->error("cannot open {}: {}", db_path.string(), db.error().message());
    return db.error();
  }
  if (auto created = (*db)->Exec(kTable); !created) {
    Log()->error("{}: cannot create the policy_versions table: {} ({})", db_path.string(),
                 created.error().message(), (*db)->LastErrorMessage());
    return created.error();
  }
  std::unique_ptr<PolicySets> sets(new PolicySets(std::move(*db), clock));
  if (auto loaded = sets->Load(); !loaded) {
    return loaded.error();
  }
  return sets;
}

VoidResult PolicySets::Load() {
  std::lock_guard lock(mutex_);
  auto stmt = db_->Prepare(
      "SELECT version, changed_ms, changed_by, groups, rules, grants, policy FROM policy_versions "
      "ORDER BY version DESC LIMIT 1");
  if (!stmt) {
    return stmt.error();
  }
  auto row = stmt->Step();
  if (!row) {
    return row.error();
  }
  if (!*row) {
    return {};  // nothing stored yet: version 0, the empty set
  }
  auto stored = std::make_shared<StoredPolicy>();
  stored->info = {stmt->Int(0), stmt->Int(1), stmt->Text(2), static_cast<std::size_t>(stmt->Int(3)),
                  static_cast<std::size_t>(stmt->Int(4)), static_cast<std::size_t>(stmt->Int(5))};
  std::string why;
  auto set = DecodePolicySet(stmt->Text(6), &why);
  if (!set) {
    // Only this code writes the table; a row it cannot read means the file was damaged or edited.
    Log()->error("{}: policy version {} does not decode: {}", db_->path().string(), stored->info.version, why);
    return set.error();
  }
  stored->set = std::move(*set);
  stored->json = EncodePolicySet(stored->set);
  std::lock_guard current_lock(current_mutex_);
  current_ = std::move(stored);
  return {};
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
  std::lock_guard lock(mutex_);
  const std::int64_t current = CurrentVersion();
  // The version check comes first: a set written against an old version is refused as a conflict
  // even when it is also invalid, since fixing it would still overwrite someone else's change.
  if (expected_version && *expected_version != current) {
    outcome.status = PutPolicyOutcome::Status::kVersionConflict;
    outcome.version = current;
    outcome.problems.clear();
    return outcome;
  }
  if (!outcome.problems.empty()) {
    outcome.status = PutPolicyOutcome::Status::kInvalid;
    outcome.version = current;
    return outcome;
  }
  auto stored = std::make_shared<StoredPolicy>();
  stored->info = {current + 1, clock_.NowUnixMillis(), std::string(actor),
                  set.groups.size(),  set.rules.size(),     set.grants.size()};
  set.version = static_cast<std::uint64_t>(current + 1);
  stored->set = std::move(set);
  stored->json = EncodePolicySet(stored->set);
  auto written = db_->Transaction([&]() -> VoidResult {
    auto stmt = db_->Prepare(
        "INSERT INTO policy_versions (version, changed_ms, changed_by, groups, rules, grants, policy) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)");
    if (!stmt) {
      return stmt.error();
    }
    const auto& i = stored->info;
    stmt->BindAll(i.version, i.changed_ms, i.changed_by, static_cast<std::int64_t>(i.groups),
                  static_cast<std::int64_t>(i.rules), static_cast<std::int64_t>(i.grants), stored->json);
    return stmt->Run();
  });
  if (!written) {
    Log()->error("cannot store policy version {}: {} ({})", stored->info.version, written.error().message(),
                 db_->LastErrorMessage());
    return written.error();
  }
  outcome.version = stored->info.version;
  outcome.stored = stored->info;
  {
    std::lock_guard current_lock(current_mutex_);
    current_ = std::move(stored);
  }
  return outcome;
}

Result<std::vector<PolicyVersionInfo>> PolicySets::History(std::size_t limit) const {
  std::lock_guard lock(mutex_);
  auto stmt = db_->Prepare(
      "SELECT version, changed_ms, changed_by, groups, rules, grants FROM policy_versions "
      "ORDER BY version DESC LIMIT ?");
  if (!stmt) {
    return stmt.error();
  }
  stmt->Bind(1, static_cast<std::int64_t>(limit));
  std::vector<PolicyVersionInfo> out;
  for (;;) {
    auto row = stmt->Step();
    if (!row) {
      return row.error();
    }
    if (!*row) {
      return out;
    }
    out.push_back({stmt->Int(0), stmt->Int(1), stmt->Text(2), static_cast<std::size_t>(stmt->Int(3)),
                   static_cast<std::size_t>(stmt->Int(4)), static_cast<std::size_t>(stmt->Int(5))});
  }
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

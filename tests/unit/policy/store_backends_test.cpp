// The policy manager's stores on both backends (TEST_P over SQLite and PostgreSQL): users, tokens
// and lockouts; policy versions with the stale-version conflict; the approval request lifecycle; the
// audit log's appends, checkpoints and verification, also with two AuditLogs (standing for two
// policy-manager processes) appending to one database at once. PostgreSQL is a real server this
// binary starts (tests/support/postgres_server.h), a fresh database per test. Also: a SQLite
// policy.db and audit.db made with the schema statements of the stores before they moved onto the
// SQL seam still open and work.
#include "policy/approvals.h"
#include "policy/audit_log.h"
#include "policy/audit_verify.h"
#include "policy/change_feed.h"
#include "policy/peer_changes.h"
#include "policy/policy_database.h"
#include "policy/policy_json.h"
#include "policy/policy_sets.h"
#include "policy/policy_store.h"
#include "store/postgres/session.h"
#include "store/sql/database.h"
#include "store/sqlite/database.h"
#include "support/fake_clock.h"
#include "support/postgres_server.h"
#include "support/temp_dir.h"

#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <fmt/format.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "policy_service_fixture.h"

namespace lifeline::policy {
namespace {

namespace sql = store::sql;
using namespace std::chrono_literals;

const auto* const postgres_environment =
    ::testing::AddGlobalTestEnvironment(new lifeline::testing::PostgresEnvironment);

// Past 2^31 ms: PostgreSQL's INTEGER would overflow, so these columns must be BIGINT there.
constexpr std::int64_t kNow = 1'800'000'000'000;

std::string BackendName(const ::testing::TestParamInfo<sql::Backend>& info) {
  return info.param == sql::Backend::kSqlite ? "Sqlite" : "Postgres";
}

class StoreBackendsTest : public ::testing::TestWithParam<sql::Backend> {
 protected:
  void SetUp() override {
    if (GetParam() == sql::Backend::kPostgres) {
      auto* server = lifeline::testing::SharedPostgres();
      ASSERT_NE(server, nullptr) << "the test PostgreSQL server did not start (see above)";
      conninfo_ = server->CreateDatabase();
    }
  }

  /// A database of its own (its own pool): on PostgreSQL it stands for another policy manager.
  std::shared_ptr<sql::Database> OpenDb(const char* sqlite_file = "policy.db") {
    auto db = GetParam() == sql::Backend::kSqlite ? OpenPolicySqlite(dir_.path() / sqlite_file)
                                                  : store::postgres::Open({.conninfo = conninfo_, .pool_size = 4});
    EXPECT_TRUE(db) << sql::LastErrorDetail();
    return db ? *db : nullptr;
  }

  std::unique_ptr<AuditLog> OpenAudit(std::shared_ptr<sql::Database> db, std::int64_t every_records = 1000) {
    AuditLog::Options options;
    options.db = std::move(db);
    options.signing_key_path = dir_.path() / "audit-sign.key";
    options.checkpoint_every_records = every_records;
    options.checkpoint_every = 0s;
    options.checkpoint_timer = false;
    auto log = AuditLog::Open(std::move(options));
    EXPECT_TRUE(log) << log.error().message();
    return log ? std::move(*log) : nullptr;
  }

  std::int64_t Count(sql::Database& db, const std::string& table) {
    auto row = db.WithSession([&](sql::Session& s) { return s.QueryRow("SELECT COUNT(*) FROM " + table); });
    EXPECT_TRUE(row && *row) << table << ": " << sql::LastErrorDetail();
    return row && *row ? (*row)->Int(0) : -1;
  }

  lifeline::testing::TempDir dir_;
  std::string conninfo_;
};

INSTANTIATE_TEST_SUITE_P(Backends, StoreBackendsTest,
                         ::testing::Values(sql::Backend::kSqlite, sql::Backend::kPostgres), BackendName);

TEST_P(StoreBackendsTest, UsersTokensFailuresAndLockouts) {
  auto opened = OpenSqlPolicyStore(OpenDb());
  ASSERT_TRUE(opened) << opened.error().message();
  PolicyStore& store = **opened;

  ASSERT_TRUE(store.AddUser({"alice", Role::kAdmin, "$argon2id$hash-a", kNow, kNow}));
  ASSERT_TRUE(store.AddUser({"bob", Role::kApprover, "$argon2id$hash-b", kNow + 1, kNow + 1}));
  auto again = store.AddUser({"alice", Role::kAuditor, "x", kNow, kNow});
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error(), ServiceErrc::kAlreadyExists);
  auto alice = store.FindUser("alice");
  ASSERT_TRUE(alice && *alice);
  EXPECT_EQ((*alice)->role, Role::kAdmin);
  EXPECT_EQ((*alice)->created_ms, kNow);
  auto nobody = store.FindUser("nobody");
  ASSERT_TRUE(nobody);
  EXPECT_FALSE(*nobody);
  ASSERT_TRUE(store.SetPasswordHash("alice", "$argon2id$new", kNow + 5));
  EXPECT_EQ(store.SetPasswordHash("nobody", "x", kNow).error(), ServiceErrc::kNotFound);
  auto users = store.ListUsers();
  ASSERT_TRUE(users);
  ASSERT_EQ(users->size(), 2u);
  EXPECT_EQ((*users)[0].password_hash, "$argon2id$new");
  EXPECT_EQ((*users)[0].password_changed_ms, kNow + 5);

  TokenRecord api{.kind = TokenKind::kApi, .name = "ci", .token_hash = "hash-ci", .role = Role::kAuditor,
                  .created_by = "alice", .created_ms = kNow, .expires_ms = kNow + 86'400'000};
  auto api_id = store.AddToken(api);
  ASSERT_TRUE(api_id);
  TokenRecord session{.kind = TokenKind::kSession, .name = "bob", .token_hash = "hash-bob", .role = Role::kApprover,
                      .created_by = "bob", .created_ms = kNow};
  auto session_id = store.AddToken(session);
  ASSERT_TRUE(session_id);
  EXPECT_GT(*session_id, *api_id);
  api.token_hash = "hash-ci-2";
  auto same_name = store.AddToken(api);
  ASSERT_FALSE(same_name);
  EXPECT_EQ(same_name.error(), ServiceErrc::kAlreadyExists);

  auto found = store.FindTokenByHash("hash-ci");
  ASSERT_TRUE(found && *found);
  EXPECT_EQ((*found)->id, *api_id);
  EXPECT_EQ((*found)->expires_ms, kNow + 86'400'000);
  EXPECT_FALSE((*found)->revoked_ms);
  EXPECT_FALSE((*found)->last_used_ms);
  ASSERT_TRUE(store.TouchToken(*api_id, kNow + 60'000));
  found = store.FindTokenByHash("hash-ci");
  ASSERT_TRUE(found && *found);
  EXPECT_EQ((*found)->last_used_ms, kNow + 60'000);
  auto apis = store.ListTokens(TokenKind::kApi);
  ASSERT_TRUE(apis);
  EXPECT_EQ(apis->size(), 1u);

  ASSERT_TRUE(store.RevokeApiToken("ci", kNow + 2));
  EXPECT_EQ(store.RevokeApiToken("ci", kNow + 3).error(), ServiceErrc::kNotFound);
  // Removing a user revokes their sessions in the same transaction.
  ASSERT_TRUE(store.RemoveUser("bob", kNow + 4));
  EXPECT_EQ(store.RemoveUser("bob", kNow + 4).error(), ServiceErrc::kNotFound);
  auto bobs = store.FindTokenByHash("hash-bob");
  ASSERT_TRUE(bobs && *bobs);
  EXPECT_EQ((*bobs)->revoked_ms, kNow + 4);
  EXPECT_EQ(store.RevokeTokenByHash("hash-bob", kNow + 5).error(), ServiceErrc::kNotFound);

  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(store.AddLoginFailure(ThrottleSubject::kUser, "alice", kNow + i * 1000));
  }
  ASSERT_TRUE(store.AddLoginFailure(ThrottleSubject::kAddress, "alice", kNow));
  EXPECT_EQ(*store.CountLoginFailures(ThrottleSubject::kUser, "alice", kNow + 1000), 2);
  EXPECT_EQ(*store.CountLoginFailures(ThrottleSubject::kAddress, "alice", kNow), 1);
  ASSERT_TRUE(store.SetLockout(ThrottleSubject::kUser, "alice", kNow + 900'000));
  ASSERT_TRUE(store.SetLockout(ThrottleSubject::kUser, "alice", kNow + 1'800'000));  // replaces the first
  EXPECT_EQ(*store.LockedUntil(ThrottleSubject::kUser, "alice"), kNow + 1'800'000);
  EXPECT_FALSE(*store.LockedUntil(ThrottleSubject::kAddress, "alice"));
  ASSERT_TRUE(store.ClearLoginFailures(ThrottleSubject::kUser, "alice"));
  EXPECT_EQ(*store.CountLoginFailures(ThrottleSubject::kUser, "alice", 0), 0);
  ASSERT_TRUE(store.PruneLoginFailures(kNow + 1'800'001));
  EXPECT_EQ(*store.CountLoginFailures(ThrottleSubject::kAddress, "alice", 0), 0);
  EXPECT_FALSE(*store.LockedUntil(ThrottleSubject::kUser, "alice"));

  // A second store on the same database (another process, or the CLI beside the service) sees it
  // all and finds the schema current.
  auto other_db = OpenDb();
  auto other = OpenSqlPolicyStore(other_db);
  ASSERT_TRUE(other);
  if (GetParam() == sql::Backend::kSqlite) {
    // An older lifeline, which reads only PRAGMA user_version, finds a new file current too.
    auto user_version = other_db->WithSession([](sql::Session& s) { return s.QueryRow("PRAGMA user_version"); });
    ASSERT_TRUE(user_version && *user_version);
    EXPECT_EQ((*user_version)->Int(0), 1);
  }
  auto seen = (*other)->FindUser("alice");
  ASSERT_TRUE(seen && *seen);
  EXPECT_EQ((*seen)->password_hash, "$argon2id$new");
}

TEST_P(StoreBackendsTest, PolicyVersionsRefuseAStaleVersionAcrossInstances) {
  lifeline::testing::FakeClock clock{std::chrono::system_clock::time_point(std::chrono::milliseconds(kNow))};
  auto first = PolicySets::Open(OpenDb(), clock);
  ASSERT_TRUE(first);
  EXPECT_EQ((*first)->CurrentVersion(), 0);
  std::string why;
  auto sample = PolicySetFromJson([] {
    auto policy = testing::SamplePolicy();
    policy["version"] = 0;
    return boost::json::value(policy);
  }(), &why);
  ASSERT_TRUE(sample) << why;

  auto put = (*first)->Put(*sample, 0, "alice");
  ASSERT_TRUE(put);
  ASSERT_EQ(put->status, PutPolicyOutcome::Status::kStored);
  EXPECT_EQ(put->version, 1);
  EXPECT_EQ((*first)->Current()->info.changed_ms, kNow);

  // A second instance (another policy manager on the same database) loads version 1 and stores 2.
  auto second = PolicySets::Open(OpenDb(), clock);
  ASSERT_TRUE(second);
  EXPECT_EQ((*second)->CurrentVersion(), 1);
  EXPECT_EQ((*second)->Current()->set.rules.size(), sample->rules.size());
  put = (*second)->Put(*sample, 1, "bob");
  ASSERT_TRUE(put);
  ASSERT_EQ(put->status, PutPolicyOutcome::Status::kStored);
  EXPECT_EQ(put->version, 2);

  // The first still holds version 1 in memory: a set written against it is a conflict, reported
  // with the stored version, and nothing is stored.
  put = (*first)->Put(*sample, 1, "alice");
  ASSERT_TRUE(put);
  EXPECT_EQ(put->status, PutPolicyOutcome::Status::kVersionConflict);
  EXPECT_EQ(put->version, 2);
  EXPECT_EQ((*first)->CurrentVersion(), 2);  // and it serves the stored one from now on
  put = (*first)->Put(PolicySet{}, std::nullopt, "alice");  // no version check: stored as the next
  ASSERT_TRUE(put);
  EXPECT_EQ(put->status, PutPolicyOutcome::Status::kStored);
  EXPECT_EQ(put->version, 3);

  auto history = (*second)->History();
  ASSERT_TRUE(history);
  ASSERT_EQ(history->size(), 3u);
  EXPECT_EQ((*history)[0].version, 3);
  EXPECT_EQ((*history)[1].changed_by, "bob");
  EXPECT_EQ((*history)[2].rules, sample->rules.size());
}

/// Polls `condition` every 20 ms until it holds or `timeout` passes.
bool WaitFor(const std::function<bool()>& condition, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (condition()) {
      return true;
    }
    std::this_thread::sleep_for(20ms);
  }
  return condition();
}

// What another policy manager stores reaches this one's memory and wakes its watches.
TEST_P(StoreBackendsTest, PeerChangesBringInAnotherInstancesPolicyAndDecisions) {
  lifeline::testing::FakeClock clock{std::chrono::system_clock::time_point(std::chrono::milliseconds(kNow))};
  auto here_db = OpenDb();
  auto here = PolicySets::Open(here_db, clock);
  auto there_db = OpenDb();
  auto there = PolicySets::Open(there_db, clock);
  ASSERT_TRUE(here && there);
  auto audit = OpenAudit(GetParam() == sql::Backend::kSqlite ? OpenDb("audit.db") : there_db);
  ASSERT_TRUE(audit);
  ChangeFeed there_feed;
  auto approvals = Approvals::Open({.db = there_db, .clock = &clock}, *audit, there_feed, nullptr);
  ASSERT_TRUE(approvals);
  (*approvals)->Stop();

  ChangeFeed feed;
  PeerChanges peers(here_db, **here, feed, 50ms);
  std::this_thread::sleep_for(150ms);  // its first look sets where it starts from
  const auto before = feed.Generation();
  auto put = (*there)->Put(PolicySet{}, 0, "bob");
  ASSERT_TRUE(put);
  ASSERT_EQ(put->version, 1);
  EXPECT_TRUE(WaitFor([&] { return (*here)->CurrentVersion() == 1; }, 5s));
  EXPECT_EQ((*here)->Current()->info.changed_by, "bob");
  EXPECT_TRUE(WaitFor([&] { return feed.Generation() != before; }, 5s));

  NewApprovalRequest request{.id = fmt::format("{:032x}", 7), .engineer = "alice", .device = "SN1",
                             .activity = "remote_session", .application = "ssh", .timeout_s = 600};
  ASSERT_TRUE((*approvals)->Add("acme/dc1/gw-1", request));
  const auto after_policy = feed.Generation();
  auto decided = (*approvals)->Decide(request.id, true, "bob", "");
  ASSERT_TRUE(decided);
  EXPECT_EQ(decided->status, Approvals::DecideStatus::kDecided);
  EXPECT_TRUE(WaitFor([&] { return feed.Generation() != after_policy; }, 5s));
  peers.Stop();
}

TEST_P(StoreBackendsTest, ApprovalRequestLifecycle) {
  lifeline::testing::FakeClock clock{std::chrono::system_clock::time_point(std::chrono::milliseconds(kNow))};
  auto db = OpenDb();
  auto audit = OpenAudit(GetParam() == sql::Backend::kSqlite ? OpenDb("audit.db") : db);
  ASSERT_TRUE(audit);
  ChangeFeed feed;
  auto opened = Approvals::Open({.db = db, .clock = &clock}, *audit, feed, nullptr);
  ASSERT_TRUE(opened) << opened.error().message();
  Approvals& approvals = **opened;
  approvals.Stop();  // the test drives expiry itself

  const NewApprovalRequest first{.id = fmt::format("{:032x}", 1), .engineer = "alice", .device = "SN1",
                                 .activity = "remote_session", .application = "ssh", .rule_id = 7,
                                 .timeout_s = 600, .requested_ms = kNow - 10};
  NewApprovalRequest second = first;
  second.id = fmt::format("{:032x}", 2);
  second.timeout_s = 60;

  auto added = approvals.Add("acme/dc1/gw-1", first);
  ASSERT_TRUE(added);
  EXPECT_EQ(added->status, Approvals::AddStatus::kCreated);
  EXPECT_EQ(added->request.expires_ms, kNow + 600'000);
  added = approvals.Add("acme/dc1/gw-1", first);
  ASSERT_TRUE(added);
  EXPECT_EQ(added->status, Approvals::AddStatus::kExisting);
  added = approvals.Add("acme/dc2/gw-9", first);
  ASSERT_TRUE(added);
  EXPECT_EQ(added->status, Approvals::AddStatus::kIdTaken);
  ASSERT_TRUE(approvals.Add("acme/dc1/gw-1", second));

  auto own = approvals.Decide(first.id, true, "ALICE", "");
  ASSERT_TRUE(own);
  EXPECT_EQ(own->status, Approvals::DecideStatus::kOwnRequest);
  auto decided = approvals.Decide(first.id, true, "bob", "go ahead");
  ASSERT_TRUE(decided);
  EXPECT_EQ(decided->status, Approvals::DecideStatus::kDecided);
  EXPECT_EQ(decided->request.decision_seq, 1);
  auto twice = approvals.Decide(first.id, false, "carol", "");
  ASSERT_TRUE(twice);
  EXPECT_EQ(twice->status, Approvals::DecideStatus::kNotPending);
  auto missing = approvals.Decide(fmt::format("{:032x}", 99), true, "bob", "");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, Approvals::DecideStatus::kNotFound);

  clock.Advance(61s);
  auto expired = approvals.ExpireDue();
  ASSERT_TRUE(expired);
  EXPECT_EQ(*expired, 1u);
  auto decisions = approvals.Decisions("acme/dc1/gw-1", 0, 10);
  ASSERT_TRUE(decisions);
  ASSERT_EQ(decisions->size(), 2u);
  EXPECT_EQ((*decisions)[0].seq, 1);
  EXPECT_EQ((*decisions)[0].state, "approved");
  EXPECT_EQ((*decisions)[0].comment, "go ahead");
  EXPECT_EQ((*decisions)[1].seq, 2);
  EXPECT_EQ((*decisions)[1].state, "expired");
  EXPECT_TRUE(approvals.Decisions("acme/dc1/gw-1", 2, 10)->empty());
  EXPECT_TRUE(approvals.Decisions("acme/dc2/gw-9", 0, 10)->empty());
  auto pending = approvals.List(RequestState::kPending, 10);
  ASSERT_TRUE(pending);
  EXPECT_TRUE(pending->empty());
  auto all = approvals.List(std::nullopt, 10);
  ASSERT_TRUE(all);
  EXPECT_EQ(all->size(), 2u);
  auto found = approvals.Find(second.id);
  ASSERT_TRUE(found && *found);
  EXPECT_EQ((*found)->state, RequestState::kExpired);
  EXPECT_EQ((*found)->decided_ms, kNow + 61'000);

  // Each step is in the audit log: two requests, one decision, one expiry.
  auto records = audit->Read(1);
  ASSERT_TRUE(records);
  std::map<std::string, int> kinds;
  for (const auto& r : *records) {
    ++kinds[r.kind];
  }
  EXPECT_EQ(kinds["approval_request"], 2);
  EXPECT_EQ(kinds["approval_decision"], 1);
  EXPECT_EQ(kinds["approval_expired"], 1);
}

TEST_P(StoreBackendsTest, AuditAppendsCheckpointsAndVerify) {
  auto db = OpenDb("audit.db");
  auto log = OpenAudit(db, /*every_records=*/4);
  ASSERT_TRUE(log);
  for (int i = 1; i <= 10; ++i) {
    AuditRecord record{.time_ms = kNow + i, .source = "policy", .kind = "admin_action", .actor = "alice",
                       .subject = fmt::format("user-{}", i), .details = R"({"n": 1})"};
    auto appended = log->Append(record);
    ASSERT_TRUE(appended) << appended.error().message();
    EXPECT_EQ(appended->sequence, i);
    EXPECT_EQ(appended->details, R"({"n":1})");
  }
  // A late batch keeps its times; a repeated record_id is answered with the stored sequence.
  std::vector<AuditRecord> late(2);
  late[0] = {.time_ms = kNow - 5000, .record_id = "gw-1-a", .source = "acme/dc1/gw-1", .kind = "session_start"};
  late[1] = late[0];
  late[1].record_id = "gw-1-b";
  auto batch = log->AppendMany(late);
  ASSERT_TRUE(batch);
  ASSERT_EQ(batch->size(), 2u);
  auto repeated = log->AppendMany({late[0]});
  ASSERT_TRUE(repeated);
  EXPECT_TRUE(repeated->front().duplicate);
  EXPECT_EQ(repeated->front().sequence, 11);
  EXPECT_EQ(*log->LastSequence(), 12);

  auto checkpoints = log->Checkpoints();
  ASSERT_TRUE(checkpoints);
  ASSERT_EQ(checkpoints->size(), 3u);  // at 4, 8 and 12
  EXPECT_EQ(checkpoints->back().sequence, 12);
  ASSERT_TRUE(log->Checkpoint());  // the head has one already: nothing new
  EXPECT_EQ(log->Checkpoints()->size(), 3u);

  auto report = VerifyAuditStore(*db, log->public_key());
  ASSERT_TRUE(report);
  EXPECT_TRUE(report->Ok()) << report->Render();
  EXPECT_EQ(report->records, 12);
  EXPECT_EQ(report->last_checkpoint, 12);

  // The database itself refuses changes to the records.
  auto changed = db->WithSession(
      [](sql::Session& s) { return s.Exec("UPDATE audit_records SET actor = 'mallory' WHERE sequence = 3"); });
  EXPECT_FALSE(changed);
  auto removed = db->WithSession([](sql::Session& s) { return s.Exec("DELETE FROM audit_checkpoints"); });
  EXPECT_FALSE(removed);
  EXPECT_EQ(Count(*db, "audit_records"), 12);
  EXPECT_EQ(Count(*db, "audit_checkpoints"), 3);
}

// Two AuditLogs with pools of their own stand for two policy-manager processes writing one audit
// log: on PostgreSQL the advisory lock serializes their appends, on SQLite the file's write lock.
TEST_P(StoreBackendsTest, TwoWritersAppendingAtOnceKeepOneChain) {
  auto db_a = OpenDb("audit.db");
  auto db_b = OpenDb("audit.db");
  auto log_a = OpenAudit(db_a, /*every_records=*/25);
  auto log_b = OpenAudit(db_b, /*every_records=*/25);
  ASSERT_TRUE(log_a && log_b);
  constexpr int kThreadsPerLog = 3;
  constexpr int kPerThread = 40;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 2 * kThreadsPerLog; ++t) {
    AuditLog* log = t % 2 == 0 ? log_a.get() : log_b.get();
    threads.emplace_back([log, t, &failures] {
      for (int i = 0; i < kPerThread; ++i) {
        AuditRecord record{.source = fmt::format("writer-{}", t), .kind = "admin_action",
                           .subject = fmt::format("{}", i)};
        if (!log->Append(record)) {
          ++failures;
        }
      }
    });
  }
  for (auto& thread : threads) {
    thread.join();
  }
  EXPECT_EQ(failures.load(), 0);
  constexpr int kTotal = 2 * kThreadsPerLog * kPerThread;
  EXPECT_EQ(*log_a->LastSequence(), kTotal);
  EXPECT_EQ(Count(*db_a, "audit_records"), kTotal);
  auto records = log_b->Read(1, 0, 0);
  ASSERT_TRUE(records);
  ASSERT_EQ(records->size(), static_cast<std::size_t>(kTotal));
  for (int i = 0; i < kTotal; ++i) {
    ASSERT_EQ((*records)[i].sequence, i + 1);
  }
  ASSERT_TRUE(log_a->Checkpoint());
  auto report = VerifyAuditStore(*db_b, log_a->public_key());
  ASSERT_TRUE(report);
  EXPECT_TRUE(report->Ok()) << report->Render();
  EXPECT_EQ(report->records, kTotal);
  EXPECT_EQ(report->last_checkpoint, kTotal);
}

// A policy.db and an audit.db as the stores made them before they moved onto the SQL seam (the
// schema statements below are theirs, verbatim): the data in them is read, and writing goes on.
TEST(LegacySqliteFiles, OpenAndKeepWorking) {
  lifeline::testing::TempDir dir;
  {
    auto db = store::sqlite::Database::Open(dir.path() / "policy.db", {.private_file = true});
    ASSERT_TRUE(db);
    ASSERT_TRUE((*db)->Exec(R"sql(
BEGIN;
CREATE TABLE users (
  name                TEXT PRIMARY KEY,
  role                INTEGER NOT NULL,
  password_hash       TEXT NOT NULL,
  created_ms          INTEGER NOT NULL,
  password_changed_ms INTEGER NOT NULL
);
CREATE TABLE tokens (
  id           INTEGER PRIMARY KEY,
  kind         INTEGER NOT NULL,
  name         TEXT NOT NULL,
  token_hash   TEXT NOT NULL UNIQUE,
  role         INTEGER NOT NULL,
  created_by   TEXT NOT NULL,
  created_ms   INTEGER NOT NULL,
  expires_ms   INTEGER,
  revoked_ms   INTEGER,
  last_used_ms INTEGER
);
CREATE UNIQUE INDEX tokens_api_name ON tokens(name) WHERE kind = 2;
CREATE INDEX tokens_session_user ON tokens(name) WHERE kind = 1;
CREATE TABLE login_failures (
  subject INTEGER NOT NULL,
  key     TEXT NOT NULL,
  at_ms   INTEGER NOT NULL
);
CREATE INDEX login_failures_key ON login_failures(subject, key, at_ms);
CREATE TABLE lockouts (
  subject  INTEGER NOT NULL,
  key      TEXT NOT NULL,
  until_ms INTEGER NOT NULL,
  PRIMARY KEY (subject, key)
);
PRAGMA user_version = 1;
COMMIT;
CREATE TABLE IF NOT EXISTS policy_versions (
  version    INTEGER PRIMARY KEY,
  changed_ms INTEGER NOT NULL,
  changed_by TEXT NOT NULL,
  groups     INTEGER NOT NULL,
  rules      INTEGER NOT NULL,
  grants     INTEGER NOT NULL,
  policy     TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS approval_requests (
  id              TEXT PRIMARY KEY,
  gateway         TEXT NOT NULL,
  engineer        TEXT NOT NULL,
  device          TEXT NOT NULL,
  model           TEXT NOT NULL,
  activity        TEXT NOT NULL,
  application     TEXT NOT NULL,
  reason          TEXT NOT NULL,
  service_request TEXT NOT NULL,
  rule_id         INTEGER NOT NULL,
  timeout_s       INTEGER NOT NULL,
  requested_ms    INTEGER NOT NULL,
  received_ms     INTEGER NOT NULL,
  expires_ms      INTEGER NOT NULL,
  state           TEXT NOT NULL,
  decided_by      TEXT NOT NULL DEFAULT '',
  decided_ms      INTEGER,
  comment         TEXT NOT NULL DEFAULT '',
  decision_seq    INTEGER UNIQUE,
  emailed_ms      INTEGER
);
CREATE INDEX IF NOT EXISTS approval_requests_state ON approval_requests(state, expires_ms);
CREATE INDEX IF NOT EXISTS approval_requests_decisions ON approval_requests(gateway, decision_seq);
CREATE INDEX IF NOT EXISTS approval_requests_received ON approval_requests(received_ms);
INSERT INTO users VALUES ('alice', 3, '$argon2id$old', 1700000000000, 1700000000000);
INSERT INTO tokens (kind, name, token_hash, role, created_by, created_ms) VALUES (2, 'ci', 'hash-ci', 1, 'alice', 1700000000000);
INSERT INTO approval_requests (id, gateway, engineer, device, model, activity, application, reason, service_request,
  rule_id, timeout_s, requested_ms, received_ms, expires_ms, state, decision_seq, decided_ms, decided_by)
  VALUES ('0000000000000000000000000000000a', 'acme/dc1/gw-1', 'alice', 'SN1', '', 'remote_session', 'ssh', '', '',
          7, 600, 1700000000000, 1700000000000, 1700000600000, 'approved', 1, 1700000001000, 'bob');
)sql"));
    PolicySet old;
    old.version = 1;
    const std::string policy_json = EncodePolicySet(old);
    auto insert = (*db)->Prepare("INSERT INTO policy_versions VALUES (1, 1700000000000, 'alice', 0, 0, 0, ?)");
    ASSERT_TRUE(insert);
    insert->Bind(1, policy_json);
    ASSERT_TRUE(insert->Run());
  }
  {
    // audit.db: the old log's tables and triggers, and one record it appended.
    auto old_log = AuditLog::Open({.db_path = dir.path() / "audit.db",
                                   .signing_key_path = dir.path() / "audit-sign.key",
                                   .checkpoint_timer = false});
    ASSERT_TRUE(old_log);
    ASSERT_TRUE((*old_log)->Append({.source = "policy", .kind = "login", .actor = "alice"}));
  }

  auto store = OpenSqlitePolicyStore(dir.path() / "policy.db");
  ASSERT_TRUE(store) << store.error().message();
  auto alice = (*store)->FindUser("alice");
  ASSERT_TRUE(alice && *alice);
  EXPECT_EQ((*alice)->password_hash, "$argon2id$old");
  auto token = (*store)->AddToken({.kind = TokenKind::kSession, .name = "alice", .token_hash = "hash-s",
                                   .role = Role::kAdmin, .created_by = "alice", .created_ms = kNow});
  ASSERT_TRUE(token);
  EXPECT_EQ(*token, 2);  // after the old file's token 1
  {
    // The old file's version was adopted: nothing was replayed, and the version is recorded.
    auto db = OpenPolicySqlite(dir.path() / "policy.db");
    ASSERT_TRUE(db);
    auto version = (*db)->WithSession(
        [](sql::Session& s) { return s.QueryRow("SELECT version FROM schema_version WHERE id = 1"); });
    ASSERT_TRUE(version && *version);
    EXPECT_EQ((*version)->Int(0), 1);
  }

  auto sets = PolicySets::Open(dir.path() / "policy.db");
  ASSERT_TRUE(sets);
  EXPECT_EQ((*sets)->CurrentVersion(), 1);
  auto put = (*sets)->Put(PolicySet{}, 1, "alice");
  ASSERT_TRUE(put);
  EXPECT_EQ(put->version, 2);

  auto audit = AuditLog::Open({.db_path = dir.path() / "audit.db",
                               .signing_key_path = dir.path() / "audit-sign.key",
                               .checkpoint_timer = false});
  ASSERT_TRUE(audit);
  ChangeFeed feed;
  auto approvals = Approvals::Open({.db_path = dir.path() / "policy.db"}, **audit, feed, nullptr);
  ASSERT_TRUE(approvals);
  (*approvals)->Stop();
  auto old_request = (*approvals)->Find("0000000000000000000000000000000a");
  ASSERT_TRUE(old_request && *old_request);
  EXPECT_EQ((*old_request)->state, RequestState::kApproved);
  EXPECT_EQ((*old_request)->decided_by, "bob");
  auto decisions = (*approvals)->Decisions("acme/dc1/gw-1", 0, 10);
  ASSERT_TRUE(decisions);
  EXPECT_EQ(decisions->size(), 1u);

  auto appended = (*audit)->Append({.source = "policy", .kind = "login", .actor = "bob"});
  ASSERT_TRUE(appended);
  EXPECT_EQ(appended->sequence, 2);
  ASSERT_TRUE((*audit)->Checkpoint());
  auto report = VerifyAuditStore(dir.path() / "audit.db", (*audit)->public_key());
  ASSERT_TRUE(report);
  EXPECT_TRUE(report->Ok()) << report->Render();
  EXPECT_EQ(report->records, 2);
}

}  // namespace
}  // namespace lifeline::policy

// The audit log: gapless sequence and hash chain, late records keeping their times, duplicate
// deliveries ignored, signed checkpoints by count and by time, export round trips, verification of
// each kind of tampering, file modes, and a syslog line received on a loopback UDP socket. What the
// store does runs on SQLite and on a real PostgreSQL server this binary starts (TEST_P, a fresh
// database per test).
#include "policy/audit_log.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sstream>
#include <thread>

#include "policy/audit_export.h"
#include "policy/audit_verify.h"
#include "store/postgres/session.h"
#include "store/sql/database.h"
#include "support/fake_clock.h"
#include "support/postgres_server.h"
#include "support/temp_dir.h"

namespace lifeline::policy {
namespace {

using testing::FakeClock;
using testing::TempDir;

mode_t ModeOf(const std::filesystem::path& path) {
  struct stat info {};
  EXPECT_EQ(::stat(path.c_str(), &info), 0) << path;
  return info.st_mode & 07777;
}

AuditRecord MakeRecord(std::string kind, std::string subject, std::string id = "") {
  AuditRecord r;
  r.source = "policy";
  r.kind = std::move(kind);
  r.actor = "alice";
  r.subject = std::move(subject);
  r.details = R"({ "app": "ssh",  "bytes": 12 })";
  r.record_id = std::move(id);
  return r;
}

const auto* const postgres_environment =
    ::testing::AddGlobalTestEnvironment(new lifeline::testing::PostgresEnvironment);

class AuditLogFixture {
 protected:
  /// Each call opens the log afresh (a restart); on PostgreSQL on the test's one database.
  std::unique_ptr<AuditLog> Open(AuditLog::Options options = {}) {
    options.db_path = dir_ / "audit.db";
    if (backend_ == store::sql::Backend::kPostgres) {
      auto* server = lifeline::testing::SharedPostgres();
      EXPECT_NE(server, nullptr) << "the test PostgreSQL server did not start (see above)";
      if (server == nullptr) {
        return nullptr;
      }
      if (conninfo_.empty()) {
        conninfo_ = server->CreateDatabase();
      }
      auto db = store::postgres::Open({.conninfo = conninfo_, .pool_size = 4});
      EXPECT_TRUE(db) << store::sql::LastErrorDetail();
      if (!db) {
        return nullptr;
      }
      options.db = std::move(*db);
    }
    options.signing_key_path = dir_ / "audit-sign.key";
    options.clock = &clock_;
    options.checkpoint_timer = false;
    auto log = AuditLog::Open(options);
    EXPECT_TRUE(log) << log.error().message();
    return log ? std::move(*log) : nullptr;
  }
  AuditLog::Options NoCheckpoints() {
    AuditLog::Options options;
    options.checkpoint_every_records = 1000000;
    options.checkpoint_every = std::chrono::seconds(0);
    return options;
  }
  std::vector<AuditRecord> All(AuditLog& log) {
    auto records = log.Read(1);
    EXPECT_TRUE(records);
    return records ? *records : std::vector<AuditRecord>{};
  }
  AuditVerifyReport Verify(const std::vector<AuditRecord>& records, const std::vector<AuditCheckpoint>& cps,
                           AuditLog& log) {
    return VerifyAudit(records, cps, log.public_key());
  }
  static bool Has(const AuditVerifyReport& report, AuditProblem problem, std::int64_t sequence) {
    for (const auto& f : report.findings) {
      if (f.problem == problem && f.sequence == sequence) {
        return true;
      }
    }
    return false;
  }

  TempDir dir_;
  FakeClock clock_{std::chrono::system_clock::time_point(std::chrono::milliseconds(1'700'000'000'000))};
  store::sql::Backend backend_ = store::sql::Backend::kSqlite;
  std::string conninfo_;
};

/// On SQLite only: the file's mode, what sqlite3 edits show, the syslog copy.
class AuditLogTest : public ::testing::Test, public AuditLogFixture {};

class AuditLogOnBackendsTest : public ::testing::TestWithParam<store::sql::Backend>, public AuditLogFixture {
 protected:
  void SetUp() override { backend_ = GetParam(); }
};

INSTANTIATE_TEST_SUITE_P(Backends, AuditLogOnBackendsTest,
                         ::testing::Values(store::sql::Backend::kSqlite, store::sql::Backend::kPostgres),
                         [](const ::testing::TestParamInfo<store::sql::Backend>& info) {
                           return std::string(info.param == store::sql::Backend::kSqlite ? "Sqlite" : "Postgres");
                         });

TEST_P(AuditLogOnBackendsTest, AppendAssignsGaplessSequenceAndChainsHashes) {
  auto log = Open(NoCheckpoints());
  for (int i = 0; i < 5; ++i) {
    auto appended = log->Append(MakeRecord("decision", "array-" + std::to_string(i)));
    ASSERT_TRUE(appended) << appended.error().message();
    EXPECT_EQ(appended->sequence, i + 1);
    clock_.Advance(std::chrono::milliseconds(10));
  }
  const auto records = All(*log);
  ASSERT_EQ(records.size(), 5u);
  EXPECT_EQ(records[0].prev_hash, kAuditGenesisHash);
  for (std::size_t i = 0; i < records.size(); ++i) {
    EXPECT_EQ(records[i].hash, ComputeAuditHash(records[i]));
    EXPECT_EQ(records[i].details, R"({"app":"ssh","bytes":12})") << "details are stored canonical";
    EXPECT_EQ(records[i].record_id.size(), 32u) << "an id is assigned when the writer gives none";
    if (i > 0) {
      EXPECT_EQ(records[i].prev_hash, records[i - 1].hash);
    }
  }
  EXPECT_EQ(records[2].time_ms, 1'700'000'000'020);
  EXPECT_EQ(*log->LastSequence(), 5);
  const auto report = Verify(records, {}, *log);
  EXPECT_TRUE(report.Ok()) << report.Render();
  EXPECT_TRUE(Has(report, AuditProblem::kUncheckpointedTail, 1)) << report.Render();
}

TEST_F(AuditLogTest, EncodingIsTheDocumentedOne) {
  AuditRecord r{.sequence = 7, .time_ms = 1000, .received_ms = 2000, .record_id = "id1", .source = "gw-1",
                .kind = "login", .actor = "bob", .subject = "", .details = "{}",
                .prev_hash = std::string(kAuditGenesisHash)};
  EXPECT_EQ(AuditRecordEncoding(r),
            "lifeline-audit-record-v1\n1:7\n4:1000\n4:2000\n3:id1\n4:gw-1\n5:login\n3:bob\n0:\n2:{}\n64:" +
                std::string(kAuditGenesisHash) + "\n");
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST_P(AuditLogOnBackendsTest, RefusesMalformedRecords) {
  auto log = Open(NoCheckpoints());
  auto not_object = MakeRecord("decision", "x");
  not_object.details = "[1,2]";
  EXPECT_EQ(log->Append(not_object).error(), AuditErrc::kBadRecord);
  EXPECT_EQ(log->Append(MakeRecord("Bad Kind", "x")).error(), AuditErrc::kBadRecord);
  auto bad_utf8 = MakeRecord("login", "x");
  bad_utf8.actor = "\xff\xfe";
  EXPECT_EQ(log->Append(bad_utf8).error(), AuditErrc::kBadRecord);
  auto no_time = MakeRecord("login", "x");
  EXPECT_EQ(log->AppendMany({no_time}).error(), AuditErrc::kBadRecord) << "late records must carry their time";
  EXPECT_EQ(*log->LastSequence(), 0);
}

TEST_P(AuditLogOnBackendsTest, LateRecordsKeepTheirOriginalTimesAndDuplicatesAreIgnored) {
  auto log = Open(NoCheckpoints());
  ASSERT_TRUE(log->Append(MakeRecord("login", "console")));
  // The gateway cached these an hour ago while the policy manager was down.
  const std::int64_t hour_ago = clock_.NowUnixMillis() - 3'600'000;
  std::vector<AuditRecord> cached;
  for (int i = 0; i < 3; ++i) {
    auto r = MakeRecord("session_start", "array-1", "gw-1/" + std::to_string(i));
    r.source = "gateway gw-1";
    r.time_ms = hour_ago + i;
    cached.push_back(r);
  }
  auto first = log->AppendMany(cached);
  ASSERT_TRUE(first) << first.error().message();
  ASSERT_EQ(first->size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ((*first)[i].sequence, i + 2);
    EXPECT_FALSE((*first)[i].duplicate);
  }
  // The reply was lost; the gateway sends the same records again, plus one new one.
  clock_.Advance(std::chrono::seconds(5));
  auto extra = MakeRecord("session_end", "array-1", "gw-1/3");
  extra.source = "gateway gw-1";
  extra.time_ms = hour_ago + 10;
  cached.push_back(extra);
  auto again = log->AppendMany(cached);
  ASSERT_TRUE(again);
  ASSERT_EQ(again->size(), 4u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ((*again)[i].sequence, i + 2);
    EXPECT_TRUE((*again)[i].duplicate);
  }
  EXPECT_EQ((*again)[3].sequence, 5);
  EXPECT_FALSE((*again)[3].duplicate);
  // A duplicate id within one batch counts once.
  auto twice = log->AppendMany({extra, extra});
  ASSERT_TRUE(twice);
  EXPECT_TRUE((*twice)[0].duplicate && (*twice)[1].duplicate);

  const auto records = All(*log);
  ASSERT_EQ(records.size(), 5u);
  EXPECT_EQ(records[1].time_ms, hour_ago);
  EXPECT_EQ(records[3].time_ms, hour_ago + 2);
  EXPECT_EQ(records[4].time_ms, hour_ago + 10);
  EXPECT_EQ(records[1].received_ms, 1'700'000'000'000);
  EXPECT_EQ(records[4].received_ms, 1'700'000'005'000);
  EXPECT_EQ(records[1].source, "gateway gw-1");
  EXPECT_TRUE(Verify(records, {}, *log).Ok());
  // Append with an existing id returns the stored record.
  auto repeat = log->Append(cached[0]);
  ASSERT_TRUE(repeat);
  EXPECT_EQ(repeat->sequence, 2);
}

TEST_P(AuditLogOnBackendsTest, SignsCheckpointsEveryNRecordsAndEveryTSeconds) {
  AuditLog::Options options;
  options.checkpoint_every_records = 3;
  options.checkpoint_every = std::chrono::seconds(60);
  auto log = Open(options);
  for (int i = 0; i < 7; ++i) {
    ASSERT_TRUE(log->Append(MakeRecord("request", "dev")));
  }
  auto cps = log->Checkpoints();
  ASSERT_TRUE(cps);
  // The first append is checkpointed (no checkpoint for "60 s"), then every 3 records.
  ASSERT_EQ(cps->size(), 3u);
  EXPECT_EQ((*cps)[0].sequence, 1);
  EXPECT_EQ((*cps)[1].sequence, 4);
  EXPECT_EQ((*cps)[2].sequence, 7);
  ASSERT_TRUE(log->Append(MakeRecord("request", "dev")));
  ASSERT_TRUE(log->CheckpointIfDue());
  EXPECT_EQ(log->Checkpoints()->size(), 3u) << "not due yet";
  clock_.Advance(std::chrono::seconds(61));
  ASSERT_TRUE(log->CheckpointIfDue());
  cps = log->Checkpoints();
  ASSERT_EQ(cps->size(), 4u);
  EXPECT_EQ(cps->back().sequence, 8);
  EXPECT_EQ(cps->back().time_ms, clock_.NowUnixMillis());
  const auto report = Verify(All(*log), *cps, *log);
  EXPECT_TRUE(report.Ok()) << report.Render();
  EXPECT_EQ(report.last_checkpoint, 8);
  EXPECT_TRUE(report.findings.empty()) << report.Render();
}

TEST_F(AuditLogTest, FilesArePrivateAndTheKeyIsKeptAcrossRestarts) {
  const mode_t old_mask = ::umask(0);
  std::array<std::uint8_t, 32> first_key{};
  {
    auto log = Open();
    std::copy(log->public_key().begin(), log->public_key().end(), first_key.begin());
    ASSERT_TRUE(log->Append(MakeRecord("login", "x")));
  }
  ::umask(old_mask);
  EXPECT_EQ(ModeOf(dir_ / "audit.db"), 0600u);
  EXPECT_EQ(ModeOf(dir_ / "audit-sign.key"), 0600u);
  auto pub = crypto::ReadPublicKey(dir_ / "audit-sign.key.pub", crypto::KeyKind::kEd25519Public);
  ASSERT_TRUE(pub);
  EXPECT_EQ(*pub, first_key);
  auto log = Open();
  EXPECT_TRUE(std::equal(first_key.begin(), first_key.end(), log->public_key().begin()));
  auto appended = log->Append(MakeRecord("login", "y"));
  ASSERT_TRUE(appended);
  EXPECT_EQ(appended->sequence, 2) << "the chain continues after a restart";
}

TEST_P(AuditLogOnBackendsTest, ConcurrentAppendsStayGapless) {
  auto log = Open(NoCheckpoints());
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&log, t] {
      for (int i = 0; i < 25; ++i) {
        EXPECT_TRUE(log->Append(MakeRecord("admin_action", "t" + std::to_string(t))));
      }
    });
  }
  for (auto& thread : threads) {
    thread.join();
  }
  const auto records = All(*log);
  ASSERT_EQ(records.size(), 100u);
  EXPECT_TRUE(Verify(records, {}, *log).Ok());
}

TEST_P(AuditLogOnBackendsTest, ExportsRoundTripAndCsvHasEveryRow) {
  AuditLog::Options options;
  options.checkpoint_every_records = 2;
  auto log = Open(options);
  auto tricky = MakeRecord("policy_change", "group \"a\", b");
  tricky.details = R"({"note":"line1\nline2, \"quoted\""})";
  ASSERT_TRUE(log->Append(tricky));
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(log->Append(MakeRecord("file_transfer", "dev")));
  }
  const auto records = All(*log);
  const auto cps = *log->Checkpoints();
  std::ostringstream jsonl;
  WriteAuditJsonLines(jsonl, records, cps);
  const auto parsed = ParseAuditJsonLines(jsonl.str());
  EXPECT_TRUE(parsed.bad_lines.empty());
  ASSERT_EQ(parsed.records.size(), records.size());
  ASSERT_EQ(parsed.checkpoints.size(), cps.size());
  EXPECT_EQ(parsed.records[0].details, records[0].details);
  EXPECT_EQ(parsed.records[0].subject, "group \"a\", b");
  EXPECT_TRUE(VerifyAudit(parsed.records, parsed.checkpoints, log->public_key()).Ok());

  std::ostringstream csv;
  WriteAuditCsv(csv, records, cps);
  const std::string text = csv.str();
  EXPECT_EQ(text.rfind("type,sequence,time,time_ms,received_ms,record_id,source,kind,actor,subject,details,"
                       "prev_hash,hash,signature\r\n",
                       0),
            0u);
  EXPECT_NE(text.find(R"("group ""a"", b")"), std::string::npos) << text;
  std::size_t rows = 0;
  for (std::size_t at = text.find("\r\n"); at != std::string::npos; at = text.find("\r\n", at + 2)) {
    ++rows;
  }
  EXPECT_EQ(rows, 1 + records.size() + cps.size());
}

TEST_F(AuditLogTest, VerifyTellsEachTamperingApart) {
  AuditLog::Options options;
  options.checkpoint_every_records = 4;
  options.checkpoint_every = std::chrono::seconds(0);
  auto log = Open(options);
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(log->Append(MakeRecord("decision", "dev-" + std::to_string(i))));
  }
  const auto records = All(*log);
  const auto cps = *log->Checkpoints();
  ASSERT_EQ(cps.size(), 2u);  // at 4 and 8; 9 and 10 only chain-protected
  {
    const auto report = Verify(records, cps, *log);
    EXPECT_TRUE(report.Ok()) << report.Render();
    ASSERT_EQ(report.findings.size(), 1u) << report.Render();
    EXPECT_TRUE(Has(report, AuditProblem::kUncheckpointedTail, 9));
  }
  {  // changed
    auto changed = records;
    changed[2].actor = "mallory";
    const auto report = Verify(changed, cps, *log);
    EXPECT_FALSE(report.Ok());
    EXPECT_TRUE(Has(report, AuditProblem::kChanged, 3)) << report.Render();
    EXPECT_EQ(report.findings.size(), 2u) << report.Render();
  }
  {  // changed and re-hashed: the chain and the checkpoint say so
    auto rehashed = records;
    rehashed[1].subject = "elsewhere";
    rehashed[1].hash = ComputeAuditHash(rehashed[1]);
    const auto report = Verify(rehashed, cps, *log);
    EXPECT_TRUE(Has(report, AuditProblem::kChainBroken, 3)) << report.Render();
  }
  {  // removed
    auto removed = records;
    removed.erase(removed.begin() + 5);
    const auto report = Verify(removed, cps, *log);
    EXPECT_TRUE(Has(report, AuditProblem::kRemoved, 6)) << report.Render();
    EXPECT_FALSE(Has(report, AuditProblem::kChanged, 7)) << report.Render();
  }
  {  // reordered in a file
    auto reordered = records;
    std::swap(reordered[4], reordered[5]);
    const auto report = Verify(reordered, cps, *log);
    EXPECT_TRUE(Has(report, AuditProblem::kReordered, 5)) << report.Render();
    EXPECT_FALSE(Has(report, AuditProblem::kRemoved, 5)) << report.Render();
  }
  {  // renumbered (reordered in the store)
    auto renumbered = records;
    std::swap(renumbered[4].sequence, renumbered[5].sequence);
    std::swap(renumbered[4], renumbered[5]);
    const auto report = Verify(renumbered, cps, *log);
    EXPECT_TRUE(Has(report, AuditProblem::kReordered, 5)) << report.Render();
    EXPECT_TRUE(Has(report, AuditProblem::kReordered, 6)) << report.Render();
    EXPECT_FALSE(Has(report, AuditProblem::kChanged, 5)) << report.Render();
  }
  {  // forged checkpoint: signed by another key, over a hash of the forger's choosing
    auto forged = cps;
    const auto other = crypto::GenerateSigningKeyPair();
    forged[1].hash = records[8].hash;
    forged[1].sequence = 9;
    forged[1].signature =
        crypto::Base64Encode(crypto::Sign(crypto::AsBytes(AuditCheckpointEncoding(forged[1])), other));
    const auto report = Verify(records, forged, *log);
    EXPECT_TRUE(Has(report, AuditProblem::kBadCheckpointSignature, 9)) << report.Render();
    EXPECT_FALSE(report.Ok());
  }
  {  // truncated after the last checkpoint: only a warning (nothing can tell)
    auto truncated = records;
    truncated.resize(9);
    const auto report = Verify(truncated, cps, *log);
    EXPECT_TRUE(report.Ok()) << report.Render();
    EXPECT_TRUE(Has(report, AuditProblem::kUncheckpointedTail, 9));
  }
  {  // truncated before a checkpoint
    auto truncated = records;
    truncated.resize(7);
    const auto report = Verify(truncated, cps, *log);
    EXPECT_TRUE(Has(report, AuditProblem::kCheckpointMismatch, 8)) << report.Render();
  }
}

TEST_F(AuditLogTest, ForwardsEachRecordToSyslogOverUdp) {
  const int server = ::socket(AF_INET, SOCK_DGRAM, 0);
  ASSERT_GE(server, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(server, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  socklen_t length = sizeof(address);
  ASSERT_EQ(::getsockname(server, reinterpret_cast<sockaddr*>(&address), &length), 0);

  AuditLog::Options options = NoCheckpoints();
  options.syslog = AuditSyslogOptions{.transport = AuditSyslogOptions::Transport::kUdp,
                                      .host = "127.0.0.1",
                                      .port = ntohs(address.sin_port),
                                      .hostname = "policy-1"};
  auto log = Open(options);
  auto record = MakeRecord("session_start", "array-7");
  record.actor = "eng \"x\"";
  auto appended = log->Append(record);
  ASSERT_TRUE(appended);

  pollfd ready{.fd = server, .events = POLLIN, .revents = 0};
  ASSERT_EQ(::poll(&ready, 1, 5000), 1) << "no syslog datagram within 5 s";
  char buffer[8192];
  const ssize_t n = ::recv(server, buffer, sizeof(buffer), 0);
  ::close(server);
  ASSERT_GT(n, 0);
  const std::string line(buffer, static_cast<std::size_t>(n));
  EXPECT_EQ(line.rfind("<110>1 2023-11-14T22:13:20.000Z policy-1 lifeline-policy ", 0), 0u) << line;
  EXPECT_NE(line.find(" session_start [lifeline-audit@32473 seq=\"1\" source=\"policy\" actor=\"eng \\\"x\\\"\""),
            std::string::npos)
      << line;
  EXPECT_NE(line.find("hash=\"" + appended->hash + "\"] {\"app\":\"ssh\",\"bytes\":12}"), std::string::npos)
      << line;
  EXPECT_EQ(log->syslog_dropped(), 0);
}

}  // namespace
}  // namespace lifeline::policy

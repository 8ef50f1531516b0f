// `lifeline audit verify` and `lifeline audit export` as real runs: an untouched log passes (online
// and as an export); records changed, deleted and reordered in the store (sqlite3 UPDATE/DELETE
// behind the log's back) and in a JSON-lines export (the file edited) are each reported as what
// they are; a forged checkpoint is caught; a truncated unsigned tail is only a warning.
#include <gtest/gtest.h>

#include <algorithm>
#include <sstream>

#include "policy/audit_export.h"
#include "policy/audit_log.h"
#include "support/harness.h"

namespace lifeline::testing {
namespace {

using policy::AuditLog;
using policy::AuditRecord;

class AuditVerifyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    AuditLog::Options options;
    options.db_path = dir_ / "policy.db";
    options.signing_key_path = dir_ / "audit-sign.key";
    options.checkpoint_every_records = 5;
    options.checkpoint_every = std::chrono::seconds(0);
    options.checkpoint_timer = false;
    auto log = AuditLog::Open(options);
    ASSERT_TRUE(log) << log.error().message();
    for (int i = 0; i < 8; ++i) {
      AuditRecord r{.source = "policy", .kind = i % 2 ? "decision" : "request", .actor = "eng-" + std::to_string(i),
                    .subject = "array-1/ssh", .details = R"({"reason":"SR 1234"})"};
      ASSERT_TRUE((*log)->Append(r));
    }
    // A gateway delivers cached records late, then again after a lost reply.
    std::vector<AuditRecord> late;
    for (int i = 0; i < 4; ++i) {
      late.push_back({.time_ms = 1'600'000'000'000 + i, .record_id = "gw-1/" + std::to_string(i),
                      .source = "gateway gw-1", .kind = "session_end", .actor = "eng-1",
                      .subject = "array-1/ssh", .details = R"({"bytes_in":10,"bytes_out":20})"});
    }
    ASSERT_TRUE((*log)->AppendMany(late));
    ASSERT_TRUE((*log)->AppendMany(late));
    for (int i = 0; i < 2; ++i) {
      ASSERT_TRUE((*log)->Append({.source = "policy", .kind = "login", .actor = "admin"}));
    }
    // Checkpoints at 5 and at 12 (the end of the late batch); 13 and 14 are chain-only.
    ASSERT_EQ(*(*log)->LastSequence(), 14);
  }

  std::string Db() const { return (dir_ / "policy.db").string(); }
  std::string PublicKey() const { return (dir_ / "audit-sign.key.pub").string(); }

  /// A copy of the store to tamper with (the log is closed, so everything is in the main file).
  std::string CopyDb(const std::string& name) {
    const auto copy = dir_ / (name + ".db");
    fs::copy_file(dir_ / "policy.db", copy);
    return copy.string();
  }
  static CommandResult Sql(const std::string& db, const std::string& sql) {
    return RunCommand({"/usr/bin/sqlite3", db, sql});
  }
  CommandResult VerifyDb(const std::string& db) {
    return RunLifeline({"audit", "verify", "--db", db, "--public-key", PublicKey()});
  }
  CommandResult VerifyExport(const std::string& file) {
    return RunLifeline({"audit", "verify", "--export", file, "--public-key", PublicKey()});
  }
  /// The untouched JSONL export, one entry per line.
  std::vector<std::string> ExportLines() {
    const auto file = dir_ / "export.jsonl";
    if (!fs::exists(file)) {
      auto exported = RunLifeline({"audit", "export", "--db", Db(), "--format", "jsonl", "--out", file.string()});
      EXPECT_EQ(exported.exit_code, 0) << exported.output;
    }
    std::vector<std::string> lines;
    std::istringstream in(ReadFile(file));
    for (std::string line; std::getline(in, line);) {
      lines.push_back(line);
    }
    return lines;
  }
  std::string WriteExport(const std::string& name, const std::vector<std::string>& lines) {
    std::string text;
    for (const auto& line : lines) {
      text += line + "\n";
    }
    WriteFile(dir_ / name, text);
    return (dir_ / name).string();
  }
  static std::size_t RecordLine(const std::vector<std::string>& lines, int sequence) {
    const std::string needle = "\"type\":\"record\",\"sequence\":" + std::to_string(sequence) + ",";
    for (std::size_t i = 0; i < lines.size(); ++i) {
      if (lines[i].find(needle) != std::string::npos) {
        return i;
      }
    }
    ADD_FAILURE() << "no record line for " << sequence;
    return 0;
  }
  static bool Says(const CommandResult& result, const std::string& text) {
    return result.output.find(text) != std::string::npos;
  }
  /// Exactly one kind of error, at the given sequence numbers.
  static void ExpectOnly(const CommandResult& result, const std::string& kind, std::vector<int> sequences) {
    EXPECT_EQ(result.exit_code, 1) << result.output;
    for (const int s : sequences) {
      EXPECT_TRUE(Says(result, "ERROR seq " + std::to_string(s) + " " + kind + ":")) << result.output;
    }
    for (const char* other : {"changed", "removed", "reordered", "duplicate", "chain-broken", "forged-checkpoint",
                              "checkpoint-mismatch", "malformed"}) {
      if (other != kind) {
        EXPECT_FALSE(Says(result, std::string(" ") + other + ":")) << kind << " reported as " << other << ":\n"
                                                                   << result.output;
      }
    }
  }

  TempDir dir_;
};

TEST_F(AuditVerifyTest, UntouchedLogPassesOnlineAndOffline) {
  auto online = VerifyDb(Db());
  EXPECT_EQ(online.exit_code, 0) << online.output;
  EXPECT_TRUE(Says(online, "14 records, 2 checkpoints (last valid at sequence 12): the log is untouched"))
      << online.output;
  EXPECT_TRUE(Says(online, "WARNING seq 13 unsigned-tail: sequences 13 to 14 after the last checkpoint"))
      << online.output;

  const auto lines = ExportLines();
  ASSERT_EQ(lines.size(), 16u);  // 14 records + 2 checkpoints
  EXPECT_NE(lines[5].find("\"type\":\"checkpoint\",\"sequence\":5,"), std::string::npos) << lines[5];
  // The late records kept their original times, and the repeat delivery added nothing.
  EXPECT_NE(lines[RecordLine(lines, 9)].find("\"time_ms\":1600000000000,"), std::string::npos);
  auto offline = VerifyExport((dir_ / "export.jsonl").string());
  EXPECT_EQ(offline.exit_code, 0) << offline.output;
  EXPECT_TRUE(Says(offline, "the log is untouched")) << offline.output;

  auto csv = RunLifeline({"audit", "export", "--db", Db(), "--format", "csv"});
  EXPECT_EQ(csv.exit_code, 0) << csv.output;
  EXPECT_TRUE(Says(csv, "type,sequence,time,time_ms,received_ms,record_id,source,kind,actor,subject,details,"))
      << csv.output;
  EXPECT_TRUE(Says(csv, "record,9,2020-09-13T12:26:40.000Z,1600000000000,")) << csv.output;
  EXPECT_TRUE(Says(csv, "\"{\"\"bytes_in\"\":10,\"\"bytes_out\"\":20}\"")) << csv.output;

  EXPECT_EQ(RunLifeline({"audit", "verify", "--db", Db()}).exit_code, 2) << "the public key is required";
  EXPECT_EQ(RunLifeline({"audit", "verify", "--public-key", PublicKey()}).exit_code, 2);
}

TEST_F(AuditVerifyTest, StoreTampering) {
  // The log's own triggers refuse changes; someone with the file drops them first.
  const auto guarded = CopyDb("guarded");
  auto refused = Sql(guarded, "UPDATE audit_records SET actor = 'mallory' WHERE sequence = 3;");
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_TRUE(Says(refused, "append-only")) << refused.output;

  const auto changed = CopyDb("changed");
  ASSERT_EQ(Sql(changed, "DROP TRIGGER audit_records_no_update;"
                         "UPDATE audit_records SET actor = 'mallory' WHERE sequence = 3;")
                .exit_code,
            0);
  ExpectOnly(VerifyDb(changed), "changed", {3});

  const auto deleted = CopyDb("deleted");
  ASSERT_EQ(Sql(deleted, "DROP TRIGGER audit_records_no_delete; DELETE FROM audit_records WHERE sequence = 7;")
                .exit_code,
            0);
  ExpectOnly(VerifyDb(deleted), "removed", {7});

  const auto reordered = CopyDb("reordered");
  ASSERT_EQ(Sql(reordered, "DROP TRIGGER audit_records_no_update;"
                           "UPDATE audit_records SET sequence = -3 WHERE sequence = 3;"
                           "UPDATE audit_records SET sequence = 3 WHERE sequence = 4;"
                           "UPDATE audit_records SET sequence = 4 WHERE sequence = -3;")
                .exit_code,
            0);
  ExpectOnly(VerifyDb(reordered), "reordered", {3, 4});

  // A checkpoint over the unsigned tail, signed with the forger's own key.
  const auto forged = CopyDb("forged");
  auto records = policy::ParseAuditJsonLines(
      RunLifeline({"audit", "export", "--db", Db()}).output).records;
  ASSERT_EQ(records.size(), 14u);
  policy::AuditCheckpoint fake{.sequence = 14, .hash = records[13].hash, .time_ms = records[13].received_ms};
  fake.signature = crypto::Base64Encode(
      crypto::Sign(crypto::AsBytes(policy::AuditCheckpointEncoding(fake)), crypto::GenerateSigningKeyPair()));
  ASSERT_EQ(Sql(forged, "INSERT INTO audit_checkpoints VALUES (14, '" + fake.hash + "', " +
                            std::to_string(fake.time_ms) + ", '" + fake.signature + "');")
                .exit_code,
            0);
  ExpectOnly(VerifyDb(forged), "forged-checkpoint", {14});

  // Removing the unsigned tail cannot be told from a log that ended there: a warning, exit 0.
  const auto tail = CopyDb("tail");
  ASSERT_EQ(Sql(tail, "DROP TRIGGER audit_records_no_delete; DELETE FROM audit_records WHERE sequence > 12;")
                .exit_code,
            0);
  auto tail_result = VerifyDb(tail);
  EXPECT_EQ(tail_result.exit_code, 0) << tail_result.output;
  // Removing records a checkpoint covers cannot pass.
  const auto truncated = CopyDb("truncated");
  ASSERT_EQ(Sql(truncated, "DROP TRIGGER audit_records_no_delete; DELETE FROM audit_records WHERE sequence > 8;")
                .exit_code,
            0);
  ExpectOnly(VerifyDb(truncated), "checkpoint-mismatch", {12});
}

TEST_F(AuditVerifyTest, ExportTampering) {
  const auto lines = ExportLines();
  ASSERT_EQ(lines.size(), 16u);

  auto changed = lines;
  auto& line = changed[RecordLine(changed, 3)];
  const auto at = line.find("\"actor\":\"eng-2\"");
  ASSERT_NE(at, std::string::npos) << line;
  line.replace(at, 15, "\"actor\":\"eng-9\"");
  ExpectOnly(VerifyExport(WriteExport("changed.jsonl", changed)), "changed", {3});

  auto deleted = lines;
  deleted.erase(deleted.begin() + static_cast<std::ptrdiff_t>(RecordLine(deleted, 7)));
  ExpectOnly(VerifyExport(WriteExport("deleted.jsonl", deleted)), "removed", {7});

  auto reordered = lines;
  std::swap(reordered[RecordLine(reordered, 3)], reordered[RecordLine(reordered, 4)]);
  ExpectOnly(VerifyExport(WriteExport("reordered.jsonl", reordered)), "reordered", {3});

  auto forged = lines;
  auto& checkpoint = forged[13];  // records 1-5, checkpoint 5, records 6-12, checkpoint 12
  ASSERT_NE(checkpoint.find("\"type\":\"checkpoint\",\"sequence\":12,"), std::string::npos) << checkpoint;
  const auto sig = checkpoint.find("\"signature\":\"") + 13;
  checkpoint[sig] = checkpoint[sig] == 'A' ? 'B' : 'A';
  ExpectOnly(VerifyExport(WriteExport("forged.jsonl", forged)), "forged-checkpoint", {12});

  auto tail = lines;
  tail.resize(14);  // without 13 and 14, after checkpoint 12
  auto tail_result = VerifyExport(WriteExport("tail.jsonl", tail));
  EXPECT_EQ(tail_result.exit_code, 0) << tail_result.output;
  EXPECT_TRUE(Says(tail_result, "12 records, 2 checkpoints")) << tail_result.output;

  auto garbage = lines;
  garbage.insert(garbage.begin() + 2, "{not json");
  ExpectOnly(VerifyExport(WriteExport("garbage.jsonl", garbage)), "malformed", {});
  EXPECT_TRUE(Says(VerifyExport((dir_ / "garbage.jsonl").string()), "ERROR line 3 malformed:"));
}

}  // namespace
}  // namespace lifeline::testing

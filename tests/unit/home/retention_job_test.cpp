// Retention over the real store, on SQLite and on PostgreSQL, with a fake clock: the preview counts
// what the run then deletes, each kind by its own period; performance reports become daily
// aggregates; resolved tickets go with everything that points at them; one home of two runs the
// daily job, once a day.
#include "home/retention_job.h"

#include "home_store_fixture.h"

#include <boost/json.hpp>
#include <gtest/gtest.h>

#include <map>

namespace lifeline::home {
namespace {

using namespace std::chrono_literals;
using protocol::MessageType;
using protocol::Severity;

const auto* const postgres_environment =
    ::testing::AddGlobalTestEnvironment(new lifeline::testing::PostgresEnvironment);

constexpr std::int64_t kDayMs = 86'400'000;

class RetentionJobTest : public testing::HomeStoreFixture {
 protected:
  RetentionSettings Settings() {
    RetentionSettings settings;
    settings.inventory = std::chrono::days(30);  // so the test sees inventory go (the default is years)
    return settings;
  }

  static std::map<std::string, store::RetentionItem> ByKind(const std::vector<store::RetentionItem>& items) {
    std::map<std::string, store::RetentionItem> out;
    for (const auto& item : items) {
      out[item.kind] = item;
    }
    return out;
  }

  std::int64_t CountRows(const std::string& sql) {
    auto row = store_->database().WithSession([&](store::sql::Session& s) { return s.QueryRow(sql); });
    EXPECT_TRUE(row && *row) << sql;
    return row && *row ? (*row)->Int(0) : -1;
  }

  static std::string Performance(std::int64_t start_ms, double min, double avg, double max, int samples) {
    return boost::json::serialize(boost::json::object{
        {"start_ms", start_ms},
        {"end_ms", start_ms + 3'600'000},
        {"sample_interval_s", 60},
        {"samples", samples},
        {"metrics", boost::json::object{{"cpu.busy_percent", {{"min", min}, {"avg", avg}, {"max", max}}}}}});
  }
};

TEST_P(RetentionJobTest, PreviewCountsWhatTheRunDeletesKindByKind) {
  const auto device = Device("SN1");
  Enroll(device);
  // 100 days ago, at 10:00 UTC: one of everything.
  const std::int64_t old_day = Now() / kDayMs * kDayMs;
  Ingest(Request(device, {Heartbeat(600), Alert("FAN-WARN", Severity::kWarning),
                          Message(MessageType::kInventory, R"({"n":1})"),
                          Message(MessageType::kBundleManifest, R"({"files":[]})"),
                          Message(MessageType::kPerformance, Performance(Now(), 10, 20, 30, 60)),
                          Message(MessageType::kPerformance, Performance(Now() + 3'600'000, 5, 50, 90, 60))}));
  auto opened = Ingest(Request(device, {Alert("DISK-FAIL", Severity::kError)}));
  ASSERT_FALSE(opened.results.empty());
  const std::string ticket = opened.results[0].ticket;
  ASSERT_FALSE(ticket.empty());
  auto claimed = store_->ClaimNotifications(10, Now());
  ASSERT_TRUE(claimed);
  for (const auto& n : *claimed) {
    ASSERT_TRUE(store_->MarkNotificationSent(n.id, Now()));
  }
  clock_.Advance(1h);
  Ingest(Request(device, {Alert("DISK-FAIL", Severity::kInfo, MessageType::kClear),
                          Message(MessageType::kInventory, R"({"n":2})"),
                          Message(MessageType::kPerformance, Performance(Now(), 1, 2, 3, 60))}));
  // Now: 100 days later, fresh data of the same kinds.
  clock_.Advance(100 * 24h);
  Ingest(Request(device, {Heartbeat(600), Alert("FAN-WARN", Severity::kWarning),
                          Message(MessageType::kPerformance, Performance(Now(), 1, 1, 1, 60))}));

  RetentionJob job(*store_, clock_, Settings(), 300s);
  auto preview = job.Preview();
  ASSERT_TRUE(preview) << preview.error().message();
  auto kinds = ByKind(preview->items);
  EXPECT_EQ(kinds["alerts"].rows, 1);        // the old warning (the error alert and clear are the ticket's)
  EXPECT_EQ(kinds["heartbeats"].rows, 1);    // the fresh one stays
  EXPECT_EQ(kinds["inventory"].rows, 1);     // the newest report stays, old as it is
  EXPECT_EQ(kinds["problem_data"].rows, 1);
  EXPECT_EQ(kinds["performance"].rows, 3);
  EXPECT_EQ(kinds["performance"].action, "downsample");
  EXPECT_EQ(kinds["tickets"].rows, 1);
  EXPECT_EQ(kinds["notifications"].rows, 1);
  EXPECT_EQ(kinds["batch_ids"].rows, 3);
  EXPECT_EQ(kinds["performance_daily"].rows, 0);
  EXPECT_EQ(kinds["heartbeats"].cutoff_ms, Now() - 7 * kDayMs);
  EXPECT_EQ(kinds["tickets"].cutoff_ms, Now() - 60 * kDayMs);
  EXPECT_GT(preview->next_run_ms, 0);
  const std::string json = RetentionPreviewJson(*preview);
  EXPECT_NE(json.find("\"kind\":\"tickets\""), std::string::npos) << json;
  EXPECT_NE(FormatRetentionItems(preview->items, true).find("performance"), std::string::npos);

  auto ran = job.RunNow();
  ASSERT_TRUE(ran) << ran.error().message();
  auto done = ByKind(*ran);
  for (const auto& [kind, item] : kinds) {
    EXPECT_EQ(done[kind].rows, item.rows) << kind;
  }
  // Nothing left to delete; what is fresh is all there.
  auto again = job.Preview();
  ASSERT_TRUE(again);
  for (const auto& item : again->items) {
    EXPECT_EQ(item.rows, 0) << item.kind;
  }
  EXPECT_EQ(CountRows("SELECT COUNT(*) FROM events WHERE type = 'heartbeat'"), 1);
  EXPECT_EQ(CountRows("SELECT COUNT(*) FROM events WHERE type = 'alert'"), 1);
  EXPECT_EQ(CountRows("SELECT COUNT(*) FROM events WHERE type = 'performance'"), 1);
  auto inventory = store_->LatestInventory(device);
  ASSERT_TRUE(inventory);
  ASSERT_EQ(inventory->size(), 1u);
  EXPECT_EQ((*inventory)[0].payload_json, R"({"n":2})");
  auto gone = store_->GetTicket(ticket);
  ASSERT_TRUE(gone);
  EXPECT_FALSE(gone->has_value());
  EXPECT_EQ(CountRows("SELECT COUNT(*) FROM notifications"), 0);

  // The three old reports are one row for their day, min of mins, max of maxes, average by samples.
  auto day = store_->database().WithSession([&](store::sql::Session& s) {
    return s.QueryRow("SELECT day_ms, reports, payload_json FROM performance_daily");
  });
  ASSERT_TRUE(day && *day);
  EXPECT_EQ((*day)->Int(0), old_day);
  EXPECT_EQ((*day)->Int(1), 3);
  const auto payload = boost::json::parse((*day)->Text(2));
  const auto& cpu = payload.at("metrics").at("cpu.busy_percent");
  EXPECT_DOUBLE_EQ(cpu.at("min").to_number<double>(), 1);
  EXPECT_DOUBLE_EQ(cpu.at("max").to_number<double>(), 90);
  EXPECT_NEAR(cpu.at("avg").to_number<double>(), (20 + 50 + 2) / 3.0, 1e-9);
  EXPECT_EQ(payload.at("samples").to_number<std::int64_t>(), 180);
  EXPECT_EQ(payload.at("reports").to_number<std::int64_t>(), 3);
}

TEST_P(RetentionJobTest, DailyAggregatesMergeAndExpire) {
  const auto device = Device("SN1");
  Enroll(device);
  Ingest(Request(device, {Message(MessageType::kPerformance, Performance(Now(), 10, 10, 10, 10))}));
  clock_.Advance(31 * 24h);
  RetentionJob job(*store_, clock_, Settings(), 300s);
  ASSERT_TRUE(job.RunNow());
  // A late report for the same day (queued on the device for a month) joins the day's row.
  const std::int64_t device_time = Now() - 31 * kDayMs;
  auto late = Message(MessageType::kPerformance, Performance(device_time, 30, 30, 30, 30));
  late.timestamp_ms = device_time;
  Ingest(Request(device, {late}));
  clock_.Advance(31 * 24h);
  ASSERT_TRUE(job.RunNow());
  auto day = store_->database().WithSession([&](store::sql::Session& s) {
    return s.QueryRow("SELECT reports, payload_json FROM performance_daily");
  });
  ASSERT_TRUE(day && *day);
  EXPECT_EQ((*day)->Int(0), 2);
  const auto payload = boost::json::parse((*day)->Text(1));
  EXPECT_NEAR(payload.at("metrics").at("cpu.busy_percent").at("avg").to_number<double>(), 25.0, 1e-9);
  // Three years on, the day goes too.
  clock_.Advance(3 * 366 * 24h);
  ASSERT_TRUE(job.RunNow());
  EXPECT_EQ(CountRows("SELECT COUNT(*) FROM performance_daily"), 0);
}

TEST_P(RetentionJobTest, OneHomeOfTwoRunsTheJobOnceADay) {
  // 04:00 UTC: the day's run (from 03:00) is due.
  const std::int64_t today = Now() / kDayMs * kDayMs;
  clock_.Advance(std::chrono::milliseconds(today + 4 * 3'600'000 - Now()));
  auto store2 = OpenStore();
  ASSERT_TRUE(store2);
  RetentionJob home1(*store_, clock_, Settings(), 300s);
  RetentionJob home2(*store2, clock_, Settings(), 300s);

  auto first = home1.Check();
  auto second = home2.Check();
  ASSERT_TRUE(first && second);
  EXPECT_TRUE(first->has_value());
  EXPECT_FALSE(second->has_value());
  // Later that day: done already, by either.
  clock_.Advance(1h);
  ASSERT_TRUE(home1.Check() && home2.Check());
  auto status = store_->GetJobStatus(RetentionJob::kJobName);
  ASSERT_TRUE(status);
  EXPECT_EQ(status->last_result, "nothing to delete");
  EXPECT_EQ(status->lease_until_ms, 0);
  auto preview = home2.Preview();
  ASSERT_TRUE(preview);
  EXPECT_EQ(preview->next_run_ms, today + kDayMs + 3 * 3'600'000);

  // Next day at 03:30: home 2 checks first and runs it.
  clock_.Advance(22h + 30min);
  second = home2.Check();
  first = home1.Check();
  ASSERT_TRUE(first && second);
  EXPECT_TRUE(second->has_value());
  EXPECT_FALSE(first->has_value());

  // A lease held by a home that is running (or died running) keeps others out until it ends.
  auto held = store_->ClaimJob(RetentionJob::kJobName, "other home", Now() + 1, Now() + 3'600'000, Now());
  ASSERT_TRUE(held && *held);
  auto refused = home1.RunNow();
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error(), store::Errc::kConflict);
  clock_.Advance(61min);
  EXPECT_TRUE(home1.RunNow());
}

INSTANTIATE_TEST_SUITE_P(Backends, RetentionJobTest,
                         ::testing::Values(store::sql::Backend::kSqlite, store::sql::Backend::kPostgres),
                         testing::BackendName);

}  // namespace
}  // namespace lifeline::home

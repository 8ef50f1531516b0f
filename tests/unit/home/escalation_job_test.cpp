// The escalation job over the real store with a fake clock: levels after their delay, reminders at
// the repeat interval, the on-call hand-over between two notifications, nothing for acknowledged
// tickets or during maintenance, and each step once when two homes run the job at the same moment.
#include "home/escalation_job.h"

#include "unit/home/ticket_fixture.h"

#include <atomic>
#include <latch>
#include <set>
#include <thread>

namespace lifeline::home::testing {
namespace {

using namespace std::chrono_literals;

const auto* const postgres_environment =
    ::testing::AddGlobalTestEnvironment(new lifeline::testing::PostgresEnvironment);

constexpr std::string_view kNotify = R"(
[[notify.webhook]]
name = "chat"
url = "http://127.0.0.1:9/hook"
[[notify.contact]]
name = "alice"
email = "alice@vendor.example"
[[notify.contact]]
name = "bob"
email = "bob@vendor.example"
sms_email = "4917000@sms.example"
[[notify.contact]]
name = "boss"
email = "boss@vendor.example"
[[notify.group]]
name = "oncall"
rotation = "support"
management = ["boss"]
webhooks = ["chat"]
[[notify.group]]
name = "management"
members = ["boss"]
[[notify.rotation]]
name = "support"
engineers = ["alice", "bob"]
period = "1d"
handover_time = "09:00"
handover_weekday = "any"
start = "2026-01-01"
[notify]
default_groups = ["oncall"]
[notify.escalation]
repeat = "30m"
[[notify.escalation.level]]
after = "15m"
[[notify.escalation.level]]
after = "1h"
groups = ["management"]
)";

class EscalationJobTest : public TicketHomeTest {
 protected:
  void SetUp() override {
    TicketHomeTest::SetUp();
    notify_ = CompileNotify(std::string(kNotify));
    planner_ = std::make_unique<TicketEventPlanner>(notify_.plan);
    job_ = std::make_unique<EscalationJob>(*store_, notify_.plan.escalation(), planner_->AsPlanner(), clock_);
    Enroll(Device());
  }

  std::string Open(const std::string& code) {
    auto reply = Ingest(Device(), {Alert(code)}, planner_->AsPlanner());
    return reply.results.empty() ? "" : reply.results[0].ticket;
  }

  /// The recipients of the rows queued since `from` (index into Outbox), with the subject's event.
  std::set<std::string> Recipients(const std::vector<store::Notification>& rows, std::size_t from = 0) {
    std::set<std::string> out;
    for (std::size_t i = from; i < rows.size(); ++i) {
      out.insert(rows[i].kind + ":" + rows[i].recipient);
    }
    return out;
  }

  static std::string LastEmailSubject(const std::vector<store::Notification>& rows) {
    for (auto it = rows.rbegin(); it != rows.rend(); ++it) {
      if (it->kind == "email") {
        return it->subject;
      }
    }
    return "";
  }

  std::string OnCallEmail(std::chrono::system_clock::time_point t) {
    return *notify_.plan.OnCall("oncall", t) + "@vendor.example";
  }

  notify::CompiledNotify notify_;
  std::unique_ptr<TicketEventPlanner> planner_;
  std::unique_ptr<EscalationJob> job_;
};

TEST_P(EscalationJobTest, LevelsThenRemindersUntilAcknowledged) {
  const std::string number = Open("SIM-1");
  ASSERT_EQ(number, "LL-000001");
  const auto at_open = clock_.Now();
  auto rows = Outbox(number);
  // Level 0: the engineer on call and the group's chat; management only hears from level 1 on.
  const auto level0 = Recipients(rows);
  EXPECT_TRUE(level0.contains("email:" + OnCallEmail(at_open)));
  EXPECT_TRUE(level0.contains("webhook:chat"));
  EXPECT_FALSE(level0.contains("email:boss@vendor.example"));
  EXPECT_EQ(job_->RunOnce().steps, 0);

  clock_.Advance(14min);
  EXPECT_EQ(job_->RunOnce().steps, 0);
  clock_.Advance(1min);
  auto pass = job_->RunOnce();
  EXPECT_EQ(pass.tickets, 1);
  EXPECT_EQ(pass.steps, 1);
  auto after_level1 = Outbox(number);
  std::set<std::string> level1 = Recipients(after_level1, rows.size());
  EXPECT_TRUE(level1.contains("email:boss@vendor.example"));
  EXPECT_TRUE(level1.contains("email:" + OnCallEmail(clock_.Now())));
  EXPECT_NE(LastEmailSubject(after_level1).find("escalated"), std::string::npos);
  EXPECT_EQ(job_->RunOnce().steps, 0);  // sent once

  // The repeat interval: the highest level reached is reminded.
  clock_.Advance(29min);
  EXPECT_EQ(job_->RunOnce().steps, 0);
  clock_.Advance(1min);
  EXPECT_EQ(job_->RunOnce().steps, 1);
  auto after_reminder = Outbox(number);
  EXPECT_NE(LastEmailSubject(after_reminder).find("reminder"), std::string::npos);

  // Level 2 after an hour: the management group.
  clock_.Advance(15min);
  EXPECT_EQ(job_->RunOnce().steps, 1);
  auto after_level2 = Outbox(number);
  EXPECT_EQ(Recipients(after_level2, after_reminder.size()), (std::set<std::string>{"email:boss@vendor.example"}));
  auto detail = store_->GetTicket(number);
  ASSERT_TRUE(detail && *detail);
  EXPECT_EQ((*detail)->escalation_sent_ms.size(), 3u);

  // Acknowledged: nothing more, however long it stays open.
  ASSERT_TRUE(store_->ChangeTicket(
      {.number = number, .action = store::TicketAction::kAcknowledge, .actor = "alice", .now_ms = Now()}));
  const std::size_t before = Outbox(number).size();
  for (int i = 0; i < 6; ++i) {
    clock_.Advance(30min);
    EXPECT_EQ(job_->RunOnce().steps, 0);
  }
  EXPECT_EQ(Outbox(number).size(), before);
}

TEST_P(EscalationJobTest, TheNextLevelGoesToWhoeverIsOnCallAfterTheHandOver) {
  // 08:50: the ticket opens; the hand-over is at 09:00; level 1 is due at 09:05.
  clock_.Advance(-70min);
  const auto before_handover = clock_.Now();
  const std::string number = Open("SIM-2");
  clock_.Advance(15min);
  const auto after_handover = clock_.Now();
  ASSERT_NE(OnCallEmail(before_handover), OnCallEmail(after_handover));
  auto opened = Outbox(number);
  EXPECT_TRUE(Recipients(opened).contains("email:" + OnCallEmail(before_handover)));
  EXPECT_EQ(job_->RunOnce().steps, 1);
  auto level1 = Recipients(Outbox(number), opened.size());
  EXPECT_TRUE(level1.contains("email:" + OnCallEmail(after_handover)));
  EXPECT_FALSE(level1.contains("email:" + OnCallEmail(before_handover)));
}

TEST_P(EscalationJobTest, MaintenanceAndStormsHoldEscalationBack) {
  const std::string number = Open("SIM-3");
  // A window declared after the ticket opened: no escalation while it lasts.
  ASSERT_TRUE(store_->AddMaintenanceWindow({.customer = "ACME",
                                            .site = "site-1",
                                            .starts_at_ms = Now() + 5 * 60'000,
                                            .ends_at_ms = Now() + 65 * 60'000,
                                            .reason = "planned work"},
                                           Now()));
  clock_.Advance(20min);
  EXPECT_EQ(job_->RunOnce().steps, 0);
  // A ticket opened inside the window is quiet for its whole episode.
  const std::string quiet = Open("SIM-4");
  EXPECT_TRUE(Outbox(quiet).empty());
  clock_.Advance(50min);  // the window is over: the first ticket catches up on both levels
  EXPECT_EQ(job_->RunOnce().steps, 2);
  EXPECT_TRUE(Outbox(quiet).empty());
  clock_.Advance(3h);
  job_->RunOnce();
  EXPECT_TRUE(Outbox(quiet).empty());
}

TEST_P(EscalationJobTest, TwoHomesRunningTheJobSendEachStepOnce) {
  std::vector<std::string> numbers;
  for (int i = 0; i < 20; ++i) {
    numbers.push_back(Open("SIM-" + std::to_string(100 + i)));
  }
  std::vector<std::size_t> opened;
  for (const auto& n : numbers) {
    opened.push_back(Outbox(n).size());
  }
  auto other_store = OpenStore();
  EscalationJob other(*other_store, notify_.plan.escalation(), planner_->AsPlanner(), clock_);
  clock_.Advance(16min);
  std::atomic<int> steps{0};
  std::latch start(2);
  std::vector<std::thread> threads;
  for (EscalationJob* job : {job_.get(), &other}) {
    threads.emplace_back([&, job] {
      start.arrive_and_wait();
      steps += job->RunOnce().steps;
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  EXPECT_EQ(steps, 20);
  for (std::size_t i = 0; i < numbers.size(); ++i) {
    auto rows = Outbox(numbers[i]);
    std::set<std::string> level1 = Recipients(rows, opened[i]);
    EXPECT_EQ(rows.size() - opened[i], level1.size()) << numbers[i] << ": a recipient got level 1 twice";
  }
}

INSTANTIATE_TEST_SUITE_P(Backends, EscalationJobTest,
                         ::testing::Values(store::sql::Backend::kSqlite, store::sql::Backend::kPostgres),
                         BackendName);

}  // namespace
}  // namespace lifeline::home::testing

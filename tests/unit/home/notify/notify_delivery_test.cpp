// Notifications against real receivers on loopback: scripts/webhook-sink (HTTP) for webhooks and
// the SMS gateway, scripts/mail-sink (SMTP) for email and email-to-SMS, and the Notifier end to end
// over the real SQLite store, with the receivers down for a while and back.
#include "home/notifier.h"
#include "home/notify/dispatcher.h"
#include "home/notify/event.h"
#include "home/notify/kinds.h"
#include "home/notify/sms.h"
#include "home/notify/webhook.h"
#include "sinks.h"
#include "store/sqlite/database.h"
#include "store/sqlite/home_store.h"
#include "support/fake_clock.h"
#include "support/temp_dir.h"

#include <boost/json.hpp>
#include <gtest/gtest.h>

#include <cstdio>
#include <functional>
#include <sys/wait.h>
#include <thread>

namespace lifeline::home::notify {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;
using namespace std::chrono_literals;
using testing::MailSink;
using transport::SmtpMailer;
using transport::SmtpSettings;
using testing::WebhookSink;

constexpr std::int64_t kNow = 1'800'000'000'000;  // 2027-01-15

std::string Str(const json::value& v) { return std::string(v.as_string()); }

std::string Header(const json::object& request, const std::string& name) {
  const auto& headers = request.at("headers").as_object();
  auto it = headers.find(name);
  return it == headers.end() ? "" : Str(it->value());
}

/// Runs a shell command; its exit status and stdout.
std::pair<int, std::string> Shell(const std::string& command) {
  std::string output;
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) {
    return {-1, ""};
  }
  char buffer[4096];
  std::size_t n = 0;
  while ((n = fread(buffer, 1, sizeof buffer, pipe)) > 0) {
    output.append(buffer, n);
  }
  const int status = pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
}

/// Polls `condition` every 50 ms until it holds or `timeout` passes.
bool Eventually(const std::function<bool()>& condition, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!condition()) {
    if (std::chrono::steady_clock::now() >= deadline) {
      return false;
    }
    std::this_thread::sleep_for(50ms);
  }
  return true;
}

TicketEvent Event() {
  return {.kind = EventKind::kOpened,
          .ticket_number = "LL-000007",
          .device = {"ACME", "plant-1", "SN123", "X-200"},
          .code = "SIM-3A21",
          .severity = protocol::Severity::kCritical,
          .text = "disk failing",
          .first_seen_ms = kNow,
          .last_seen_ms = kNow,
          .occurrences = 1,
          .event_ms = kNow};
}

// ---- Webhooks -----------------------------------------------------------------------------------

TEST(WebhookDelivery, GenericBodySignedAndVerifiedByTheDocumentedRecipe) {
  testing::TempDir dir;
  WebhookSink sink(dir / "hook");
  ASSERT_GT(sink.port(), 0);
  const WebhookSettings hook{.name = "ops", .url = sink.url(), .secret = "whsec-test"};
  const std::string body = GenericJson(Event());
  const auto result = SendWebhook(hook, body, 1'800'000'123, "42");
  ASSERT_EQ(result.outcome, Outcome::kSent) << result.detail;

  const auto requests = sink.WaitForRequests(1);
  ASSERT_EQ(requests.size(), 1u);
  const json::object& r = requests[0];
  EXPECT_EQ(Str(r.at("method")), "POST");
  EXPECT_EQ(Str(r.at("path")), "/hook");
  EXPECT_EQ(Str(r.at("body")), body);
  EXPECT_EQ(Header(r, "content-type"), "application/json");
  EXPECT_EQ(Header(r, "x-lifeline-timestamp"), "1800000123");
  EXPECT_EQ(Header(r, "x-lifeline-delivery"), "42");
  EXPECT_EQ(Header(r, "x-lifeline-signature"), WebhookSignature("whsec-test", 1'800'000'123, body));
  EXPECT_EQ(json::parse(Str(r.at("body"))).at("ticket").at("number"), "LL-000007");

  // The receiver's side, as docs/notifications.md tells it: Python's hmac over the raw bytes.
  const fs::path request_file = sink.WaitForFiles(1, ".json", 1s).at(0);
  const char* verify =
      "import base64, hashlib, hmac, json, sys\n"
      "r = json.load(open(sys.argv[1]))\n"
      "raw = base64.b64decode(r['body_base64'])\n"
      "ts = r['headers']['x-lifeline-timestamp']\n"
      "want = 'sha256=' + hmac.new(b'whsec-test', ts.encode() + b'.' + raw, hashlib.sha256).hexdigest()\n"
      "print('valid' if hmac.compare_digest(want, r['headers']['x-lifeline-signature']) else 'invalid')\n";
  testing::WriteFile(dir / "verify.py", verify);
  const auto [rc, verdict] =
      Shell("/usr/bin/python3 " + (dir / "verify.py").string() + " " + request_file.string());
  EXPECT_EQ(rc, 0);
  EXPECT_EQ(verdict, "valid\n");
}

TEST(WebhookDelivery, SlackBodyUnsigned) {
  testing::TempDir dir;
  WebhookSink sink(dir / "hook");
  const WebhookSettings hook{.name = "slack", .url = sink.url("/services/T0/B0/x"),
                             .format = WebhookFormat::kSlack};
  const auto result = SendWebhook(hook, SlackJson(Event()), 1'800'000'000, "7");
  ASSERT_EQ(result.outcome, Outcome::kSent) << result.detail;
  const auto requests = sink.WaitForRequests(1);
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(Header(requests[0], "x-lifeline-signature"), "");
  const json::object body = json::parse(Str(requests[0].at("body"))).as_object();
  EXPECT_NE(Str(body.at("text")).find("LL-000007"), std::string::npos);
  EXPECT_EQ(body.at("blocks").as_array().size(), 4u);
}

TEST(WebhookDelivery, RetryableAndPermanentAnswers) {
  testing::TempDir dir;
  WebhookSink sink(dir / "hook", {"--statuses", "503,429,404", "--status", "200"});
  const WebhookSettings hook{.name = "ops", .url = sink.url(), .secret = "s"};
  const std::string body = GenericJson(Event());
  auto first = SendWebhook(hook, body, 1, "1");
  EXPECT_EQ(first.outcome, Outcome::kRetry);
  EXPECT_EQ(first.detail, "HTTP 503: Service Unavailable");
  EXPECT_EQ(SendWebhook(hook, body, 2, "1").outcome, Outcome::kRetry);      // 429
  auto gone = SendWebhook(hook, body, 3, "1");
  EXPECT_EQ(gone.outcome, Outcome::kPermanent);                            // 404
  EXPECT_EQ(gone.detail, "HTTP 404: Not Found");
  EXPECT_EQ(SendWebhook(hook, body, 4, "1").outcome, Outcome::kSent);       // then 200
  const auto requests = sink.WaitForRequests(4);
  ASSERT_EQ(requests.size(), 4u);
  EXPECT_EQ(requests[0].at("status"), 503);
  EXPECT_EQ(requests[3].at("status"), 200);
  // Each attempt is signed afresh with its own timestamp; the delivery id stays.
  EXPECT_NE(Header(requests[0], "x-lifeline-signature"), Header(requests[3], "x-lifeline-signature"));
  EXPECT_EQ(Header(requests[0], "x-lifeline-delivery"), Header(requests[3], "x-lifeline-delivery"));
}

TEST(WebhookDelivery, NothingListeningTimeoutAndBadUrl) {
  testing::TempDir dir;
  const WebhookSettings down{.name = "down",
                             .url = "http://127.0.0.1:" + std::to_string(testing::UnusedPort()) + "/h"};
  auto refused = SendWebhook(down, "{}", 1, "1");
  EXPECT_EQ(refused.outcome, Outcome::kRetry);
  EXPECT_NE(refused.detail.find("curl error 7"), std::string::npos) << refused.detail;

  // The receiver answers after 6 s; the 1 s timeout must give up long before (a loaded CI machine
  // may take a while to get there, hence the wide bound).
  WebhookSink slow(dir / "slow", {"--delay", "6"});
  const WebhookSettings hook{.name = "slow", .url = slow.url(), .timeout = 1s};
  const auto start = std::chrono::steady_clock::now();
  auto timed_out = SendWebhook(hook, "{}", 1, "1");
  const auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(timed_out.outcome, Outcome::kRetry);
  EXPECT_NE(timed_out.detail.find("curl error 28"), std::string::npos) << timed_out.detail;
  EXPECT_LT(elapsed, 5s);

  const WebhookSettings bad{.name = "bad", .url = "gopher://127.0.0.1/x"};
  EXPECT_EQ(SendWebhook(bad, "{}", 1, "1").outcome, Outcome::kPermanent);
}

// ---- SMS ----------------------------------------------------------------------------------------

TEST(SmsDelivery, GatewayFormWithBasicAuthAndJsonWithBearer) {
  testing::TempDir dir;
  WebhookSink gateway(dir / "gw");
  SmsGatewaySettings form{.url = gateway.url("/send"), .from = "Lifeline",
                          .username = "acct", .password = "pw"};
  const std::string text = SmsText(Event());
  auto sent = SendSmsViaGateway(form, "+49 170 1234567", text);
  ASSERT_EQ(sent.outcome, Outcome::kSent) << sent.detail;

  SmsGatewaySettings json_gateway{.url = gateway.url("/api/sms"), .format = SmsBodyFormat::kJson,
                                  .to_field = "recipient", .text_field = "message",
                                  .bearer_token = "tok-123"};
  ASSERT_EQ(SendSmsViaGateway(json_gateway, "+491701234567", text).outcome, Outcome::kSent);

  const auto requests = gateway.WaitForRequests(2);
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(Header(requests[0], "content-type"), "application/x-www-form-urlencoded");
  EXPECT_EQ(Header(requests[0], "authorization"), "Basic YWNjdDpwdw==");  // acct:pw
  EXPECT_EQ(Str(requests[0].at("body")),
            "to=%2B49%20170%201234567&text=LL-000007%20CRITICAL%20SIM-3A21%20ACME%2Fplant-1%2FSN123%3A"
            "%20disk%20failing&from=Lifeline");
  EXPECT_EQ(Header(requests[1], "content-type"), "application/json");
  EXPECT_EQ(Header(requests[1], "authorization"), "Bearer tok-123");
  const json::value body = json::parse(Str(requests[1].at("body")));
  EXPECT_EQ(body.at("recipient"), "+491701234567");
  EXPECT_EQ(body.at("message"), "LL-000007 CRITICAL SIM-3A21 ACME/plant-1/SN123: disk failing");

  // A refused credential is not retried; an overloaded gateway is.
  WebhookSink refusing(dir / "refusing", {"--statuses", "401,502"});
  form.url = refusing.url("/send");
  EXPECT_EQ(SendSmsViaGateway(form, "+1", "x").outcome, Outcome::kPermanent);
  EXPECT_EQ(SendSmsViaGateway(form, "+1", "x").outcome, Outcome::kRetry);
}

TEST(SmsDelivery, EmailToSmsThroughARealSmtpServer) {
  testing::TempDir dir;
  MailSink mail(dir / "mail");
  ASSERT_GT(mail.port(), 0);
  SmtpSettings smtp{.url = mail.url(), .from = "lifeline@home.example",
                    .starttls = SmtpSettings::Tls::kOff, .timeout = 5s};
  SmtpMailer mailer(smtp);
  const std::string long_text = SmsText(Event()) + " " + std::string(400, 'y');
  auto sent = SendSmsViaEmail(mailer, "491701234567@sms.example", long_text);
  ASSERT_EQ(sent.outcome, Outcome::kSent) << sent.detail;
  const auto messages = mail.WaitForMessages(1);
  ASSERT_EQ(messages.size(), 1u);
  const std::string& raw = messages[0];
  EXPECT_NE(raw.find("\r\nTo: 491701234567@sms.example\r\n"), std::string::npos) << raw;
  EXPECT_NE(raw.find("\r\nSubject: \r\n"), std::string::npos) << raw;
  const std::string body = raw.substr(raw.find("\r\n\r\n") + 4);
  EXPECT_EQ(body.rfind("LL-000007 CRITICAL SIM-3A21", 0), 0u) << body;
  EXPECT_LE(body.size(), 160u + 4);  // 159 ASCII characters, "…" (3 bytes) and CRLF
}

// ---- Dispatcher ---------------------------------------------------------------------------------

store::Notification Row(std::string kind, std::string recipient, std::string body = "{}") {
  return {.id = 9, .kind = std::move(kind), .recipient = std::move(recipient),
          .ticket_number = "LL-000007", .subject = "s", .body = std::move(body)};
}

TEST(Dispatcher, EachKindToItsChannelAndUnknownsFailPermanently) {
  testing::TempDir dir;
  WebhookSink hooks(dir / "hooks");
  MailSink mail(dir / "mail");
  testing::FakeClock clock{std::chrono::system_clock::time_point(std::chrono::milliseconds(kNow))};
  Dispatcher dispatcher(
      std::make_unique<SmtpMailer>(SmtpSettings{.url = mail.url(), .from = "lifeline@home.example",
                                                .starttls = SmtpSettings::Tls::kOff, .timeout = 5s}),
      DispatcherSettings{.webhooks = {{.name = "ops", .url = hooks.url(), .secret = "k"}},
                         .sms_gateway = {.url = hooks.url("/sms")}},
      clock);
  EXPECT_EQ(dispatcher.Deliver(Row(std::string(kKindEmail), "ops@vendor.example", "hello\n")).outcome,
            Outcome::kSent);
  EXPECT_EQ(dispatcher.Deliver(Row(std::string(kKindSmsEmail), "1@sms.example", "short")).outcome,
            Outcome::kSent);
  EXPECT_EQ(dispatcher.Deliver(Row(std::string(kKindSms), "+1", "short")).outcome, Outcome::kSent);
  EXPECT_EQ(dispatcher.Deliver(Row(std::string(kKindWebhook), "ops", R"({"x":1})")).outcome,
            Outcome::kSent);
  const auto unknown_hook = dispatcher.Deliver(Row(std::string(kKindWebhook), "gone"));
  EXPECT_EQ(unknown_hook.outcome, Outcome::kPermanent);
  EXPECT_EQ(unknown_hook.detail, "no [[notify.webhook]] named 'gone' is configured");
  EXPECT_EQ(dispatcher.Deliver(Row("pigeon", "x")).outcome, Outcome::kPermanent);
  EXPECT_EQ(dispatcher.Deliver(Row(std::string(kKindEmail), "not an address")).outcome,
            Outcome::kPermanent);

  EXPECT_EQ(mail.WaitForMessages(2).size(), 2u);
  const auto requests = hooks.WaitForRequests(2);
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(Str(requests[0].at("path")), "/sms");
  EXPECT_EQ(Str(requests[1].at("path")), "/hook");
  // The webhook is stamped with the dispatcher's clock and signed with the configured secret.
  EXPECT_EQ(Header(requests[1], "x-lifeline-timestamp"), std::to_string(kNow / 1000));
  EXPECT_EQ(Header(requests[1], "x-lifeline-signature"),
            WebhookSignature("k", kNow / 1000, R"({"x":1})"));
  EXPECT_EQ(Header(requests[1], "x-lifeline-delivery"), "9");
}

// ---- Notifier end to end ------------------------------------------------------------------------

class NotifierEndToEnd : public ::testing::Test {
 protected:
  void SetUp() override {
    auto opened = store::SqliteHomeStore::Open(dir_ / "home.db");
    ASSERT_TRUE(opened) << opened.error().message();
    store_ = std::move(*opened);
    const protocol::DeviceIdentity device{"ACME", "plant-1", "SN123", "X-200"};
    ASSERT_TRUE(store_->CreateEnrollmentToken("hash", device, kNow + 60'000, kNow));
    ASSERT_TRUE(store_->Enroll({.token_hash = "hash",
                                .identity = device,
                                .now_ms = kNow,
                                .device_signing_public_b64 = "c2lnbmluZy1rZXk=",
                                .cert_fingerprint = "ab12",
                                .cert_pem = "-----BEGIN CERTIFICATE-----\n",
                                .cert_not_after_ms = kNow + 86'400'000}));
    // One alert: the store opens LL-000001 and queues one email row per contact.
    store::IngestRequest request;
    request.batch.batch_id = "b1";
    request.batch.device = device;
    request.batch.sent_at_ms = kNow;
    protocol::Message alert;
    alert.id = "m1";
    alert.type = protocol::MessageType::kAlert;
    alert.timestamp_ms = kNow - 1000;
    alert.alert = {.code = "SIM-3A21", .severity = protocol::Severity::kCritical,
                   .text = "disk failing", .source = "/var/log/app.log"};
    request.batch.messages = {alert};
    request.now_ms = kNow;
    request.contacts = {"oncall@vendor.example"};
    auto reply = store_->IngestBatch(request);
    ASSERT_TRUE(reply) << reply.error().message();
  }

  /// Queues an outbox row for LL-000001 the way the home's planner will (the store has no call for
  /// other kinds yet, so this writes the row directly).
  void QueueRow(const std::string& kind, const std::string& recipient, const std::string& body) {
    auto db = store::sqlite::Database::Open(dir_ / "home.db");
    ASSERT_TRUE(db) << db.error().message();
    auto stmt = (*db)->Prepare(
        "INSERT INTO notifications (kind, recipient, ticket_id, subject, body, status, "
        "created_at_ms, next_attempt_ms) SELECT ?, ?, id, '', ?, 'pending', ?, ? FROM tickets "
        "WHERE number = 'LL-000001'");
    ASSERT_TRUE(stmt);
    stmt->BindAll(kind, recipient, body, kNow, kNow);
    auto done = stmt->Step();
    ASSERT_TRUE(done) << done.error().message();
  }

  std::vector<store::Notification> Outbox() {
    auto detail = store_->GetTicket("LL-000001");
    EXPECT_TRUE(detail && detail->has_value());
    return detail && detail->has_value() ? (*detail)->notifications
                                         : std::vector<store::Notification>{};
  }

  testing::TempDir dir_;
  std::unique_ptr<store::SqliteHomeStore> store_;
};

TEST_F(NotifierEndToEnd, ReceiversDownThenBackEverythingArrivesOnce) {
  // Start the receivers to learn their ports, then take them down.
  MailSink mail(dir_ / "mail");
  WebhookSink hooks(dir_ / "hooks");
  ASSERT_GT(mail.port(), 0);
  ASSERT_GT(hooks.port(), 0);
  mail.Stop();
  hooks.Stop();

  const std::string webhook_body = GenericJson(Event());
  QueueRow(std::string(kKindWebhook), "ops", webhook_body);
  QueueRow(std::string(kKindWebhook), "removed-from-config", webhook_body);

  testing::FakeClock clock{std::chrono::system_clock::time_point(std::chrono::milliseconds(kNow))};
  auto dispatcher = std::make_unique<Dispatcher>(
      std::make_unique<SmtpMailer>(SmtpSettings{.url = mail.url(), .from = "lifeline@home.example",
                                                .starttls = SmtpSettings::Tls::kOff, .timeout = 5s}),
      DispatcherSettings{.webhooks = {{.name = "ops", .url = hooks.url(), .secret = "k"}}}, clock);
  Notifier notifier(*store_, std::move(dispatcher), clock,
                    NotifierOptions{.retry_min = 10s, .retry_max = 60s, .give_up_after = 1h});

  EXPECT_EQ(notifier.DeliverDue(), 3);
  auto rows = Outbox();
  ASSERT_EQ(rows.size(), 3u);
  for (const auto& row : rows) {
    EXPECT_EQ(row.attempts, 1) << row.kind << " " << row.recipient;
    if (row.recipient == "removed-from-config") {
      EXPECT_EQ(row.status, store::NotificationStatus::kFailed);  // permanent: not retried
      EXPECT_EQ(row.last_error, "no [[notify.webhook]] named 'removed-from-config' is configured");
    } else {
      EXPECT_EQ(row.status, store::NotificationStatus::kPending) << row.recipient;
      EXPECT_EQ(row.next_attempt_ms, kNow + 10'000);
      EXPECT_NE(row.last_error.find("curl error 7"), std::string::npos) << row.last_error;
    }
  }
  // Not due yet: nothing claimed. A second failure doubles the wait.
  EXPECT_EQ(notifier.DeliverDue(), 0);
  clock.Advance(10s);
  EXPECT_EQ(notifier.DeliverDue(), 2);
  for (const auto& row : Outbox()) {
    if (row.status == store::NotificationStatus::kPending) {
      EXPECT_EQ(row.attempts, 2);
      EXPECT_EQ(row.next_attempt_ms, kNow + 10'000 + 20'000);
    }
  }

  // The receivers come back on the same ports; the notifier's own thread delivers once the
  // backoff has passed.
  mail.Restart({});
  hooks.Restart({});
  notifier.Start();
  clock.Advance(20s);
  notifier.Wake();
  const auto messages = mail.WaitForMessages(1, 10s);
  const auto requests = hooks.WaitForRequests(1, 10s);
  ASSERT_TRUE(Eventually(
      [&] {
        int sent = 0;
        for (const auto& row : Outbox()) {
          sent += row.status == store::NotificationStatus::kSent;
        }
        return sent == 2;
      },
      10s));
  notifier.Stop();

  ASSERT_EQ(messages.size(), 1u);
  EXPECT_NE(messages[0].find("\r\nTo: oncall@vendor.example\r\n"), std::string::npos);
  EXPECT_NE(messages[0].find("LL-000001"), std::string::npos);
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(Str(requests[0].at("body")), webhook_body);
  const std::string ts = Header(requests[0], "x-lifeline-timestamp");
  EXPECT_EQ(ts, std::to_string((kNow + 30'000) / 1000));  // signed when sent, not when queued
  EXPECT_EQ(Header(requests[0], "x-lifeline-signature"),
            WebhookSignature("k", std::stoll(ts), webhook_body));
  // Exactly once each.
  EXPECT_EQ(mail.WaitForMessages(2, 300ms).size(), 1u);
  EXPECT_EQ(hooks.WaitForRequests(2, 300ms).size(), 1u);
}

TEST_F(NotifierEndToEnd, GivesUpAfterTheConfiguredAge) {
  testing::FakeClock clock{std::chrono::system_clock::time_point(std::chrono::milliseconds(kNow))};
  const std::string down = "smtp://127.0.0.1:" + std::to_string(testing::UnusedPort());
  auto dispatcher = std::make_unique<Dispatcher>(
      std::make_unique<SmtpMailer>(SmtpSettings{.url = down, .from = "lifeline@home.example",
                                                .starttls = SmtpSettings::Tls::kOff, .timeout = 2s}),
      DispatcherSettings{}, clock);
  Notifier notifier(*store_, std::move(dispatcher), clock,
                    NotifierOptions{.retry_min = 10s, .retry_max = 60s, .give_up_after = 10min});
  EXPECT_EQ(notifier.RetryDelay(1), 10s);
  EXPECT_EQ(notifier.RetryDelay(3), 40s);
  EXPECT_EQ(notifier.RetryDelay(50), 60s);
  // Bounded: at most 30 rounds of the fake clock.
  for (int round = 0; round < 30 && Outbox().at(0).status == store::NotificationStatus::kPending;
       ++round) {
    notifier.DeliverDue();
    clock.Advance(60s);
  }
  const auto row = Outbox().at(0);
  EXPECT_EQ(row.status, store::NotificationStatus::kFailed);
  EXPECT_GE(row.attempts, 10);
  EXPECT_LE(row.attempts, 13);
}

}  // namespace
}  // namespace lifeline::home::notify

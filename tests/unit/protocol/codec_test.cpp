#include "protocol/codec.h"

#include <gtest/gtest.h>

namespace lifeline::protocol {
namespace {

Batch SampleBatch() {
  Batch b;
  b.batch_id = std::string(32, 'a');
  b.device = {"ACME", "berlin-1", "SN-0042", "VSP G900"};
  b.sent_at_ms = 1'790'000'000'000;
  b.agent_version = "0.1.0";
  Message alert;
  alert.id = std::string(31, '0') + "1";
  alert.type = MessageType::kAlert;
  alert.sequence = 7;
  alert.timestamp_ms = 1'789'999'999'000;
  alert.alert = {"SIM-3A21F4", Severity::kCritical, "Drive 0-12 failed \"quoted\"\nsecond line", "/var/log/array.log"};
  Message heartbeat;
  heartbeat.id = std::string(31, '0') + "2";
  heartbeat.type = MessageType::kHeartbeat;
  heartbeat.sequence = 8;
  heartbeat.timestamp_ms = 1'790'000'000'000;
  heartbeat.heartbeat = {21600, "ok"};
  Message inventory;
  inventory.id = std::string(31, '0') + "3";
  inventory.type = MessageType::kInventory;
  inventory.sequence = 9;
  inventory.payload_json = R"({"os":"Debian 12","disks":[1,2]})";
  b.messages = {alert, heartbeat, inventory};
  return b;
}

TEST(Codec, BatchRoundTrip) {
  const Batch original = SampleBatch();
  std::string why;
  auto decoded = DecodeBatch(EncodeBatch(original), &why);
  ASSERT_TRUE(decoded) << why;
  EXPECT_EQ(decoded->batch_id, original.batch_id);
  EXPECT_EQ(decoded->device, original.device);
  EXPECT_EQ(decoded->sent_at_ms, original.sent_at_ms);
  ASSERT_EQ(decoded->messages.size(), 3u);
  const Message& a = decoded->messages[0];
  EXPECT_EQ(a.type, MessageType::kAlert);
  EXPECT_EQ(a.sequence, 7u);
  EXPECT_EQ(a.alert.code, "SIM-3A21F4");
  EXPECT_EQ(a.alert.severity, Severity::kCritical);
  EXPECT_EQ(a.alert.text, original.messages[0].alert.text);
  EXPECT_EQ(decoded->messages[1].heartbeat.interval_seconds, 21600);
  EXPECT_EQ(decoded->messages[2].payload_json, original.messages[2].payload_json);
}

TEST(Codec, ReplyRoundTrip) {
  BatchReply reply{.batch_id = std::string(32, 'b'), .received_at_ms = 5};
  reply.results.push_back({std::string(32, 'c'), MessageStatus::kAccepted, "ticket opened", "LL-000001", false});
  reply.results.push_back({std::string(32, 'd'), MessageStatus::kRejected, "nope", "", true});
  std::string why;
  auto decoded = DecodeReply(EncodeReply(reply), &why);
  ASSERT_TRUE(decoded) << why;
  ASSERT_EQ(decoded->results.size(), 2u);
  EXPECT_EQ(decoded->results[0].ticket, "LL-000001");
  EXPECT_EQ(decoded->results[1].status, MessageStatus::kRejected);
  EXPECT_TRUE(decoded->results[1].duplicate);
}

struct BadBatchCase {
  const char* name;
  std::string json;
  Reject expected;
  const char* why_contains;
};

class BadBatch : public ::testing::TestWithParam<BadBatchCase> {};

TEST_P(BadBatch, IsRefusedWithReason) {
  std::string why;
  auto decoded = DecodeBatch(GetParam().json, &why);
  ASSERT_FALSE(decoded);
  EXPECT_EQ(decoded.error(), make_error_code(GetParam().expected));
  EXPECT_NE(why.find(GetParam().why_contains), std::string::npos) << why;
}

std::string Replace(std::string text, const std::string& from, const std::string& to) {
  text.replace(text.find(from), from.size(), to);
  return text;
}

const std::string kGood = EncodeBatch(SampleBatch());

INSTANTIATE_TEST_SUITE_P(
    Codec, BadBatch,
    ::testing::Values(
        BadBatchCase{"NotJson", "{nope", Reject::kMalformedBody, "not valid JSON"},
        BadBatchCase{"NotObject", "[1,2]", Reject::kMalformedBody, "must be a JSON object"},
        BadBatchCase{"Version", Replace(kGood, "\"version\":1", "\"version\":9"), Reject::kUnsupportedVersion,
                     "version 9"},
        BadBatchCase{"NoDevice", Replace(kGood, "\"device\"", "\"devise\""), Reject::kMalformedBody,
                     "device is missing"},
        BadBatchCase{"SlashInSerial", Replace(kGood, "SN-0042", "SN/0042"), Reject::kMalformedBody,
                     "serial"},
        BadBatchCase{"BadMessageId", Replace(kGood, std::string(31, '0') + "1", "xyz"),
                     Reject::kMalformedBody, "messages[0].id"},
        BadBatchCase{"BadType", Replace(kGood, "\"alert\",", "\"alarm\","), Reject::kMalformedBody,
                     "messages[0].type"},
        BadBatchCase{"BadSeverity", Replace(kGood, "critical", "doom"), Reject::kMalformedBody,
                     "messages[0].alert.severity"},
        BadBatchCase{"NegativeSequence", Replace(kGood, "\"sequence\":7", "\"sequence\":-7"),
                     Reject::kMalformedBody, "sequence"},
        BadBatchCase{"StringSentAt", Replace(kGood, "\"sent_at_ms\":1790000000000", "\"sent_at_ms\":\"x\""),
                     Reject::kMalformedBody, "sent_at_ms must be an integer"},
        BadBatchCase{"DeepNesting", std::string(100, '[') + std::string(100, ']'), Reject::kMalformedBody,
                     "not valid JSON"}),
    [](const auto& info) { return info.param.name; });

TEST(Codec, TooManyMessagesIsRefused) {
  Batch b = SampleBatch();
  b.messages.assign(kMaxMessagesPerBatch + 1, b.messages[1]);
  std::string why;
  auto decoded = DecodeBatch(EncodeBatch(b), &why);
  ASSERT_FALSE(decoded);
  EXPECT_NE(why.find("more than"), std::string::npos);
}

TEST(Codec, OverlongTextIsRefused) {
  Batch b = SampleBatch();
  b.messages[0].alert.text.assign(kMaxTextBytes + 1, 'x');
  std::string why;
  EXPECT_FALSE(DecodeBatch(EncodeBatch(b), &why));
  EXPECT_NE(why.find("longer than"), std::string::npos);
}

TEST(Codec, ErrorBodyRoundTrip) {
  std::string message;
  EXPECT_EQ(DecodeError(EncodeError(Reject::kBadSignature, "sig"), &message), Reject::kBadSignature);
  EXPECT_EQ(message, "sig");
  EXPECT_EQ(DecodeError("<html>proxy error</html>", &message), Reject::kInternal);
  EXPECT_NE(message.find("proxy error"), std::string::npos);
}

TEST(Codec, EveryRejectReasonHasWireNameAndStatus) {
  for (int i = static_cast<int>(Reject::kMalformedBody); i <= static_cast<int>(Reject::kInternal); ++i) {
    const auto reason = static_cast<Reject>(i);
    EXPECT_EQ(ParseWireName(WireName(reason)), reason);
    EXPECT_GE(HttpStatus(reason), 400);
    EXPECT_FALSE(make_error_code(reason).message().empty());
  }
}

TEST(Codec, EnrollRoundTrip) {
  EnrollRequest request{.token = "llt_abc", .device = {"A", "B", "C", "M"}, .csr_pem = "-----BEGIN", .signing_public_key = "pk"};
  std::string why;
  auto decoded = DecodeEnrollRequest(EncodeEnrollRequest(request), &why);
  ASSERT_TRUE(decoded) << why;
  EXPECT_EQ(decoded->token, "llt_abc");
  EXPECT_EQ(decoded->device, request.device);
  auto response = DecodeEnrollResponse(EncodeEnrollResponse({"CERT", request.device}), &why);
  ASSERT_TRUE(response) << why;
  EXPECT_EQ(response->certificate_pem, "CERT");
  EXPECT_FALSE(decoded->gateway);
  EXPECT_EQ(EncodeEnrollRequest(request).find("kind"), std::string::npos);  // devices send what they always did
}

TEST(Codec, GatewayEnrollCarriesKindAndServerNames) {
  EnrollRequest request{.token = "llt_g", .device = {"A", "B", "gw-1", "M"}, .csr_pem = "-----BEGIN",
                        .signing_public_key = "pk", .gateway = true, .server_names = {"localhost", "10.0.0.1"}};
  std::string why;
  auto decoded = DecodeEnrollRequest(EncodeEnrollRequest(request), &why);
  ASSERT_TRUE(decoded) << why;
  EXPECT_TRUE(decoded->gateway);
  EXPECT_EQ(decoded->server_names, request.server_names);
  const std::string base =
      R"({"version":1,"token":"t","device":{"customer":"A","site":"B","serial":"C","model":""},"csr_pem":"c","signing_public_key":"k")";
  for (const std::string bad : {R"(,"kind":"router"})", R"(,"server_names":["x"]})",
                                R"(,"kind":"gateway","server_names":[1]})", R"(,"kind":"gateway","server_names":"x"})"}) {
    why.clear();
    EXPECT_FALSE(DecodeEnrollRequest(base + bad, &why)) << bad;
    EXPECT_FALSE(why.empty()) << bad;
  }
  EXPECT_TRUE(DecodeEnrollRequest(base + R"(,"kind":"device"})", &why));
}

}  // namespace
}  // namespace lifeline::protocol

namespace lifeline::protocol {
namespace {

TEST(Codec, InstructionsRoundTripInReplies) {
  BatchReply reply{.batch_id = std::string(32, 'b'), .received_at_ms = 5};
  reply.instructions.push_back({std::string(32, '1'), std::string(kInstructionApplyConfig), "[heartbeat]\ninterval = \"1h\"\n"});
  reply.instructions.push_back({std::string(32, '2'), "reboot_now", ""});  // unknown kinds still decode: agents refuse them
  std::string why;
  auto decoded = DecodeReply(EncodeReply(reply), &why);
  ASSERT_TRUE(decoded) << why;
  ASSERT_EQ(decoded->instructions.size(), 2u);
  EXPECT_EQ(decoded->instructions[0].kind, kInstructionApplyConfig);
  EXPECT_EQ(decoded->instructions[0].config_toml, reply.instructions[0].config_toml);
  EXPECT_EQ(decoded->instructions[1].kind, "reboot_now");
}

TEST(Codec, InstructionResultsRoundTripInBatches) {
  Batch batch = SampleBatch();
  batch.instruction_results.push_back({std::string(32, '1'), "done", ""});
  batch.instruction_results.push_back({std::string(32, '2'), "refused", "not on the allow-list"});
  std::string why;
  auto decoded = DecodeBatch(EncodeBatch(batch), &why);
  ASSERT_TRUE(decoded) << why;
  ASSERT_EQ(decoded->instruction_results.size(), 2u);
  EXPECT_EQ(decoded->instruction_results[1].status, "refused");
  EXPECT_EQ(decoded->instruction_results[1].detail, "not on the allow-list");
}

TEST(Codec, InstructionResultWithUnknownStatusIsRefused) {
  Batch batch = SampleBatch();
  batch.instruction_results.push_back({std::string(32, '1'), "maybe", ""});
  std::string why;
  EXPECT_FALSE(DecodeBatch(EncodeBatch(batch), &why));
  EXPECT_NE(why.find("instruction_results[0].status"), std::string::npos) << why;
}

TEST(Codec, OversizedConfigInAnInstructionIsRefused) {
  BatchReply reply{.batch_id = std::string(32, 'b')};
  reply.instructions.push_back({std::string(32, '1'), std::string(kInstructionApplyConfig),
                                std::string(kMaxConfigBytes + 1, '#')});
  std::string why;
  EXPECT_FALSE(DecodeReply(EncodeReply(reply), &why));
}

}  // namespace
}  // namespace lifeline::protocol

#include "protocol/codec.h"

#include <boost/json.hpp>

#include <fmt/format.h>

namespace lifeline::protocol {
namespace json = boost::json;
namespace {

// Field readers: each returns false and fills `why` when the field is missing, of the wrong type or too big.
class Reader {
 public:
  Reader(const json::object& object, std::string context, std::string* why)
      : object_(object), context_(std::move(context)), why_(why) {}

  bool String(std::string_view key, std::size_t max_bytes, std::string* out, bool required = true) {
    const json::value* v = object_.if_contains(key);
    if (v == nullptr) {
      return !required || Fail(key, "is missing");
    }
    if (!v->is_string()) {
      return Fail(key, "must be a string");
    }
    if (v->get_string().size() > max_bytes) {
      return Fail(key, fmt::format("is longer than {} bytes", max_bytes));
    }
    *out = std::string(v->get_string());
    return true;
  }

  bool Int(std::string_view key, std::int64_t* out, bool required = true) {
    const json::value* v = object_.if_contains(key);
    if (v == nullptr) {
      return !required || Fail(key, "is missing");
    }
    if (v->is_int64()) {
      *out = v->get_int64();
      return true;
    }
    if (v->is_uint64() && v->get_uint64() <= static_cast<std::uint64_t>(INT64_MAX)) {
      *out = static_cast<std::int64_t>(v->get_uint64());
      return true;
    }
    return Fail(key, "must be an integer");
  }

  bool Bool(std::string_view key, bool* out) {
    const json::value* v = object_.if_contains(key);
    if (v == nullptr) {
      return true;
    }
    if (!v->is_bool()) {
      return Fail(key, "must be true or false");
    }
    *out = v->get_bool();
    return true;
  }

  const json::object* Object(std::string_view key, bool required = true) {
    const json::value* v = object_.if_contains(key);
    if (v == nullptr) {
      if (required) {
        Fail(key, "is missing");
      }
      return nullptr;
    }
    if (!v->is_object()) {
      Fail(key, "must be an object");
      return nullptr;
    }
    return &v->get_object();
  }

  const json::array* Array(std::string_view key) {
    const json::value* v = object_.if_contains(key);
    if (v == nullptr || !v->is_array()) {
      Fail(key, v == nullptr ? "is missing" : "must be an array");
      return nullptr;
    }
    return &v->get_array();
  }

  bool Fail(std::string_view key, std::string_view problem) {
    if (why_ != nullptr && why_->empty()) {
      *why_ = fmt::format("{}{}{} {}", context_, context_.empty() ? "" : ".", key, problem);
    }
    return false;
  }

 private:
  const json::object& object_;
  std::string context_;
  std::string* why_;
};

// Parses into `parsed`, which the caller owns; returns its object or nullptr with `why` filled.
const json::object* ParseObject(std::string_view text, std::string* why, json::value& parsed) {
  boost::system::error_code ec;
  json::parse_options options;
  options.max_depth = 16;
  parsed = json::parse(text, ec, {}, options);
  if (ec) {
    if (why != nullptr) {
      *why = "not valid JSON: " + ec.message();
    }
    return nullptr;
  }
  if (!parsed.is_object()) {
    if (why != nullptr) {
      *why = "the document must be a JSON object";
    }
    return nullptr;
  }
  return &parsed.get_object();
}

json::object IdentityToJson(const DeviceIdentity& d) {
  return {{"customer", d.customer}, {"site", d.site}, {"serial", d.serial}, {"model", d.model}};
}

bool ReadIdentity(Reader& parent, std::string_view key, DeviceIdentity* out, std::string* why) {
  const json::object* object = parent.Object(key);
  if (object == nullptr) {
    return false;
  }
  Reader r(*object, std::string(key), why);
  if (!(r.String("customer", 128, &out->customer) && r.String("site", 128, &out->site) &&
        r.String("serial", 128, &out->serial) && r.String("model", 128, &out->model, false))) {
    return false;
  }
  std::string problem;
  if (!IsValidIdentity(*out, &problem)) {
    return r.Fail("", problem);
  }
  return true;
}

bool IsHexId(std::string_view id) {
  if (id.size() != 32) {
    return false;
  }
  for (char c : id) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
      return false;
    }
  }
  return true;
}

bool ReadMessage(const json::value& value, std::size_t index, Message* out, std::string* why) {
  const std::string context = fmt::format("messages[{}]", index);
  if (!value.is_object()) {
    if (why != nullptr) {
      *why = context + " must be an object";
    }
    return false;
  }
  Reader r(value.get_object(), context, why);
  std::string type;
  std::int64_t sequence = 0;
  if (!(r.String("id", 32, &out->id) && r.String("type", 32, &type) && r.Int("sequence", &sequence) &&
        r.Int("timestamp_ms", &out->timestamp_ms))) {
    return false;
  }
  if (!IsHexId(out->id)) {
    return r.Fail("id", "must be 32 lowercase hex characters");
  }
  if (sequence < 0) {
    return r.Fail("sequence", "must not be negative");
  }
  out->sequence = static_cast<std::uint64_t>(sequence);
  const auto parsed_type = ParseMessageType(type);
  if (!parsed_type) {
    return r.Fail("type", "is not a known message type");
  }
  out->type = *parsed_type;
  switch (out->type) {
    case MessageType::kAlert:
    case MessageType::kClear: {
      const json::object* alert = r.Object("alert");
      if (alert == nullptr) {
        return false;
      }
      Reader a(*alert, context + ".alert", why);
      std::string severity;
      if (!(a.String("code", 128, &out->alert.code) && a.String("severity", 16, &severity) &&
            a.String("text", kMaxTextBytes, &out->alert.text, false) &&
            a.String("source", 1024, &out->alert.source, false))) {
        return false;
      }
      if (out->alert.code.empty()) {
        return a.Fail("code", "must not be empty");
      }
      const auto parsed_severity = ParseSeverity(severity);
      if (!parsed_severity) {
        return a.Fail("severity", "must be info, warning, error or critical");
      }
      out->alert.severity = *parsed_severity;
      return true;
    }
    case MessageType::kHeartbeat: {
      const json::object* heartbeat = r.Object("heartbeat");
      if (heartbeat == nullptr) {
        return false;
      }
      Reader h(*heartbeat, context + ".heartbeat", why);
      if (!(h.Int("interval_seconds", &out->heartbeat.interval_seconds) &&
            h.String("status", kMaxTextBytes, &out->heartbeat.status, false))) {
        return false;
      }
      if (out->heartbeat.interval_seconds <= 0) {
        return h.Fail("interval_seconds", "must be positive");
      }
      return true;
    }
    case MessageType::kInventory:
    case MessageType::kPerformance:
    case MessageType::kBundleManifest:
    case MessageType::kConfiguration: {
      const json::object* payload = r.Object("payload");
      if (payload == nullptr) {
        return false;
      }
      out->payload_json = json::serialize(*payload);
      if (out->payload_json.size() > kMaxPayloadBytes) {
        return r.Fail("payload", "is too large");
      }
      return true;
    }
  }
  return false;
}

json::object MessageToJson(const Message& m) {
  json::object o{{"id", m.id},
                 {"type", ToString(m.type)},
                 {"sequence", m.sequence},
                 {"timestamp_ms", m.timestamp_ms}};
  switch (m.type) {
    case MessageType::kAlert:
    case MessageType::kClear:
      o["alert"] = json::object{{"code", m.alert.code},
                                {"severity", ToString(m.alert.severity)},
                                {"text", m.alert.text},
                                {"source", m.alert.source}};
      break;
    case MessageType::kHeartbeat:
      o["heartbeat"] = json::object{{"interval_seconds", m.heartbeat.interval_seconds},
                                    {"status", m.heartbeat.status}};
      break;
    default: {
      boost::system::error_code ec;
      json::value payload = json::parse(m.payload_json.empty() ? "{}" : m.payload_json, ec);
      o["payload"] = (ec || !payload.is_object()) ? json::value(json::object{}) : payload;
      break;
    }
  }
  return o;
}

bool ReadVersion(Reader& r, std::string* why) {
  std::int64_t version = 0;
  if (!r.Int("version", &version)) {
    return false;
  }
  if (version != kProtocolVersion) {
    if (why != nullptr) {
      *why = fmt::format("protocol version {} is not supported (this home speaks {})", version,
                         kProtocolVersion);
    }
    return false;
  }
  return true;
}

}  // namespace

std::string EncodeBatch(const Batch& batch) {
  json::array messages;
  for (const auto& m : batch.messages) {
    messages.push_back(MessageToJson(m));
  }
  json::object root{{"version", batch.version},
                    {"batch_id", batch.batch_id},
                    {"device", IdentityToJson(batch.device)},
                    {"sent_at_ms", batch.sent_at_ms},
                    {"agent_version", batch.agent_version},
                    {"messages", std::move(messages)}};
  if (!batch.instruction_results.empty()) {
    json::array results;
    for (const auto& r : batch.instruction_results) {
      results.push_back(json::object{{"id", r.id}, {"status", r.status}, {"detail", r.detail}});
    }
    root["instruction_results"] = std::move(results);
  }
  return json::serialize(root);
}

Result<Batch> DecodeBatch(std::string_view text, std::string* why) {
  json::value document;
  const json::object* root = ParseObject(text, why, document);
  if (root == nullptr) {
    return Fail(Reject::kMalformedBody);
  }
  Reader r(*root, "", why);
  std::int64_t version = 0;
  if (!r.Int("version", &version)) {
    return Fail(Reject::kMalformedBody);
  }
  if (version != kProtocolVersion) {
    if (why != nullptr) {
      *why = fmt::format("protocol version {} is not supported (this home speaks {})", version,
                         kProtocolVersion);
    }
    return Fail(Reject::kUnsupportedVersion);
  }
  Batch batch;
  if (!(r.String("batch_id", 32, &batch.batch_id) && ReadIdentity(r, "device", &batch.device, why) &&
        r.Int("sent_at_ms", &batch.sent_at_ms) && r.String("agent_version", 64, &batch.agent_version, false))) {
    return Fail(Reject::kMalformedBody);
  }
  if (!IsHexId(batch.batch_id)) {
    r.Fail("batch_id", "must be 32 lowercase hex characters");
    return Fail(Reject::kMalformedBody);
  }
  const json::array* messages = r.Array("messages");
  if (messages == nullptr) {
    return Fail(Reject::kMalformedBody);
  }
  if (messages->size() > kMaxMessagesPerBatch) {
    r.Fail("messages", fmt::format("has more than {} entries", kMaxMessagesPerBatch));
    return Fail(Reject::kMalformedBody);
  }
  batch.messages.reserve(messages->size());
  for (std::size_t i = 0; i < messages->size(); ++i) {
    Message m;
    if (!ReadMessage((*messages)[i], i, &m, why)) {
      return Fail(Reject::kMalformedBody);
    }
    batch.messages.push_back(std::move(m));
  }
  if (root->contains("instruction_results")) {
    const json::array* results = r.Array("instruction_results");
    if (results == nullptr || results->size() > kMaxInstructions) {
      r.Fail("instruction_results", "must be an array of at most 100 entries");
      return Fail(Reject::kMalformedBody);
    }
    for (std::size_t i = 0; i < results->size(); ++i) {
      if (!(*results)[i].is_object()) {
        r.Fail(fmt::format("instruction_results[{}]", i), "must be an object");
        return Fail(Reject::kMalformedBody);
      }
      Reader e((*results)[i].get_object(), fmt::format("instruction_results[{}]", i), why);
      InstructionResult result;
      if (!(e.String("id", 32, &result.id) && e.String("status", 16, &result.status) &&
            e.String("detail", kMaxTextBytes, &result.detail, false))) {
        return Fail(Reject::kMalformedBody);
      }
      if (result.status != "done" && result.status != "refused" && result.status != "failed") {
        e.Fail("status", "must be done, refused or failed");
        return Fail(Reject::kMalformedBody);
      }
      batch.instruction_results.push_back(std::move(result));
    }
  }
  return batch;
}

std::string EncodeReply(const BatchReply& reply) {
  json::array results;
  for (const auto& r : reply.results) {
    json::object o{{"message_id", r.message_id}, {"status", ToString(r.status)}};
    if (!r.reason.empty()) {
      o["reason"] = r.reason;
    }
    if (!r.ticket.empty()) {
      o["ticket"] = r.ticket;
    }
    if (r.duplicate) {
      o["duplicate"] = true;
    }
    results.push_back(std::move(o));
  }
  json::object root{{"version", reply.version},
                    {"batch_id", reply.batch_id},
                    {"received_at_ms", reply.received_at_ms},
                    {"results", std::move(results)}};
  if (!reply.instructions.empty()) {
    json::array instructions;
    for (const auto& i : reply.instructions) {
      json::object o{{"id", i.id}, {"kind", i.kind}};
      if (!i.config_toml.empty()) {
        o["config_toml"] = i.config_toml;
      }
      instructions.push_back(std::move(o));
    }
    root["instructions"] = std::move(instructions);
  }
  return json::serialize(root);
}

Result<BatchReply> DecodeReply(std::string_view text, std::string* why) {
  json::value document;
  const json::object* root = ParseObject(text, why, document);
  if (root == nullptr) {
    return Fail(Reject::kMalformedBody);
  }
  Reader r(*root, "", why);
  BatchReply reply;
  if (!(ReadVersion(r, why) && r.String("batch_id", 32, &reply.batch_id) &&
        r.Int("received_at_ms", &reply.received_at_ms))) {
    return Fail(Reject::kMalformedBody);
  }
  const json::array* results = r.Array("results");
  if (results == nullptr) {
    return Fail(Reject::kMalformedBody);
  }
  for (std::size_t i = 0; i < results->size(); ++i) {
    const json::value& v = (*results)[i];
    if (!v.is_object()) {
      r.Fail(fmt::format("results[{}]", i), "must be an object");
      return Fail(Reject::kMalformedBody);
    }
    Reader e(v.get_object(), fmt::format("results[{}]", i), why);
    MessageResult result;
    std::string status;
    if (!(e.String("message_id", 32, &result.message_id) && e.String("status", 16, &status) &&
          e.String("reason", kMaxTextBytes, &result.reason, false) &&
          e.String("ticket", 64, &result.ticket, false) && e.Bool("duplicate", &result.duplicate))) {
      return Fail(Reject::kMalformedBody);
    }
    if (status == "accepted") {
      result.status = MessageStatus::kAccepted;
    } else if (status == "rejected") {
      result.status = MessageStatus::kRejected;
    } else {
      e.Fail("status", "must be accepted or rejected");
      return Fail(Reject::kMalformedBody);
    }
    reply.results.push_back(std::move(result));
  }
  if (root->contains("instructions")) {
    const json::array* instructions = r.Array("instructions");
    if (instructions == nullptr || instructions->size() > kMaxInstructions) {
      r.Fail("instructions", "must be an array of at most 100 entries");
      return Fail(Reject::kMalformedBody);
    }
    for (std::size_t i = 0; i < instructions->size(); ++i) {
      if (!(*instructions)[i].is_object()) {
        r.Fail(fmt::format("instructions[{}]", i), "must be an object");
        return Fail(Reject::kMalformedBody);
      }
      Reader e((*instructions)[i].get_object(), fmt::format("instructions[{}]", i), why);
      Instruction instruction;
      if (!(e.String("id", 32, &instruction.id) && e.String("kind", 64, &instruction.kind) &&
            e.String("config_toml", kMaxConfigBytes, &instruction.config_toml, false))) {
        return Fail(Reject::kMalformedBody);
      }
      reply.instructions.push_back(std::move(instruction));
    }
  }
  return reply;
}

std::string EncodeError(Reject reason, std::string_view message) {
  return json::serialize(json::object{{"error", WireName(reason)}, {"message", message}});
}

Reject DecodeError(std::string_view text, std::string* message) {
  std::string why;
  json::value document;
  const json::object* root = ParseObject(text, &why, document);
  std::string name;
  if (root != nullptr) {
    Reader r(*root, "", nullptr);
    if (r.String("error", 64, &name) && r.String("message", kMaxTextBytes, message, false)) {
      if (auto reason = ParseWireName(name)) {
        return *reason;
      }
    }
  }
  if (message != nullptr) {
    *message = std::string(text.substr(0, 512));
  }
  return Reject::kInternal;
}

std::string EncodeEnrollRequest(const EnrollRequest& request) {
  json::object document{{"version", request.version},
                        {"token", request.token},
                        {"device", IdentityToJson(request.device)},
                        {"csr_pem", request.csr_pem},
                        {"signing_public_key", request.signing_public_key}};
  // Devices send exactly what they always sent; only a gateway adds its kind and names.
  if (request.gateway) {
    document["kind"] = "gateway";
    json::array names;
    for (const auto& name : request.server_names) {
      names.emplace_back(name);
    }
    document["server_names"] = std::move(names);
  }
  return json::serialize(document);
}

Result<EnrollRequest> DecodeEnrollRequest(std::string_view text, std::string* why) {
  json::value document;
  const json::object* root = ParseObject(text, why, document);
  if (root == nullptr) {
    return Fail(Reject::kMalformedBody);
  }
  Reader r(*root, "", why);
  EnrollRequest request;
  if (!(ReadVersion(r, why) && r.String("token", 256, &request.token) &&
        ReadIdentity(r, "device", &request.device, why) && r.String("csr_pem", 16384, &request.csr_pem) &&
        r.String("signing_public_key", 64, &request.signing_public_key))) {
    return Fail(Reject::kMalformedBody);
  }
  std::string kind = "device";
  if (!r.String("kind", 16, &kind, /*required=*/false)) {
    return Fail(Reject::kMalformedBody);
  }
  if (kind != "device" && kind != "gateway") {
    r.Fail("kind", "must be \"device\" or \"gateway\"");
    return Fail(Reject::kMalformedBody);
  }
  request.gateway = kind == "gateway";
  if (root->contains("server_names")) {
    const json::array* names = r.Array("server_names");
    if (names == nullptr || !request.gateway || names->size() > kMaxEnrollServerNames) {
      if (names != nullptr) {
        r.Fail("server_names", request.gateway ? "has too many names" : "is only for gateways");
      }
      return Fail(Reject::kMalformedBody);
    }
    for (const auto& name : *names) {
      if (!name.is_string() || name.get_string().size() > 253) {
        r.Fail("server_names", "must hold strings of at most 253 bytes");
        return Fail(Reject::kMalformedBody);
      }
      request.server_names.emplace_back(name.get_string());
    }
  }
  return request;
}

std::string EncodeEnrollResponse(const EnrollResponse& response) {
  return json::serialize(json::object{{"version", kProtocolVersion},
                                      {"certificate_pem", response.certificate_pem},
                                      {"device", IdentityToJson(response.device)}});
}

Result<EnrollResponse> DecodeEnrollResponse(std::string_view text, std::string* why) {
  json::value document;
  const json::object* root = ParseObject(text, why, document);
  if (root == nullptr) {
    return Fail(Reject::kMalformedBody);
  }
  Reader r(*root, "", why);
  EnrollResponse response;
  if (!(ReadVersion(r, why) && r.String("certificate_pem", 16384, &response.certificate_pem) &&
        ReadIdentity(r, "device", &response.device, why))) {
    return Fail(Reject::kMalformedBody);
  }
  return response;
}

std::string EncodeRelayHeld(const RelayHeld& held) {
  return json::serialize(json::object{{"version", kProtocolVersion},
                                      {"status", "held"},
                                      {"gateway", held.gateway},
                                      {"relay_id", held.relay_id},
                                      {"message", held.message}});
}

Result<RelayHeld> DecodeRelayHeld(std::string_view text, std::string* why) {
  json::value document;
  const json::object* root = ParseObject(text, why, document);
  if (root == nullptr) {
    return Fail(Reject::kMalformedBody);
  }
  Reader r(*root, "", why);
  RelayHeld held;
  std::string status;
  if (!(ReadVersion(r, why) && r.String("status", 16, &status) && r.String("gateway", 512, &held.gateway) &&
        r.Int("relay_id", &held.relay_id) && r.String("message", 1024, &held.message, false))) {
    return Fail(Reject::kMalformedBody);
  }
  if (status != "held") {
    r.Fail("status", "must be \"held\"");
    return Fail(Reject::kMalformedBody);
  }
  return held;
}

std::string EncodeIdentity(const DeviceIdentity& identity) {
  return json::serialize(IdentityToJson(identity));
}

}  // namespace lifeline::protocol

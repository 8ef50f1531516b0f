#pragma once
// JSON encoding of the protocol's documents (docs/protocol.md). Decoders take untrusted bytes: they never
// throw, they check every field's presence, type and size, and say what was wrong in `why`.
#include "protocol/errors.h"
#include "protocol/message.h"

#include <string>
#include <string_view>
#include <vector>

namespace lifeline::protocol {

/// Limits a decoder enforces beyond the body size the server caps.
inline constexpr std::size_t kMaxMessagesPerBatch = 1000;
inline constexpr std::size_t kMaxTextBytes = 8192;
inline constexpr std::size_t kMaxPayloadBytes = 256 * 1024;
inline constexpr std::size_t kMaxInstructions = 100;
inline constexpr std::size_t kMaxConfigBytes = 64 * 1024;

std::string EncodeBatch(const Batch& batch);
[[nodiscard]] Result<Batch> DecodeBatch(std::string_view json, std::string* why);

std::string EncodeReply(const BatchReply& reply);
[[nodiscard]] Result<BatchReply> DecodeReply(std::string_view json, std::string* why);

/// The body of every refusal: {"error": "<wire name>", "message": "<sentence>"}.
std::string EncodeError(Reject reason, std::string_view message);
/// Reads a refusal body; unknown or unreadable bodies come back as kInternal with the raw text in `message`.
Reject DecodeError(std::string_view json, std::string* message);

struct EnrollRequest {
  int version = kProtocolVersion;
  std::string token;
  DeviceIdentity device;
  std::string csr_pem;
  std::string signing_public_key;  // Ed25519, base64
  /// A gateway enrolling ("kind": "gateway", with a gateway token): `device` names the gateway
  /// (serial = its name) and `server_names` the DNS names and IP addresses agents reach it by.
  bool gateway = false;
  std::vector<std::string> server_names;
};
/// At most this many server_names, each at most 253 bytes.
inline constexpr std::size_t kMaxEnrollServerNames = 16;
std::string EncodeEnrollRequest(const EnrollRequest& request);
[[nodiscard]] Result<EnrollRequest> DecodeEnrollRequest(std::string_view json, std::string* why);

struct EnrollResponse {
  std::string certificate_pem;
  DeviceIdentity device;
};
std::string EncodeEnrollResponse(const EnrollResponse& response);
[[nodiscard]] Result<EnrollResponse> DecodeEnrollResponse(std::string_view json, std::string* why);

// ---- Relay through a gateway (docs/protocol.md, "Relay through a gateway")

/// Gateway -> home: the device's client certificate (base64 of its PEM) the gateway verified; the home
/// accepts it only from a gateway certificate of the device's customer and site.
inline constexpr std::string_view kRelayedCertificateHeader = "Lifeline-Relayed-Certificate";
/// Gateway -> home: when the gateway received the batch (Unix ms): the clock-skew check of a batch the
/// gateway held is against this time.
inline constexpr std::string_view kRelayReceivedAtHeader = "Lifeline-Relay-Received-At";

/// The gateway's 202 answer: it holds the batch durably and forwards it when the home answers.
struct RelayHeld {
  std::string gateway;  // customer/site/name of the gateway
  std::int64_t relay_id = 0;
  std::string message;
};
std::string EncodeRelayHeld(const RelayHeld& held);
[[nodiscard]] Result<RelayHeld> DecodeRelayHeld(std::string_view json, std::string* why);

/// Device identity as a JSON object, for other documents (admin API) to embed.
std::string EncodeIdentity(const DeviceIdentity& identity);

}  // namespace lifeline::protocol

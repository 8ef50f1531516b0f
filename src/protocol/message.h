#pragma once
// The protocol's data types, shared by every role. Pure values: no I/O, no crypto (see docs/protocol.md).
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace lifeline::protocol {

/// Wire protocol version carried in every batch and reply. Bump on an incompatible change.
inline constexpr int kProtocolVersion = 1;

/// Who a device is. (customer, site, serial) names it uniquely; model is descriptive.
struct DeviceIdentity {
  std::string customer;
  std::string site;
  std::string serial;
  std::string model;

  /// "customer/site/serial": the key the home files a device under and that certificates carry.
  std::string Key() const { return customer + "/" + site + "/" + serial; }
  bool SameDevice(const DeviceIdentity& other) const {
    return customer == other.customer && site == other.site && serial == other.serial;
  }
  friend bool operator==(const DeviceIdentity&, const DeviceIdentity&) = default;
};

/// True when every part is 1..128 printable characters without '/', so Key() is unambiguous.
bool IsValidIdentity(const DeviceIdentity& identity, std::string* why = nullptr);

enum class MessageType { kAlert, kClear, kHeartbeat, kInventory, kPerformance, kBundleManifest, kConfiguration };
std::string_view ToString(MessageType type);
std::optional<MessageType> ParseMessageType(std::string_view text);

enum class Severity { kInfo, kWarning, kError, kCritical };
std::string_view ToString(Severity severity);
std::optional<Severity> ParseSeverity(std::string_view text);

/// Alert and clear messages: what happened, on which component.
struct AlertBody {
  std::string code;        // vendor alert code, e.g. "SIM-3A21F4"
  Severity severity = Severity::kError;
  std::string text;        // human-readable description
  std::string source;      // where it was found (log file path, check name)
};

struct HeartbeatBody {
  std::int64_t interval_seconds = 0;  // when the home should expect the next one
  std::string status;                 // short summary, e.g. "ok; queue 0"
};

struct Message {
  std::string id;               // globally unique: 32 lowercase hex characters (agents: 48-bit ms time + 80 random bits)
  MessageType type = MessageType::kHeartbeat;
  std::uint64_t sequence = 0;   // per device, strictly increasing in capture order
  std::int64_t timestamp_ms = 0;  // capture time on the device, Unix milliseconds
  AlertBody alert;              // kAlert, kClear
  HeartbeatBody heartbeat;      // kHeartbeat
  std::string payload_json;     // other kinds: a JSON object, kept as text (room for later issues)
};

/// What the home asks a device to do. It travels in a reply, so the home's reply signature covers it.
/// The agent acts only on the kinds of its allow-list and refuses (and logs) anything else.
struct Instruction {
  std::string id;           // 32 lowercase hex characters
  std::string kind;         // see the kInstruction* names; other values are refused by agents
  std::string config_toml;  // kind apply_config: the complete new agent.toml
};
inline constexpr std::string_view kInstructionApplyConfig = "apply_config";
inline constexpr std::string_view kInstructionSendInventory = "send_inventory";
inline constexpr std::string_view kInstructionSendTestAlert = "send_test_alert";

/// How a device dealt with an instruction; reported in its next batch.
struct InstructionResult {
  std::string id;
  std::string status;  // "done", "refused" (not allowed or invalid) or "failed" (allowed, but did not work)
  std::string detail;
};

/// What a device sends: its messages in capture order, stamped with the send time.
struct Batch {
  int version = kProtocolVersion;
  std::string batch_id;         // unique per send attempt; a batch id seen before is a replay
  DeviceIdentity device;
  std::int64_t sent_at_ms = 0;  // device clock at send time; checked against the home's clock
  std::string agent_version;
  std::vector<Message> messages;
  std::vector<InstructionResult> instruction_results;  // answers to instructions received before
};

enum class MessageStatus { kAccepted, kRejected };
std::string_view ToString(MessageStatus status);

struct MessageResult {
  std::string message_id;
  MessageStatus status = MessageStatus::kAccepted;
  std::string reason;        // why rejected, or a note ("occurrence added", "below ticket severity")
  std::string ticket;        // ticket number for an alert that opened or joined a ticket
  bool duplicate = false;    // this message id was seen before; the original answer is repeated
};

/// The home's answer to a batch it took (HTTP 200).
struct BatchReply {
  int version = kProtocolVersion;
  std::string batch_id;
  std::int64_t received_at_ms = 0;
  std::vector<MessageResult> results;
  std::vector<Instruction> instructions;  // pending instructions for this device, oldest first
};

}  // namespace lifeline::protocol

#pragma once
// Sends the queue home: takes the oldest messages, builds a batch with a fresh batch id, signs it with the
// device key, seals it to the home's key and POSTs it. Messages leave the queue only when the home's
// signed reply answers them, so a crash, a timeout or a lost reply means "send again" (the home answers
// repeated message ids with the same answer and no second effect).
#include "agent/backoff.h"
#include "agent/connection_paths.h"
#include "agent/instructions.h"
#include "agent/queue.h"
#include "common/clock.h"
#include "crypto/keys.h"
#include "protocol/errors.h"
#include "transport/http_client.h"

#include <chrono>
#include <memory>
#include <random>
#include <string>

namespace lifeline::agent {

struct SenderKeys {
  crypto::SigningKeyPair device_sign;
  std::array<std::uint8_t, 32> home_seal_public{};
  std::array<std::uint8_t, 32> home_sign_public{};
};

struct SendOutcome {
  int sent = 0;          // messages the home answered
  bool queue_empty = false;
};

class Sender {
 public:
  /// Sends to `home_url` directly.
  Sender(AgentQueue& queue, transport::HttpClient client, SenderKeys keys, protocol::DeviceIdentity device,
         std::string home_url, std::size_t batch_size, std::chrono::milliseconds timeout, const Clock& clock);
  /// Sends over `paths` (endpoints and connection paths tried in order, see ConnectionPaths).
  Sender(AgentQueue& queue, transport::HttpClient client, SenderKeys keys, protocol::DeviceIdentity device,
         std::unique_ptr<ConnectionPaths> paths, std::size_t batch_size, std::chrono::milliseconds timeout,
         const Clock& clock);

  /// One attempt with up to batch_size messages (and at most kMaxBatchBytes of them, so a batch of large
  /// reports never exceeds the home's body limit). An error means nothing was acknowledged: retry later.
  [[nodiscard]] Result<SendOutcome> SendOnce();
  /// Instruction results ride on batches; instructions in replies go to `handler` (may be null).
  void SetInstructionHandler(InstructionHandler* handler) { instructions_ = handler; }

  /// Encoded messages per batch at most: well under the home's default 1 MiB request limit.
  static constexpr std::size_t kMaxBatchBytes = 768 * 1024;

 private:
  AgentQueue& queue_;
  transport::HttpClient client_;
  SenderKeys keys_;
  protocol::DeviceIdentity device_;
  std::unique_ptr<ConnectionPaths> paths_;
  std::size_t batch_size_;
  std::chrono::milliseconds timeout_;
  const Clock& clock_;
  InstructionHandler* instructions_ = nullptr;
};

struct AgentConfig;
/// The sender for `config`: its home endpoint(s) and connection path(s), the device's TLS credentials.
[[nodiscard]] Result<std::unique_ptr<Sender>> MakeSender(const AgentConfig& config, AgentQueue& queue,
                                                         SenderKeys keys);

}  // namespace lifeline::agent

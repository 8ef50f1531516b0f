#include "agent/sender.h"

#include "agent/agent_config.h"

#include "common/log.h"
#include "crypto/envelope.h"
#include "crypto/errors.h"
#include "protocol/codec.h"

#include <fmt/format.h>

namespace lifeline::agent {

Sender::Sender(AgentQueue& queue, transport::HttpClient client, SenderKeys keys,
               protocol::DeviceIdentity device, std::string home_url, std::size_t batch_size,
               std::chrono::milliseconds timeout, const Clock& clock)
    : Sender(queue, std::move(client), keys, std::move(device),
             std::make_unique<ConnectionPaths>(std::vector<transport::ProxySettings>{},
                                               std::vector<std::string>{std::move(home_url)},
                                               std::chrono::minutes(5), clock),
             batch_size, timeout, clock) {}

Sender::Sender(AgentQueue& queue, transport::HttpClient client, SenderKeys keys,
               protocol::DeviceIdentity device, std::unique_ptr<ConnectionPaths> paths,
               std::size_t batch_size, std::chrono::milliseconds timeout, const Clock& clock)
    : queue_(queue),
      client_(std::move(client)),
      keys_(keys),
      device_(std::move(device)),
      paths_(std::move(paths)),
      batch_size_(batch_size),
      timeout_(timeout),
      clock_(clock) {}

Result<SendOutcome> Sender::SendOnce() {
  auto log = log::Get("agent");
  auto pending = queue_.Peek(batch_size_);
  if (!pending) {
    log->error("cannot read the queue: {}", pending.error().message());
    return pending.error();
  }
  std::vector<protocol::InstructionResult> results;
  if (instructions_ != nullptr) {
    results = instructions_->PendingResults();
  }
  if (pending->empty() && results.empty()) {
    return SendOutcome{.sent = 0, .queue_empty = true};
  }
  protocol::Batch batch;
  batch.batch_id = crypto::RandomHex(16);
  batch.device = device_;
  batch.sent_at_ms = clock_.NowUnixMillis();
  batch.agent_version = LIFELINE_VERSION;
  batch.instruction_results = results;
  // Fill by count and by size: a few large reports must not make the body too large for the home.
  const std::size_t peeked = pending->size();
  std::size_t bytes = 0;
  for (auto& m : *pending) {
    const std::size_t size = 256 + m.payload_json.size() + m.alert.text.size() + m.alert.source.size() +
                             m.heartbeat.status.size();
    if (!batch.messages.empty() && bytes + size > kMaxBatchBytes) {
      break;
    }
    bytes += size;
    batch.messages.push_back(std::move(m));
  }
  const std::string plain = protocol::EncodeBatch(batch);
  const auto sealed = crypto::SealEnvelope(crypto::AsBytes(plain), keys_.device_sign, keys_.home_seal_public);

  transport::ClientRequest request;
  request.content_type = "application/vnd.lifeline.sealed-batch";
  request.body.assign(sealed.begin(), sealed.end());
  request.timeout = timeout_;
  auto response = paths_->Send([&](const transport::ProxySettings& path, const std::string& endpoint,
                                   std::string* detail) {
    request.url = endpoint + "/v1/batches";
    request.proxy = path;
    auto answer = client_.Send(request);
    if (!answer) {
      *detail = client_.LastErrorDetail();
    }
    return answer;
  });
  if (!response) {
    log->warn("cannot reach the home: {} ({} messages waiting)", paths_->LastFailure(),
              batch.messages.size());
    return response.error();
  }
  if (response->status == 202) {
    // A gateway (docs/gateway.md, "Relay") holds the batch durably and forwards it when the home
    // answers; only servers with a certificate from the home's CA (the home, gateways) get here, and
    // the home itself never answers 202. Ticket numbers come later (`lifeline agent tickets`).
    std::string why;
    auto held = protocol::DecodeRelayHeld(response->body, &why);
    if (!held) {
      log->error("unreadable 202 answer to batch {}: {}; keeping the messages", batch.batch_id.substr(0, 8), why);
      return make_error_code(protocol::Reject::kMalformedBody);
    }
    std::vector<std::string> ids;
    for (const auto& m : batch.messages) {
      ids.push_back(m.id);
    }
    if (auto removed = queue_.Remove(ids); !removed) {
      log->error("cannot record that gateway {} holds batch {}: {}", held->gateway, batch.batch_id.substr(0, 8),
                 removed.error().message());
      return removed.error();
    }
    if (instructions_ != nullptr) {
      instructions_->MarkReported(batch.instruction_results);
    }
    log->info("gateway {} holds batch {} ({} messages, relay id {}) and forwards it to the home; ticket numbers: "
              "`lifeline agent tickets`",
              held->gateway, batch.batch_id.substr(0, 8), batch.messages.size(), held->relay_id);
    return SendOutcome{.sent = static_cast<int>(batch.messages.size()),
                       .queue_empty = batch.messages.size() == peeked && peeked < batch_size_};
  }
  if (response->status != 200) {
    std::string message;
    const protocol::Reject reason = protocol::DecodeError(response->body, &message);
    log->error("home refused batch {} ({} messages): HTTP {} {}: {}", batch.batch_id.substr(0, 8),
               batch.messages.size(), response->status, protocol::WireName(reason), message);
    return make_error_code(reason);
  }
  // The reply must be signed by the home's key: anything in between (a gateway, a proxy) can relay it but
  // cannot forge which messages were taken.
  auto signature_header = response->headers.find("lifeline-signature");
  auto signature = signature_header == response->headers.end()
                       ? Result<std::vector<std::uint8_t>>(crypto::Errc::kBadBase64)
                       : crypto::Base64Decode(signature_header->second);
  if (!signature || !crypto::Verify(crypto::AsBytes(response->body), *signature, keys_.home_sign_public)) {
    log->error("reply to batch {} is not signed by the home's key; keeping the messages",
               batch.batch_id.substr(0, 8));
    return make_error_code(protocol::Reject::kBadSignature);
  }
  std::string why;
  auto reply = protocol::DecodeReply(response->body, &why);
  if (!reply || reply->batch_id != batch.batch_id) {
    log->error("unreadable reply to batch {}: {}", batch.batch_id.substr(0, 8),
               reply ? "it answers another batch" : why);
    return make_error_code(protocol::Reject::kMalformedBody);
  }
  if (auto acked = queue_.Acknowledge(*reply); !acked) {
    log->error("cannot record the home's reply: {}", acked.error().message());
    return acked.error();
  }
  for (std::size_t i = 0; i < reply->results.size(); ++i) {
    const auto& result = reply->results[i];
    const protocol::Message* message = nullptr;
    for (const auto& m : batch.messages) {
      if (m.id == result.message_id) {
        message = &m;
      }
    }
    if (result.status == protocol::MessageStatus::kRejected) {
      log->error("home rejected message {}: {}", result.message_id.substr(0, 8), result.reason);
    } else if (!result.ticket.empty() && message != nullptr) {
      log->info("home accepted {} {} (message {}): ticket {}{}{}", protocol::ToString(message->type),
                message->alert.code, result.message_id.substr(0, 8), result.ticket,
                result.reason.empty() ? "" : ", ", result.reason);
    }
  }
  if (instructions_ != nullptr) {
    instructions_->MarkReported(batch.instruction_results);
    instructions_->Handle(reply->instructions);
  }
  log->debug("batch {} delivered: {} messages", batch.batch_id.substr(0, 8), reply->results.size());
  return SendOutcome{.sent = static_cast<int>(reply->results.size()),
                     .queue_empty = batch.messages.size() == peeked && peeked < batch_size_};
}

Result<std::unique_ptr<Sender>> MakeSender(const AgentConfig& config, AgentQueue& queue, SenderKeys keys) {
  const AgentPkiPaths paths(config.pki_dir);
  transport::HttpClient client(
      transport::ClientTls{paths.ca_cert.string(), paths.device_cert.string(), paths.device_key.string()});
  return std::make_unique<Sender>(queue, std::move(client), keys, config.device,
                                  MakeConnectionPaths(config, &queue),
                                  static_cast<std::size_t>(config.batch_size),
                                  std::chrono::duration_cast<std::chrono::milliseconds>(config.request_timeout),
                                  SystemClock::Instance());
}

}  // namespace lifeline::agent

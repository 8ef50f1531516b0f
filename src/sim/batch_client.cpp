#include "sim/batch_client.h"

#include "crypto/envelope.h"
#include "crypto/errors.h"
#include "protocol/codec.h"

#include <fmt/format.h>

#include <optional>

namespace lifeline::sim {

BatchClient::BatchClient(HomeTrust trust, std::size_t max_connections, std::chrono::milliseconds timeout)
    : trust_(std::move(trust)), max_connections_(std::max<std::size_t>(max_connections, 1)), timeout_(timeout) {}

std::string BatchClient::Seal(const protocol::Batch& batch, const DeviceCredentials& device,
                              const HomeTrust& trust) {
  const std::string plain = protocol::EncodeBatch(batch);
  const auto sealed = crypto::SealEnvelope(crypto::AsBytes(plain), device.sign, trust.seal_public);
  return std::string(sealed.begin(), sealed.end());
}

SendOutcome BatchClient::Send(const DeviceCredentials& device, const std::string& home_url,
                              const std::string& sealed, const std::string& batch_id) {
  SendOutcome out;
  std::string key = home_url + "|" + device.identity.Key();
  auto cached = cached_.find(key);
  std::optional<transport::HttpClient> transient;
  if (cached == cached_.end()) {
    ++opened_;
    transport::HttpClient fresh(transport::ClientTls{trust_.ca_file, device.cert_file, device.key_file});
    if (cached_.size() < max_connections_) {
      cached = cached_.emplace(std::move(key), std::move(fresh)).first;
    } else {
      transient.emplace(std::move(fresh));
    }
  }
  transport::HttpClient& client = transient ? *transient : cached->second;
  transport::ClientRequest request;
  request.url = home_url + "/v1/batches";
  request.content_type = "application/vnd.lifeline.sealed-batch";
  request.body = sealed;
  request.timeout = timeout_;
  request.connect_timeout = std::min(timeout_, request.connect_timeout);
  const auto start = std::chrono::steady_clock::now();
  auto response = client.Send(request);
  out.latency = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - start);
  if (!response) {
    out.kind = SendOutcome::Kind::kTransportError;
    out.detail = client.LastErrorDetail().empty() ? response.error().message() : client.LastErrorDetail();
    // The connection is in an unknown state: the next send opens a fresh one.
    if (!transient) {
      cached_.erase(cached);
    }
    return out;
  }
  out.http_status = response->status;
  if (response->status != 200) {
    out.kind = SendOutcome::Kind::kRefused;
    std::string message;
    out.refusal = protocol::DecodeError(response->body, &message);
    out.detail = fmt::format("HTTP {} {}: {}", response->status, protocol::WireName(out.refusal), message);
    return out;
  }
  auto header = response->headers.find("lifeline-signature");
  auto signature = header == response->headers.end() ? Result<std::vector<std::uint8_t>>(crypto::Errc::kBadBase64)
                                                      : crypto::Base64Decode(header->second);
  if (!signature || !crypto::Verify(crypto::AsBytes(response->body), *signature, trust_.sign_public)) {
    out.kind = SendOutcome::Kind::kBadReply;
    out.detail = "the reply is not signed by the home's key";
    return out;
  }
  std::string why;
  auto reply = protocol::DecodeReply(response->body, &why);
  if (!reply || reply->batch_id != batch_id) {
    out.kind = SendOutcome::Kind::kBadReply;
    out.detail = reply ? "the reply answers another batch" : "unreadable reply: " + why;
    return out;
  }
  out.kind = SendOutcome::Kind::kAnswered;
  for (const auto& result : reply->results) {
    if (result.status == protocol::MessageStatus::kRejected) {
      ++out.rejected;
    } else if (result.duplicate) {
      ++out.duplicates;
    } else {
      ++out.accepted;
    }
  }
  out.reply = std::move(*reply);
  return out;
}

}  // namespace lifeline::sim

#pragma once
// Sends simulated devices' batches to a home over mutual TLS, as agent/sender.cpp does: the batch is
// signed with the device's key and sealed to the home's, POSTed to /v1/batches with the device's
// client certificate, and the reply's signature is checked against the home's key.
//
// Each device has its own client certificate, so a connection belongs to one device (and one home).
// A client keeps the connections of the first `max_connections` devices it serves open; any other
// device connects for the request and closes after it. Devices are state, connections a small cache,
// and a fleet larger than the cache is served in turn, where least-recently-used eviction would miss
// every time. Not thread-safe: one per thread.
#include "protocol/errors.h"
#include "protocol/message.h"
#include "sim/credentials.h"
#include "transport/http_client.h"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_map>

namespace lifeline::sim {

struct SendOutcome {
  enum class Kind {
    kAnswered,        // HTTP 200 with a reply signed by the home, for this batch
    kRefused,         // the home refused the batch (refusal says why); nothing was stored
    kTransportError,  // no answer: connect, TLS, timeout, lost connection
    kBadReply,        // a 200 that is not signed by the home's key or does not answer this batch
  };
  Kind kind = Kind::kTransportError;
  int http_status = 0;
  protocol::Reject refusal = protocol::Reject::kInternal;  // kRefused only
  /// Connect (when not cached), TLS, request and reply; measured around the one HTTP exchange.
  std::chrono::microseconds latency{0};
  // Per message, kAnswered only.
  int accepted = 0;    // first time the home saw the message id
  int duplicates = 0;  // accepted earlier: the stored answer came back (duplicate: true)
  int rejected = 0;
  protocol::BatchReply reply;
  std::string detail;  // kRefused, kTransportError, kBadReply: for a log line
};

class BatchClient {
 public:
  BatchClient(HomeTrust trust, std::size_t max_connections, std::chrono::milliseconds timeout);

  /// The envelope for `batch` (docs/protocol.md): signed with the device's key, sealed to the home.
  static std::string Seal(const protocol::Batch& batch, const DeviceCredentials& device, const HomeTrust& trust);

  /// POSTs a sealed batch (Seal) to `home_url` + "/v1/batches" as `device` and checks the reply.
  /// `batch_id` is the sealed batch's id, which the reply must name.
  SendOutcome Send(const DeviceCredentials& device, const std::string& home_url, const std::string& sealed,
                   const std::string& batch_id);

  /// Connections opened so far (each a TCP connect and a TLS handshake with a client certificate).
  std::uint64_t connections_opened() const { return opened_; }

 private:
  HomeTrust trust_;
  std::size_t max_connections_;
  std::chrono::milliseconds timeout_;
  std::unordered_map<std::string, transport::HttpClient> cached_;  // by home URL and device
  std::uint64_t opened_ = 0;
};

}  // namespace lifeline::sim

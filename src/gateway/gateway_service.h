#pragma once
// `lifeline gateway run`: the gateway's parts together (docs/gateway.md): managed devices and their
// probes, the local admin interface, the relay of the site's agents' batches, the tunnel to the home
// and remote sessions.
#include "common/result.h"
#include "gateway/gateway_config.h"

#include <memory>
#include <string>

namespace lifeline::gateway {

class GatewayService {
 public:
  /// Starts everything; on failure logs what went wrong and returns the error (nothing left running).
  [[nodiscard]] static Result<std::unique_ptr<GatewayService>> Start(const GatewayConfig& config);
  ~GatewayService();

  /// Stops the tunnel (open sessions end), the relay, the admin interface and the probes.
  void Stop();

  struct Parts;

 private:
  explicit GatewayService(std::unique_ptr<Parts> parts);
  std::unique_ptr<Parts> parts_;
};

}  // namespace lifeline::gateway

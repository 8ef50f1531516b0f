#pragma once
// `lifeline home`: opens the store, loads the PKI, starts the ingest and admin listeners and the
// notifier, and runs until stopped.
#include "common/result.h"
#include "home/home_config.h"
#include "store/home_store.h"

#include <cstdint>
#include <memory>
#include <string>

namespace lifeline::home {

class HomeService {
 public:
  /// Starts everything; on failure logs what went wrong and returns the error (nothing is left running).
  [[nodiscard]] static Result<std::unique_ptr<HomeService>> Start(const HomeConfig& config);
  ~HomeService();

  std::string IngestAddress() const;
  std::string AdminAddress() const;
  /// Remote access ports (0 when remote_access.enabled = false).
  std::uint16_t TunnelPort() const;
  std::uint16_t SessionsPort() const;
  /// Stops accepting, finishes in-flight requests and the email being sent, closes the store.
  void Stop();

  struct Parts;

 private:
  explicit HomeService(std::unique_ptr<Parts> parts);
  std::unique_ptr<Parts> parts_;
};

/// Opens the home's store as configured (creates and migrates it when new).
[[nodiscard]] Result<std::unique_ptr<store::HomeStore>> OpenHomeStore(const HomeConfig& config);

}  // namespace lifeline::home

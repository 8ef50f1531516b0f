#include "cli/agent_tickets.h"

#include "agent/agent_config.h"
#include "cli/admin_client.h"
#include "cli/commands.h"
#include "common/clock.h"
#include "common/config.h"
#include "crypto/keys.h"
#include "protocol/codec.h"
#include "transport/http_client.h"

#include <boost/json.hpp>
#include <fmt/format.h>

#include <chrono>
#include <iostream>

namespace lifeline::cli {
namespace json = boost::json;

int AgentTickets(const std::string& config_path, bool print_json) {
  constexpr std::string_view kProgram = "lifeline agent tickets";
  agent::AgentConfig config;
  try {
    config = agent::AgentConfig::Load(config_path);
  } catch (const config::ConfigError& e) {
    std::cerr << e.what() << "\n";
    return kExitUsage;
  }
  const agent::AgentPkiPaths pki(config.pki_dir);
  auto home_sign = crypto::ReadPublicKey(pki.home_sign_public, crypto::KeyKind::kEd25519Public);
  if (!home_sign) {
    std::cerr << fmt::format("{}: cannot read {}: {}\n", kProgram, pki.home_sign_public.string(),
                             home_sign.error().message());
    return kExitFailure;
  }
  transport::HttpClient client(transport::ClientTls{
      .ca_file = pki.ca_cert.string(), .cert_file = pki.device_cert.string(), .key_file = pki.device_key.string()});
  auto response = client.Send({.method = "GET",
                               .url = config.home_url + "/v1/tickets",
                               .timeout = std::chrono::duration_cast<std::chrono::milliseconds>(config.request_timeout)});
  if (!response) {
    std::cerr << fmt::format("{}: cannot reach {}: {}\n", kProgram, config.home_url, client.LastErrorDetail());
    return kExitFailure;
  }
  if (response->status != 200) {
    std::string message;
    const auto reason = protocol::DecodeError(response->body, &message);
    std::cerr << fmt::format("{}: {} ({}): {}\n", kProgram, protocol::WireName(reason), response->status, message);
    return kExitFailure;
  }
  // Signed like batch replies: only the home's key could have written this list.
  std::optional<std::vector<std::uint8_t>> signature;
  if (auto header = response->headers.find("lifeline-signature"); header != response->headers.end()) {
    if (auto decoded = crypto::Base64Decode(header->second)) {
      signature = std::move(*decoded);
    }
  }
  if (!signature || !crypto::Verify(crypto::AsBytes(response->body), *signature, *home_sign)) {
    std::cerr << kProgram << ": the answer is not signed by the home's key (" << pki.home_sign_public.string()
              << ")\n";
    return kExitFailure;
  }
  if (print_json) {
    std::cout << response->body << "\n";
    return kExitOk;
  }
  boost::system::error_code ec;
  auto root = json::parse(response->body, ec);
  if (ec || !root.is_object() || !root.as_object().contains("tickets")) {
    std::cerr << kProgram << ": unreadable answer from the home\n";
    return kExitFailure;
  }
  const auto& tickets = root.at("tickets").as_array();
  if (tickets.empty()) {
    std::cout << "no open or recent tickets for " << config.device.Key() << "\n";
    return kExitOk;
  }
  std::cout << fmt::format("{:<10} {:<12} {:<9} {:<16} {:>5}  {}\n", "TICKET", "STATUS", "SEVERITY", "CODE", "COUNT",
                           "LAST SEEN");
  for (const auto& t : tickets) {
    const auto& o = t.as_object();
    const auto last_ms = o.contains("last_seen_ms") ? o.at("last_seen_ms").to_number<std::int64_t>() : 0;
    std::cout << fmt::format("{:<10} {:<12} {:<9} {:<16} {:>5}  {}\n", JsonText(o, "number"), JsonText(o, "status"),
                             JsonText(o, "severity"), JsonText(o, "code"), JsonText(o, "occurrences"),
                             FormatRfc3339(std::chrono::system_clock::time_point(std::chrono::milliseconds(last_ms))));
  }
  return kExitOk;
}

}  // namespace lifeline::cli

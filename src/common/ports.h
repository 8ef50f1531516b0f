#pragma once
// Every default port Lifeline uses, declared once. Config defaults, `lifeline ports` and docs/ports.md all
// read these; a test fails when docs/ports.md differs from what RenderPortGuideMarkdown() produces.
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace lifeline::ports {

/// Agents (and later gateways) reach the home here: sealed batches and enrollment. P.A.S.S. uses 9455.
inline constexpr std::uint16_t kHomeIngest = 9455;
/// The home's admin API for engineers and `lifeline tickets`; bound to loopback by default.
inline constexpr std::uint16_t kHomeAdmin = 9456;
/// Engineers' remote sessions (`lifeline connect`): WebSocket in TLS, an admin token per engineer.
inline constexpr std::uint16_t kHomeSessions = 9457;
/// Gateways' outbound tunnels to the home (TLS or WebSocket in TLS, mutual certificates).
inline constexpr std::uint16_t kHomeTunnel = 9458;
/// The gateway's device-facing port: agents at the site send their batches here (HTTPS, mutual TLS).
inline constexpr std::uint16_t kGatewayDevices = 9459;
/// The gateway's local admin interface (`lifeline gateway devices|sessions`), loopback only.
inline constexpr std::uint16_t kGatewayAdmin = 9460;
/// The policy manager (`lifeline policy`): gateways and the customer's browsers, HTTPS. ESRS's port.
inline constexpr std::uint16_t kPolicyHttps = 8443;
/// The policy manager's optional plain HTTP, loopback only (ESRS's 8090); off unless configured.
inline constexpr std::uint16_t kPolicyHttp = 8090;
/// Outbound mail from the home: plain SMTP relay, submission with STARTTLS, SMTP over TLS.
inline constexpr std::uint16_t kSmtp = 25;
inline constexpr std::uint16_t kSmtpSubmission = 587;
inline constexpr std::uint16_t kSmtps = 465;

/// Which tables of the guide a port belongs in, in the order the guide prints them.
enum class Section { kInsideSite, kSiteToHome, kEngineerToHome, kHomeToExternal };

struct PortUse {
  Section section;
  std::string_view from;      // sender
  std::string_view to;        // listener
  std::uint16_t port;
  std::string_view protocol;  // transport and application protocol
  std::string_view purpose;
  std::string_view config_key;  // where an operator changes it
};

std::span<const PortUse> All();
std::string_view SectionTitle(Section section);

/// The guide as aligned text tables (`lifeline ports`).
std::string RenderPortGuideText();
/// The guide as Markdown; docs/ports.md is exactly this.
std::string RenderPortGuideMarkdown();

}  // namespace lifeline::ports

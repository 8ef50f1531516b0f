#include "common/ports.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <vector>

namespace lifeline::ports {
namespace {

constexpr std::array kPorts = {
    PortUse{Section::kInsideSite, "Agent (on or beside the device)", "Gateway (lifeline gateway, devices)",
            kGatewayDevices, "TCP, HTTPS (TLS 1.2+, mutual certificates)",
            "Agents that point at the gateway instead of the home send their sealed batches here; the "
            "gateway stores and relays them, opaque, to the home.",
            "gateway.toml [listen] devices; agent.toml [home] url"},
    PortUse{Section::kInsideSite, "Operator on the gateway machine (lifeline gateway ...)",
            "Gateway (lifeline gateway, local admin)", kGatewayAdmin, "TCP, HTTPS on loopback only, token file",
            "Managed devices, remote sessions (list, end), remote access on/off.",
            "gateway.toml [listen] admin"},
    PortUse{Section::kInsideSite, "Gateway; administrators' and approvers' browsers and `lifeline policy` clients",
            "Policy manager (lifeline policy)", kPolicyHttps, "TCP, HTTPS (TLS 1.2+), bearer token or gateway certificate",
            "Policies, approvals and the audit log. Stays inside the site: only the customer's gateways and "
            "users reach it.",
            "policy.toml [listen] https"},
    PortUse{Section::kInsideSite, "Local clients on the policy manager's machine",
            "Policy manager (lifeline policy, plain HTTP)", kPolicyHttp,
            "TCP, HTTP on loopback only, login or bearer token",
            "The policy API for a reverse proxy or browser on the same machine; the gateways' routes answer 401 "
            "there. Off unless configured; refused at start on any address other than loopback.",
            "policy.toml [listen] http"},
    PortUse{Section::kInsideSite, "Gateway (remote sessions)", "Managed device (its registered ports)", 0,
            "TCP, the application's own protocol (ssh:22, https:443, ...)",
            "Only the ports registered for the device, only during an engineer's session; also the "
            "gateway's periodic reachability probe.",
            "lifeline gateway devices add --app NAME:PORT"},
    PortUse{Section::kSiteToHome, "Agent (on or beside the device)", "Home (lifeline home, ingest)",
            kHomeIngest, "TCP, HTTPS (TLS 1.2+, mutual certificates)",
            "Sealed, signed message batches (alerts, clears, heartbeats) and their replies with ticket "
            "numbers; device enrollment. Opened outbound from the site only.",
            "home.toml [listen] ingest; agent.toml [home] url"},
    PortUse{Section::kSiteToHome, "Gateway (tunnel)", "Home (lifeline home, tunnel)", kHomeTunnel,
            "TCP, TLS 1.2+ with mutual certificates, or WebSocket inside TLS; HTTP/2 streams inside",
            "The gateway's outbound tunnel: engineers' session streams run home to gateway inside it. "
            "Opened outbound from the site only, directly or through an HTTP or SOCKS5 proxy.",
            "gateway.toml [home] tunnel_urls; home.toml [listen] tunnel"},
    PortUse{Section::kEngineerToHome, "Engineer's workstation (lifeline connect)",
            "Home (lifeline home, sessions)", kHomeSessions, "TCP, WebSocket inside TLS 1.2+, bearer token",
            "Remote sessions: each connection to the engineer's local port becomes one stream to the device.",
            "home.toml [listen] sessions"},
    PortUse{Section::kEngineerToHome, "Engineer's workstation (lifeline tickets)",
            "Home (lifeline home, admin API)", kHomeAdmin, "TCP, HTTPS (TLS 1.2+), bearer token",
            "Read tickets and devices. Listens on loopback unless configured otherwise.",
            "home.toml [listen] admin"},
    PortUse{Section::kHomeToExternal, "Home (notifications)", "Mail server (SMTP relay)", kSmtp,
            "TCP, SMTP (STARTTLS when offered)", "Ticket notification emails to on-call engineers.",
            "home.toml [smtp] url"},
    PortUse{Section::kHomeToExternal, "Home (notifications)", "Mail server (submission)",
            kSmtpSubmission, "TCP, SMTP submission (STARTTLS, authentication)",
            "Ticket notification emails through an authenticated submission server.",
            "home.toml [smtp] url"},
    PortUse{Section::kHomeToExternal, "Home (notifications)", "Mail server (SMTPS)", kSmtps,
            "TCP, SMTP over TLS (authentication)", "Ticket notification emails over implicit TLS.",
            "home.toml [smtp] url"},
};

constexpr std::array kSections = {Section::kInsideSite, Section::kSiteToHome, Section::kEngineerToHome,
                                   Section::kHomeToExternal};

// Port 0: the device's own registered ports, which differ per device.
std::string PortText(const PortUse& use) {
  return use.port == 0 ? std::string("registered per device") : fmt::format("{} (TCP)", use.port);
}

std::vector<PortUse> InSection(Section section) {
  std::vector<PortUse> rows;
  std::copy_if(kPorts.begin(), kPorts.end(), std::back_inserter(rows),
               [section](const PortUse& p) { return p.section == section; });
  return rows;
}

}  // namespace

std::span<const PortUse> All() { return kPorts; }

std::string_view SectionTitle(Section section) {
  switch (section) {
    case Section::kInsideSite: return "Inside the customer site (devices, gateway, its operator)";
    case Section::kSiteToHome: return "Customer site to support center (outbound from the site only)";
    case Section::kEngineerToHome: return "Engineers to the support center";
    case Section::kHomeToExternal: return "Support center to external services";
  }
  return "";
}

std::string RenderPortGuideText() {
  std::string out =
      "Lifeline port usage guide: every port a default installation uses, for firewall and ACL "
      "planning.\nNo port at a customer site accepts connections from the internet.\n";
  int table = 1;
  for (Section section : kSections) {
    const auto rows = InSection(section);
    std::size_t w_from = 13, w_to = 13;
    for (const auto& r : rows) {
      w_from = std::max(w_from, r.from.size());
      w_to = std::max(w_to, r.to.size());
    }
    out += fmt::format("\nTable {} {}\n\n", table++, SectionTitle(section));
    out += fmt::format("{:<{}}  {:<{}}  {:<16}  {}\n", "From (Sender)", w_from, "To (Listener)", w_to,
                       "Destination Port", "Protocol / Purpose");
    for (const auto& r : rows) {
      out += fmt::format("{:<{}}  {:<{}}  {:<16}  {}\n", r.from, w_from, r.to, w_to,
                         PortText(r), r.protocol);
      out += fmt::format("{:<{}}  {:<{}}  {:<16}  {}\n", "", w_from, "", w_to, "", r.purpose);
      out += fmt::format("{:<{}}  {:<{}}  {:<16}  Configured in: {}\n", "", w_from, "", w_to, "",
                         r.config_key);
    }
  }
  return out;
}

std::string RenderPortGuideMarkdown() {
  std::string out =
      "<!-- Generated by `build/lifeline ports --markdown > docs/ports.md`; do not edit by hand. "
      "A test fails when this file and the code differ. -->\n"
      "# Lifeline port usage guide\n\n"
      "Every port a default installation uses, for firewall and ACL planning. No port at a customer "
      "site accepts connections from the internet: agents (and gateways) only connect outbound.\n";
  int table = 1;
  for (Section section : kSections) {
    out += fmt::format("\n## Table {} {}\n\n", table++, SectionTitle(section));
    out += "| From (Sender) | To (Listener) | Destination Port | Protocol | Purpose | Configured in |\n";
    out += "|---|---|---|---|---|---|\n";
    for (const auto& r : InSection(section)) {
      out += fmt::format("| {} | {} | {} | {} | {} | {} |\n", r.from, r.to, PortText(r), r.protocol,
                         r.purpose, r.config_key);
    }
  }
  return out;
}

}  // namespace lifeline::ports

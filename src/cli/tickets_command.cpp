#include "cli/tickets_command.h"

#include "cli/commands.h"
#include "common/ports.h"
#include "crypto/keys.h"
#include "protocol/codec.h"
#include "transport/http_client.h"

#include <boost/json.hpp>
#include <fmt/format.h>

#include <iostream>

namespace lifeline::cli {
namespace json = boost::json;

namespace {

std::string Str(const json::object& o, std::string_view key) {
  const auto* v = o.if_contains(key);
  if (v == nullptr) {
    return "";
  }
  if (v->is_string()) {
    return std::string(v->get_string());
  }
  return json::serialize(*v);
}

void PrintTicketList(const json::object& root) {
  const auto* tickets = root.if_contains("tickets");
  if (tickets == nullptr || !tickets->is_array() || tickets->get_array().empty()) {
    std::cout << "no tickets\n";
    return;
  }
  std::cout << fmt::format("{:<10} {:<9} {:<9} {:<12} {:>5}  {:<34} {}\n", "TICKET", "STATE", "SEVERITY", "CODE",
                           "COUNT", "DEVICE", "LAST SEEN");
  for (const auto& t : tickets->get_array()) {
    const auto& o = t.get_object();
    const auto& d = o.at("device").get_object();
    std::cout << fmt::format("{:<10} {:<9} {:<9} {:<12} {:>5}  {:<34} {}\n", Str(o, "number"), Str(o, "state"),
                             Str(o, "severity"), Str(o, "code"), Str(o, "occurrences"),
                             fmt::format("{}/{}/{}", Str(d, "customer"), Str(d, "site"), Str(d, "serial")),
                             Str(o, "last_seen"));
  }
}

void PrintTicket(const json::object& o) {
  const auto& d = o.at("device").get_object();
  std::cout << fmt::format(
      "ticket:       {}\nstate:        {}\nseverity:     {}\ncode:         {}\nmessage:      {}\n"
      "device:       {}/{}/{} (model {})\noccurrences:  {}\nfirst seen:   {}\nlast seen:    {}\n",
      Str(o, "number"), Str(o, "state"), Str(o, "severity"), Str(o, "code"), Str(o, "text"), Str(d, "customer"),
      Str(d, "site"), Str(d, "serial"), Str(d, "model"), Str(o, "occurrences"), Str(o, "first_seen"),
      Str(o, "last_seen"));
  if (!Str(o, "resolved_at").empty()) {
    std::cout << "resolved at:  " << Str(o, "resolved_at") << "\n";
  }
  if (const auto* events = o.if_contains("events"); events != nullptr && events->is_array()) {
    std::cout << "events:\n";
    for (const auto& e : events->get_array()) {
      const auto& eo = e.get_object();
      std::cout << fmt::format("  {}  {:<6} {}\n", Str(eo, "received_at"), Str(eo, "type"), Str(eo, "text"));
    }
  }
  if (const auto* notes = o.if_contains("notifications"); notes != nullptr && notes->is_array()) {
    std::cout << "notifications:\n";
    for (const auto& n : notes->get_array()) {
      const auto& no = n.get_object();
      std::cout << fmt::format("  {} to {}: {}{}\n", Str(no, "kind"), Str(no, "recipient"), Str(no, "status"),
                               Str(no, "last_error").empty() ? "" : " (" + Str(no, "last_error") + ")");
    }
  }
}

}  // namespace

CLI::App* AddTicketsCommand(CLI::App& app, TicketsOptions& options) {
  auto* cmd = app.add_subcommand("tickets", "List and show tickets through the home's admin API")->require_subcommand(1);
  options.home_url = fmt::format("https://127.0.0.1:{}", ports::kHomeAdmin);
  options.ca_file = "/etc/lifeline/pki/ca.crt";
  cmd->add_option("--home", options.home_url, "Admin API URL of the home")->envname("LIFELINE_ADMIN_URL");
  cmd->add_option("--ca", options.ca_file, "CA certificate the home's certificate must chain to")
      ->envname("LIFELINE_CA");
  cmd->add_option("--token-file", options.token_file,
                  "File holding an admin token (or set LIFELINE_ADMIN_TOKEN); see `lifeline home admin-token`");
  cmd->add_flag("--json", options.json, "Print the API's JSON");
  auto* list = cmd->add_subcommand("list", "List tickets, newest first");
  list->add_option("--state", options.state, "open, resolved or all")->check(CLI::IsMember({"open", "resolved", "all"}));
  list->add_option("--limit", options.limit, "At most this many")->check(CLI::Range(1, 10000));
  auto* show = cmd->add_subcommand("show", "Show one ticket with its events and notifications");
  show->add_option("number", options.number, "Ticket number, e.g. LL-000001")->required();
  return cmd;
}

int RunTicketsCommand(CLI::App& command, const TicketsOptions& options) {
  std::string token;
  if (!options.token_file.empty()) {
    auto text = crypto::ReadSmallFile(options.token_file, 4096);
    if (!text) {
      std::cerr << "lifeline tickets: cannot read " << options.token_file << ": " << text.error().message() << "\n";
      return kExitUsage;
    }
    token = *text;
  } else if (const char* env = std::getenv("LIFELINE_ADMIN_TOKEN")) {
    token = env;
  }
  while (!token.empty() && (token.back() == '\n' || token.back() == '\r')) {
    token.pop_back();
  }
  if (token.empty()) {
    std::cerr << "lifeline tickets: give an admin token with --token-file or LIFELINE_ADMIN_TOKEN\n";
    return kExitUsage;
  }
  const bool show = command.got_subcommand("show");
  const std::string path = show ? "/v1/tickets/" + options.number
                                : fmt::format("/v1/tickets?state={}&limit={}", options.state, options.limit);
  transport::HttpClient client(transport::ClientTls{.ca_file = options.ca_file});
  auto response = client.Send({.method = "GET",
                               .url = options.home_url + path,
                               .headers = {{"Authorization", "Bearer " + token}}});
  if (!response) {
    std::cerr << "lifeline tickets: cannot reach " << options.home_url << ": " << response.error().message() << "\n";
    return kExitFailure;
  }
  if (response->status != 200) {
    std::string message;
    const auto reason = protocol::DecodeError(response->body, &message);
    std::cerr << fmt::format("lifeline tickets: {} ({}): {}\n", protocol::WireName(reason), response->status, message);
    return kExitFailure;
  }
  if (options.json) {
    std::cout << response->body << "\n";
    return kExitOk;
  }
  boost::system::error_code ec;
  auto root = json::parse(response->body, ec);
  if (ec || !root.is_object()) {
    std::cerr << "lifeline tickets: unreadable answer from the home\n";
    return kExitFailure;
  }
  if (show) {
    PrintTicket(root.get_object());
  } else {
    PrintTicketList(root.get_object());
  }
  return kExitOk;
}

}  // namespace lifeline::cli

#include "cli/tickets_command.h"

#include "cli/commands.h"

#include <boost/json.hpp>
#include <fmt/format.h>

#include <iostream>

namespace lifeline::cli {
namespace json = boost::json;

namespace {

constexpr std::string_view kProgram = "lifeline tickets";

void PrintTicketList(const json::value& root) {
  const auto* tickets = root.as_object().if_contains("tickets");
  if (tickets == nullptr || !tickets->is_array() || tickets->get_array().empty()) {
    std::cout << "no tickets\n";
    return;
  }
  std::cout << fmt::format("{:<10} {:<12} {:<9} {:<14} {:>5}  {:<34} {:<10} {}\n", "TICKET", "STATUS", "SEVERITY",
                           "CODE", "COUNT", "DEVICE", "ASSIGNEE", "LAST SEEN");
  for (const auto& t : tickets->get_array()) {
    const auto& o = t.get_object();
    const auto& d = o.at("device").get_object();
    std::cout << fmt::format("{:<10} {:<12} {:<9} {:<14} {:>5}  {:<34} {:<10} {}\n", JsonText(o, "number"),
                             JsonText(o, "status"), JsonText(o, "severity"), JsonText(o, "code"),
                             JsonText(o, "occurrences"),
                             fmt::format("{}/{}/{}", JsonText(d, "customer"), JsonText(d, "site"),
                                         JsonText(d, "serial")),
                             JsonText(o, "assignee").empty() ? "-" : JsonText(o, "assignee"),
                             JsonText(o, "last_seen"));
  }
}

void PrintTicket(const json::value& root) {
  const auto& o = root.as_object();
  const auto& d = o.at("device").get_object();
  auto line = [](std::string_view label, const std::string& value) {
    if (!value.empty()) {
      std::cout << fmt::format("{:<14}{}\n", label, value);
    }
  };
  line("ticket:", JsonText(o, "number"));
  line("status:", fmt::format("{} ({})", JsonText(o, "status"), JsonText(o, "state")));
  line("severity:", JsonText(o, "severity"));
  line("code:", JsonText(o, "code"));
  line("message:", JsonText(o, "text"));
  line("device:", fmt::format("{}/{}/{} (model {})", JsonText(d, "customer"), JsonText(d, "site"),
                              JsonText(d, "serial"), JsonText(d, "model")));
  line("occurrences:", JsonText(o, "occurrences"));
  line("first seen:", JsonText(o, "first_seen"));
  line("last seen:", JsonText(o, "last_seen"));
  line("assignee:", JsonText(o, "assignee"));
  if (!JsonText(o, "acknowledged_at").empty()) {
    line("acknowledged:", fmt::format("{} by {}", JsonText(o, "acknowledged_at"), JsonText(o, "acknowledged_by")));
  }
  if (!JsonText(o, "resolved_at").empty()) {
    line("resolved:", fmt::format("{} by {}", JsonText(o, "resolved_at"), JsonText(o, "resolved_by")));
  }
  line("closed:", JsonText(o, "closed_at"));
  if (!JsonText(o, "suppressed").empty()) {
    line("notifications:", "held back (" + JsonText(o, "suppressed") + ")");
  }
  auto each = [&o](std::string_view key, auto&& print) {
    const auto* items = o.if_contains(key);
    if (items != nullptr && items->is_array() && !items->get_array().empty()) {
      std::cout << key << ":\n";
      for (const auto& item : items->get_array()) {
        print(item.get_object());
      }
    }
  };
  each("notes", [](const json::object& n) {
    std::cout << fmt::format("  {}  {}: {}\n", JsonText(n, "at"), JsonText(n, "author"), JsonText(n, "text"));
  });
  each("history", [](const json::object& h) {
    std::cout << fmt::format("  {}  {:<12} {} -> {}  by {}{}\n", JsonText(h, "at"), JsonText(h, "action"),
                             JsonText(h, "from").empty() ? "-" : JsonText(h, "from"), JsonText(h, "to"),
                             JsonText(h, "actor"), JsonText(h, "detail").empty() ? "" : "  (" + JsonText(h, "detail") + ")");
  });
  each("events", [](const json::object& e) {
    std::cout << fmt::format("  {}  {:<6} {}\n", JsonText(e, "received_at"), JsonText(e, "type"), JsonText(e, "text"));
  });
  each("notifications", [](const json::object& n) {
    std::cout << fmt::format("  {} to {}: {}{}\n", JsonText(n, "kind"), JsonText(n, "recipient"), JsonText(n, "status"),
                             JsonText(n, "last_error").empty() ? "" : " (" + JsonText(n, "last_error") + ")");
  });
}

void PrintChanged(const json::value& root) {
  const auto& o = root.as_object();
  std::cout << fmt::format("{} is {}{}\n", JsonText(o, "number"), JsonText(o, "status"),
                           JsonText(o, "assignee").empty() ? "" : ", assigned to " + JsonText(o, "assignee"));
}

}  // namespace

CLI::App* AddTicketsCommand(CLI::App& app, TicketsOptions& options) {
  auto* cmd = app.add_subcommand("tickets", "List, show and work on tickets through the home's admin API")
                  ->require_subcommand(1);
  AddAdminOptions(cmd, options.connection);
  auto* list = cmd->add_subcommand("list", "List tickets, newest first");
  list->add_option("--state", options.state, "open, resolved or all")->check(CLI::IsMember({"open", "resolved", "all"}));
  list->add_option("--status", options.status, "new, acknowledged, reopened, resolved, closed (comma-separated)");
  list->add_option("--customer", options.customer, "Only this customer's tickets");
  list->add_option("--site", options.site, "Only this site's (with --customer)");
  list->add_option("--serial", options.serial, "Only this device's (with --customer and --site)");
  list->add_option("--code", options.code, "Only this alert code");
  list->add_option("--assignee", options.assignee, "Only tickets assigned to this engineer");
  list->add_option("--limit", options.limit, "At most this many")->check(CLI::Range(1, 10000));
  auto* show = cmd->add_subcommand("show", "Show one ticket with its notes, history, events and notifications");
  show->add_option("number", options.number, "Ticket number, e.g. LL-000001")->required();
  for (const auto& [name, help] : std::vector<std::pair<std::string, std::string>>{
           {"ack", "Acknowledge a ticket (stops its escalation)"},
           {"resolve", "Resolve a ticket (the people told hear that it is over)"},
           {"close", "Close a ticket (it never reopens; the alert coming back opens a new one)"},
           {"reopen", "Reopen a resolved or closed ticket"}}) {
    auto* sub = cmd->add_subcommand(name, help);
    sub->add_option("number", options.number, "Ticket number")->required();
    sub->add_option("--note", options.text, "A note stored with the change");
  }
  auto* note = cmd->add_subcommand("note", "Add a note to a ticket");
  note->add_option("number", options.number, "Ticket number")->required();
  note->add_option("text", options.text, "The note")->required();
  auto* assign = cmd->add_subcommand("assign", "Assign a ticket to an engineer (\"\" unassigns)");
  assign->add_option("number", options.number, "Ticket number")->required();
  assign->add_option("engineer", options.text, "Who")->required();
  return cmd;
}

int RunTicketsCommand(CLI::App& command, const TicketsOptions& options) {
  const auto& c = options.connection;
  const std::string ticket_path = "/v1/tickets/" + UrlEncode(options.number);
  if (command.got_subcommand("list")) {
    std::string path = fmt::format("/v1/tickets?state={}&limit={}", options.state, options.limit);
    for (const auto& [key, value] :
         std::vector<std::pair<std::string, std::string>>{{"status", options.status},
                                                          {"customer", options.customer},
                                                          {"site", options.site},
                                                          {"serial", options.serial},
                                                          {"code", options.code},
                                                          {"assignee", options.assignee}}) {
      if (!value.empty()) {
        path += fmt::format("&{}={}", key, UrlEncode(value));
      }
    }
    return AdminCall(c, kProgram, "GET", path, "", PrintTicketList);
  }
  if (command.got_subcommand("show")) {
    return AdminCall(c, kProgram, "GET", ticket_path, "", PrintTicket);
  }
  if (command.got_subcommand("note")) {
    return AdminCall(c, kProgram, "POST", ticket_path + "/notes",
                     json::serialize(json::object{{"text", options.text}}),
                     [&](const json::value&) { std::cout << "note added to " << options.number << "\n"; });
  }
  if (command.got_subcommand("assign")) {
    return AdminCall(c, kProgram, "POST", ticket_path + "/assign",
                     json::serialize(json::object{{"engineer", options.text}}), PrintChanged);
  }
  for (const auto& [sub, action] : std::vector<std::pair<std::string, std::string>>{
           {"ack", "acknowledge"}, {"resolve", "resolve"}, {"close", "close"}, {"reopen", "reopen"}}) {
    if (command.got_subcommand(sub)) {
      const std::string body = options.text.empty() ? "" : json::serialize(json::object{{"note", options.text}});
      return AdminCall(c, kProgram, "POST", ticket_path + "/" + action, body, PrintChanged);
    }
  }
  return kExitUsage;
}

}  // namespace lifeline::cli

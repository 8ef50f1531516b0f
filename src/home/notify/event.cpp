#include "home/notify/event.h"

#include "common/clock.h"
#include "common/utf8.h"

#include <boost/json.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <cctype>

namespace lifeline::home::notify {
namespace json = boost::json;

namespace {

std::string Time(std::optional<std::int64_t> ms) {
  if (!ms || *ms == 0) {
    return "";
  }
  return FormatRfc3339(std::chrono::system_clock::time_point(std::chrono::milliseconds(*ms)));
}

json::value TimeOrNull(std::optional<std::int64_t> ms) {
  if (!ms || *ms == 0) {
    return nullptr;
  }
  return json::value(Time(ms));
}

/// Slack mrkdwn treats &, < and > as markup (links, mentions); device text must not ping @channel.
std::string SlackEscape(std::string_view text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      default: out += c;
    }
  }
  return out;
}

/// Cut to at most `max_chars` code points (Slack and SMS count characters), ending in "…" when cut.
std::string Cut(std::string_view text, std::size_t max_chars) {
  const std::string clean = CleanUtf8(text, text.size() + 16);
  const std::string_view view(clean);
  std::size_t chars = 0;
  std::size_t keep_bytes = 0;  // the bytes of the first max_chars - 1 characters
  for (std::size_t pos = 0; pos < view.size();) {
    pos += std::max<std::size_t>(1, Utf8SequenceLength(view.substr(pos)));
    ++chars;
    if (chars + 1 == max_chars || (max_chars <= 1 && chars == 1)) {
      keep_bytes = max_chars <= 1 ? 0 : pos;
    }
    if (chars > max_chars) {
      return clean.substr(0, keep_bytes) + "…";
    }
  }
  return clean;
}

std::string Upper(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
  return out;
}

std::string_view Headline(EventKind kind) {
  switch (kind) {
    case EventKind::kOpened: return "opened";
    case EventKind::kReopened: return "reopened";
    case EventKind::kEscalated: return "ESCALATED";
    case EventKind::kReminder: return "still unacknowledged";
    case EventKind::kResolved: return "resolved";
  }
  return "opened";
}

}  // namespace

std::string_view ToString(EventKind kind) {
  switch (kind) {
    case EventKind::kOpened: return "opened";
    case EventKind::kReopened: return "reopened";
    case EventKind::kEscalated: return "escalated";
    case EventKind::kReminder: return "reminder";
    case EventKind::kResolved: return "resolved";
  }
  return "opened";
}

TicketEvent EventFromTicket(const store::Ticket& ticket, EventKind kind, std::int64_t event_ms,
                            int escalation_level) {
  return TicketEvent{.kind = kind,
                     .ticket_number = ticket.number,
                     .ticket_state = std::string(store::ToString(ticket.state)),
                     .device = ticket.device,
                     .code = ticket.code,
                     .severity = ticket.severity,
                     .text = ticket.text,
                     .first_seen_ms = ticket.first_seen_ms,
                     .last_seen_ms = ticket.last_seen_ms,
                     .resolved_at_ms = ticket.resolved_at_ms,
                     .occurrences = ticket.occurrences,
                     .event_ms = event_ms,
                     .escalation_level = escalation_level};
}

std::string OneLine(std::string_view text, std::size_t max_chars) {
  std::string flat;
  flat.reserve(text.size());
  bool space = false;
  for (char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f || c == ' ') {
      space = !flat.empty();
      continue;
    }
    if (space) {
      flat += ' ';
      space = false;
    }
    flat += c;
  }
  return Cut(flat, std::max<std::size_t>(max_chars, 1));
}

std::string GenericJson(const TicketEvent& e) {
  json::object body{
      {"version", 1},
      {"event", ToString(e.kind)},
      {"event_time", Time(e.event_ms)},
      {"escalation_level", e.escalation_level},
      {"ticket",
       {{"number", e.ticket_number},
        {"state", e.ticket_state},
        {"code", e.code},
        {"severity", protocol::ToString(e.severity)},
        {"text", CleanUtf8(e.text, 16 * 1024)},
        {"first_seen", TimeOrNull(e.first_seen_ms)},
        {"last_seen", TimeOrNull(e.last_seen_ms)},
        {"resolved_at", TimeOrNull(e.resolved_at_ms)},
        {"occurrences", e.occurrences}}},
      {"device",
       {{"customer", e.device.customer},
        {"site", e.device.site},
        {"serial", e.device.serial},
        {"model", e.device.model}}}};
  return json::serialize(body);
}

std::string SlackJson(const TicketEvent& e) {
  const std::string title =
      fmt::format("{} {} {}: {} on {}", e.ticket_number, Headline(e.kind),
                  protocol::ToString(e.severity), e.code, e.device.Key());
  auto field = [](std::string_view label, std::string_view value) {
    return json::object{{"type", "mrkdwn"},
                        {"text", fmt::format("*{}*\n{}", label,
                                             Cut(SlackEscape(value.empty() ? "-" : value), 1900))}};
  };
  json::array fields{field("Customer", e.device.customer),
                     field("Site", e.device.site),
                     field("Serial", e.device.serial),
                     field("Model", e.device.model),
                     field("Code", e.code),
                     field("Severity", protocol::ToString(e.severity))};
  std::string context = fmt::format("Ticket {} is {} · first seen {} · {} occurrence{}",
                                    e.ticket_number, e.ticket_state, Time(e.first_seen_ms),
                                    e.occurrences, e.occurrences == 1 ? "" : "s");
  if (e.escalation_level > 0) {
    context += fmt::format(" · escalation level {}", e.escalation_level);
  }
  json::array blocks{
      json::object{{"type", "header"},
                   {"text", {{"type", "plain_text"}, {"text", Cut(title, 150)}}}},
      json::object{{"type", "section"}, {"fields", std::move(fields)}},
      json::object{{"type", "section"},
                   {"text",
                    {{"type", "mrkdwn"},
                     {"text", Cut(SlackEscape(e.text.empty() ? "(no text)" : e.text), 2900)}}}},
      json::object{{"type", "context"},
                   {"elements", json::array{json::object{{"type", "mrkdwn"},
                                                         {"text", SlackEscape(context)}}}}}};
  json::object body{{"text", SlackEscape(Cut(title + ": " + OneLine(e.text, 300), 3000))},
                    {"blocks", std::move(blocks)}};
  return json::serialize(body);
}

std::string SmsText(const TicketEvent& e, std::size_t max_chars) {
  std::string prefix = e.ticket_number;
  if (e.kind != EventKind::kOpened) {
    prefix += " " + std::string(ToString(e.kind));
  }
  return OneLine(fmt::format("{} {} {} {}: {}", prefix, Upper(protocol::ToString(e.severity)),
                             e.code, e.device.Key(), e.text),
                 max_chars);
}

std::string EmailSubject(const TicketEvent& e) {
  std::string what;
  if (e.kind != EventKind::kOpened) {
    what = std::string(ToString(e.kind)) + ": ";
  }
  return OneLine(fmt::format("[Lifeline {}] {}{} {} on {}", e.ticket_number, what,
                             protocol::ToString(e.severity), e.code, e.device.Key()),
                 400);
}

std::string EmailBody(const TicketEvent& e) {
  std::string body;
  auto line = [&body](std::string_view label, std::string_view value) {
    body += fmt::format("{:<15}{}\n", label, value);
  };
  switch (e.kind) {
    case EventKind::kOpened:
      body += fmt::format("Lifeline opened ticket {} for an alert from {}.\n\n", e.ticket_number,
                          e.device.Key());
      break;
    case EventKind::kReopened:
      body += fmt::format("Ticket {} was resolved and has come back on {}.\n\n", e.ticket_number,
                          e.device.Key());
      break;
    case EventKind::kEscalated:
      body += fmt::format(
          "Ticket {} has not been acknowledged in time and is escalated to level {}.\n\n",
          e.ticket_number, e.escalation_level);
      break;
    case EventKind::kReminder:
      body += fmt::format("Ticket {} is still open and not acknowledged.\n\n", e.ticket_number);
      break;
    case EventKind::kResolved:
      body += fmt::format("Ticket {} is resolved.\n\n", e.ticket_number);
      break;
  }
  line("Customer:", e.device.customer);
  line("Site:", e.device.site);
  line("Serial:", e.device.serial);
  line("Model:", e.device.model.empty() ? "(unknown)" : e.device.model);
  body += "\n";
  line("Alert code:", e.code);
  line("Severity:", protocol::ToString(e.severity));
  line("Message:", CleanUtf8(e.text, 16 * 1024));
  line("First seen:", Time(e.first_seen_ms));
  line("Last seen:", Time(e.last_seen_ms));
  line("Occurrences:", std::to_string(e.occurrences));
  if (e.resolved_at_ms) {
    line("Resolved:", Time(e.resolved_at_ms));
  }
  body += "\n";
  line("Ticket:", fmt::format("{} ({})", e.ticket_number, e.ticket_state));
  return body;
}

}  // namespace lifeline::home::notify

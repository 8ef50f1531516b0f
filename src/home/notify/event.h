#pragma once
// What a notification is about: one ticket event, and the texts each channel carries for it. The
// texts are rendered when the outbox row is written, so the row shows exactly what went out and a
// retry days later still describes the ticket as it was when the event happened.
#include "protocol/message.h"
#include "store/home_store.h"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace lifeline::home::notify {

enum class EventKind {
  kOpened,     // a new ticket
  kReopened,   // a resolved ticket came back (a new episode: escalation starts over)
  kEscalated,  // not acknowledged in time: the next escalation level is told
  kReminder,   // still not acknowledged: the repeat interval passed
  kResolved,   // the device cleared the alert (or an engineer closed the ticket)
};
std::string_view ToString(EventKind kind);  // "opened", "reopened", "escalated", "reminder", "resolved"

struct TicketEvent {
  EventKind kind = EventKind::kOpened;
  std::string ticket_number;             // "LL-000042"
  std::string ticket_state = "open";     // store::ToString(TicketState)
  protocol::DeviceIdentity device;       // customer, site, serial, model
  std::string code;
  protocol::Severity severity = protocol::Severity::kError;
  std::string text;
  std::int64_t first_seen_ms = 0;
  std::int64_t last_seen_ms = 0;
  std::optional<std::int64_t> resolved_at_ms;
  std::int64_t occurrences = 0;
  std::int64_t event_ms = 0;             // when the event happened (home clock)
  int escalation_level = 0;              // 0: the first notification; k: escalation level k
};

/// The event for `ticket`, happening at `event_ms`.
TicketEvent EventFromTicket(const store::Ticket& ticket, EventKind kind, std::int64_t event_ms,
                            int escalation_level = 0);

/// The generic webhook body: one JSON object (see docs/notifications.md for its fields).
std::string GenericJson(const TicketEvent& event);
/// A Slack-compatible body: {"text": fallback, "blocks": [header, fields, text, context]}. Text
/// from devices is escaped for Slack's mrkdwn (&, <, >) and cut to Slack's per-block limits.
std::string SlackJson(const TicketEvent& event);
/// One line of at most `max_chars` characters (code points) for a text message, e.g.
/// "LL-000042 CRITICAL SIM-3A21 ACME/site-1/SN123: disk failing".
std::string SmsText(const TicketEvent& event, std::size_t max_chars = 160);
/// "[Lifeline LL-000042] escalated: critical SIM-3A21 on ACME/site-1/SN123".
std::string EmailSubject(const TicketEvent& event);
std::string EmailBody(const TicketEvent& event);

/// `text` on one line (control characters become spaces) cut to `max_chars` code points, ending
/// in "…" when cut. Invalid UTF-8 becomes U+FFFD.
std::string OneLine(std::string_view text, std::size_t max_chars);

}  // namespace lifeline::home::notify

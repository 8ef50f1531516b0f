#pragma once
// Escalation: who is told when a ticket stays unacknowledged. Level 0 is the notification when the
// ticket opens (or reopens); level k (1, 2, ...) is due `after` that moment unless someone has
// acknowledged the ticket. While it stays open and unacknowledged, the highest level reached is
// reminded every `repeat`. A pure function computes what is due, so a periodic job, a restart or a
// fake clock in a test all see the same answer from the same stored facts.
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace lifeline::home::notify {

struct EscalationLevel {
  std::chrono::seconds after{0};    // since the ticket opened or reopened
  std::vector<std::string> groups;  // empty: the groups the ticket was routed to
  bool everyone = false;            // every member of a rotation group, not only the on-call one
};

struct EscalationPolicy {
  /// Levels 1..n in order of strictly increasing `after` (level 0 is implicit: at open, the
  /// routed groups). levels[0] is level 1.
  std::vector<EscalationLevel> levels;
  std::chrono::seconds repeat{0};  // 0: no reminders
};

/// What the store knows about one ticket's current episode.
struct TicketProgress {
  std::int64_t opened_ms = 0;  // opened, or reopened: the start of this episode
  bool open = true;
  bool acknowledged = false;
  /// Level -> when it was last notified (first time or reminder). Entries older than opened_ms
  /// belong to an earlier episode and are ignored.
  std::map<int, std::int64_t> last_sent_ms;
};

struct DueEscalation {
  int level = 0;
  bool reminder = false;  // a repeat of a level already notified in this episode
  friend bool operator==(const DueEscalation&, const DueEscalation&) = default;
};

/// The notifications due at `now_ms`, lowest level first: every level reached but not yet
/// notified in this episode (a job that was down catches up on all of them), or else a reminder
/// for the highest level notified when `repeat` has passed since it was last notified. Nothing for
/// a closed or acknowledged ticket. The caller sends them and records each level's time.
std::vector<DueEscalation> DueEscalations(const EscalationPolicy& policy,
                                          const TicketProgress& ticket, std::int64_t now_ms);

/// The earliest time after `now_ms` at which DueEscalations could return something new, assuming
/// what is due now gets sent now; nullopt when nothing more will ever be due. Lets a periodic job
/// sleep until then.
std::optional<std::int64_t> NextEscalationCheck(const EscalationPolicy& policy,
                                                const TicketProgress& ticket, std::int64_t now_ms);

}  // namespace lifeline::home::notify

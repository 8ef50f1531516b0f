#include "home/notify/escalation.h"

#include <algorithm>

namespace lifeline::home::notify {

namespace {

std::int64_t Ms(std::chrono::seconds s) { return s.count() * 1000; }

/// When level `level` becomes due (level 0: at open).
std::int64_t DueAt(const EscalationPolicy& policy, const TicketProgress& ticket, int level) {
  return ticket.opened_ms + (level == 0 ? 0 : Ms(policy.levels[level - 1].after));
}

std::optional<std::int64_t> SentThisEpisode(const TicketProgress& ticket, int level) {
  auto it = ticket.last_sent_ms.find(level);
  if (it == ticket.last_sent_ms.end() || it->second < ticket.opened_ms) {
    return std::nullopt;
  }
  return it->second;
}

}  // namespace

std::vector<DueEscalation> DueEscalations(const EscalationPolicy& policy,
                                          const TicketProgress& ticket, std::int64_t now_ms) {
  std::vector<DueEscalation> due;
  if (!ticket.open || ticket.acknowledged) {
    return due;
  }
  const int top = static_cast<int>(policy.levels.size());
  int highest_sent = -1;
  for (int level = 0; level <= top; ++level) {
    if (DueAt(policy, ticket, level) > now_ms) {
      break;
    }
    if (SentThisEpisode(ticket, level)) {
      highest_sent = level;
    } else {
      due.push_back({level, false});
    }
  }
  if (!due.empty() || highest_sent < 0 || policy.repeat.count() <= 0) {
    return due;
  }
  if (now_ms >= *SentThisEpisode(ticket, highest_sent) + Ms(policy.repeat)) {
    due.push_back({highest_sent, true});
  }
  return due;
}

std::optional<std::int64_t> NextEscalationCheck(const EscalationPolicy& policy,
                                                const TicketProgress& ticket, std::int64_t now_ms) {
  if (!ticket.open || ticket.acknowledged) {
    return std::nullopt;
  }
  const int top = static_cast<int>(policy.levels.size());
  std::optional<std::int64_t> next;
  int highest_reached = -1;
  for (int level = 0; level <= top; ++level) {
    const std::int64_t at = DueAt(policy, ticket, level);
    if (at > now_ms) {
      next = at;
      break;
    }
    highest_reached = level;
  }
  if (policy.repeat.count() > 0 && highest_reached >= 0) {
    // What is due now is sent now; the highest level reached then repeats from its last time.
    const auto last = SentThisEpisode(ticket, highest_reached);
    const std::int64_t reminder =
        (last && *last + Ms(policy.repeat) > now_ms ? *last : now_ms) + Ms(policy.repeat);
    next = next ? std::min(*next, reminder) : reminder;
  }
  return next;
}

}  // namespace lifeline::home::notify

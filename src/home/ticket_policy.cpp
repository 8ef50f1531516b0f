#include "home/ticket_policy.h"

#include "common/config.h"
#include "home/notify/routing.h"

#include <fmt/format.h>

namespace lifeline::home {
namespace {

constexpr std::string_view kPlaceholders[] = {"{device}", "{site}", "{customer}", "{serial}", "{model}", "{code}"};

std::string Expand(std::string_view key, const protocol::DeviceIdentity& d, std::string_view code) {
  std::string out;
  out.reserve(key.size() + 64);
  for (std::size_t i = 0; i < key.size();) {
    auto replace = [&](std::string_view name, std::string_view value) {
      if (key.substr(i, name.size()) == name) {
        out += value;
        i += name.size();
        return true;
      }
      return false;
    };
    if (key[i] == '{' && (replace("{device}", d.Key()) || replace("{site}", d.customer + "/" + d.site) ||
                          replace("{customer}", d.customer) || replace("{serial}", d.serial) ||
                          replace("{model}", d.model) || replace("{code}", code))) {
      continue;
    }
    out += key[i++];
  }
  return out;
}

}  // namespace

void CheckDedupRules(const std::vector<DedupRule>& rules, const std::string& origin) {
  for (std::size_t i = 0; i < rules.size(); ++i) {
    const auto fail = [&](std::string_view field, const std::string& why) {
      throw config::ConfigError(fmt::format("{}: key 'tickets.dedup[{}].{}': {}", origin, i, field, why));
    };
    const std::string& key = rules[i].key;
    if (rules[i].code.empty()) {
      fail("code", "must not be empty (\"*\" matches every code)");
    }
    // Every '{' must open a known placeholder: a typo would otherwise key on literal text.
    for (std::size_t at = key.find('{'); at != std::string::npos; at = key.find('{', at + 1)) {
      bool known = false;
      for (auto name : kPlaceholders) {
        known = known || key.compare(at, name.size(), name) == 0;
      }
      if (!known) {
        fail("key", fmt::format("unknown placeholder at '{}' (known: {{device}}, {{site}}, {{customer}}, "
                                "{{serial}}, {{model}}, {{code}})",
                                key.substr(at)));
      }
    }
    if (key.find("{device}") == std::string::npos && key.find("{site}") == std::string::npos &&
        key.find("{customer}") == std::string::npos) {
      fail("key", "must contain {device}, {site} or {customer}: a ticket never spans customers");
    }
  }
}

std::string DedupKey(const std::vector<DedupRule>& rules, const protocol::DeviceIdentity& device,
                     std::string_view code) {
  for (const auto& rule : rules) {
    if (notify::GlobMatch(rule.code, code)) {
      return Expand(rule.key, device, code);
    }
  }
  return Expand(kDefaultDedupKey, device, code);
}

notify::EventKind ToEventKind(store::TicketEventKind kind) {
  switch (kind) {
    case store::TicketEventKind::kOpened:
      return notify::EventKind::kOpened;
    case store::TicketEventKind::kReopened:
      return notify::EventKind::kReopened;
    case store::TicketEventKind::kEscalated:
      return notify::EventKind::kEscalated;
    case store::TicketEventKind::kReminder:
      return notify::EventKind::kReminder;
    case store::TicketEventKind::kResolved:
      return notify::EventKind::kResolved;
  }
  return notify::EventKind::kOpened;
}

std::vector<store::OutboxRow> TicketEventPlanner::Plan(const store::Ticket& ticket, store::TicketEventKind kind,
                                                       int level, std::int64_t now_ms) const {
  const auto event = notify::EventFromTicket(ticket, ToEventKind(kind), now_ms, level);
  std::vector<store::OutboxRow> rows;
  for (auto& d : plan_.Plan(event, notify::TimePoint(std::chrono::milliseconds(now_ms)))) {
    rows.push_back({std::move(d.kind), std::move(d.recipient), std::move(d.subject), std::move(d.body)});
  }
  return rows;
}

store::NotifyPlanner TicketEventPlanner::AsPlanner() const {
  return [this](const store::Ticket& ticket, store::TicketEventKind kind, int level, std::int64_t now_ms) {
    return Plan(ticket, kind, level, now_ms);
  };
}

}  // namespace lifeline::home

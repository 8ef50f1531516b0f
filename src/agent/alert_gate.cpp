#include "agent/alert_gate.h"

#include <algorithm>
#include <vector>

namespace lifeline::agent {

AlertGate::AlertGate(const Clock& clock, std::size_t max_keys) : clock_(clock), max_keys_(std::max<std::size_t>(max_keys, 1)) {}

AlertGate::Entry& AlertGate::Get(const std::string& key) {
  auto found = entries_.find(key);
  if (found != entries_.end()) {
    return found->second;
  }
  if (entries_.size() >= max_keys_) {
    Prune();
  }
  return entries_[key];
}

void AlertGate::Prune() {
  // Codes built from capture groups can be endless (one per request id...): forget the least recently
  // seen conditions that are not alerted first. Forgetting one costs at most an extra clear later.
  std::vector<std::pair<std::int64_t, std::string>> candidates;
  for (const auto& [key, entry] : entries_) {
    candidates.emplace_back(entry.state == State::kAlerted ? entry.last_ms + (std::int64_t{1} << 60) : entry.last_ms,
                            key);
  }
  std::sort(candidates.begin(), candidates.end());
  const std::size_t drop = std::max<std::size_t>(entries_.size() / 4, 1);
  for (std::size_t i = 0; i < drop && i < candidates.size(); ++i) {
    entries_.erase(candidates[i].second);
  }
}

bool AlertGate::Admit(const std::string& key, const GateOptions& options) {
  const std::int64_t now = clock_.NowUnixMillis();
  const std::int64_t window_ms = std::chrono::duration_cast<std::chrono::milliseconds>(options.window).count();
  Entry& entry = Get(key);
  entry.last_ms = now;
  const auto expire = [&](std::deque<std::int64_t>& times) {
    while (!times.empty() && times.front() <= now - window_ms) {
      times.pop_front();
    }
  };
  expire(entry.occurrences_ms);
  expire(entry.sent_ms);
  entry.occurrences_ms.push_back(now);
  const auto needed = static_cast<std::size_t>(std::max<std::int64_t>(options.min_count, 1));
  while (entry.occurrences_ms.size() > needed) {
    entry.occurrences_ms.pop_front();  // only whether min_count were seen in the window matters
  }
  if (entry.occurrences_ms.size() < needed) {
    ++below_count_;
    return false;
  }
  if (options.max_per_window > 0 && entry.sent_ms.size() >= static_cast<std::size_t>(options.max_per_window)) {
    ++over_cap_;
    return false;
  }
  entry.sent_ms.push_back(now);
  return true;
}

void AlertGate::MarkAlerted(const std::string& key) { Get(key).state = State::kAlerted; }

bool AlertGate::ShouldClear(const std::string& key) const {
  const auto found = entries_.find(key);
  return found == entries_.end() || found->second.state != State::kClear;
}

void AlertGate::MarkCleared(const std::string& key) {
  Entry& entry = Get(key);
  entry.state = State::kClear;
  entry.occurrences_ms.clear();  // the cap's window is kept: a flapping condition stays capped
  entry.last_ms = clock_.NowUnixMillis();
}

void AlertGate::ResetCount(const std::string& key) {
  if (auto found = entries_.find(key); found != entries_.end()) {
    found->second.occurrences_ms.clear();
  }
}

bool AlertGate::IsAlerted(const std::string& key) const {
  const auto found = entries_.find(key);
  return found != entries_.end() && found->second.state == State::kAlerted;
}

std::optional<protocol::Message> GateMatch(AlertGate& gate, const RuleMatch& match, const LogRule& rule,
                                           const GateOptions& options, std::int64_t now_ms) {
  const std::string key = rule.name + "\n" + match.alert.code;
  protocol::Message draft;
  draft.timestamp_ms = now_ms;
  draft.alert = match.alert;
  if (match.clear) {
    if (!gate.ShouldClear(key)) {
      return std::nullopt;
    }
    gate.MarkCleared(key);
    draft.type = protocol::MessageType::kClear;
    return draft;
  }
  if (!gate.Admit(key, options)) {
    return std::nullopt;
  }
  gate.MarkAlerted(key);
  draft.type = protocol::MessageType::kAlert;
  return draft;
}

}  // namespace lifeline::agent

#include "home/notify/oncall.h"

#include <array>
#include <cctype>
#include <charconv>

namespace lifeline::home::notify {

namespace {

using namespace std::chrono;

/// Parses exactly `digits` decimal digits at `pos`.
std::optional<int> Digits(std::string_view text, std::size_t pos, std::size_t digits) {
  if (pos + digits > text.size()) {
    return std::nullopt;
  }
  int value = 0;
  for (std::size_t i = pos; i < pos + digits; ++i) {
    if (text[i] < '0' || text[i] > '9') {
      return std::nullopt;
    }
    value = value * 10 + (text[i] - '0');
  }
  return value;
}

/// Floor division for possibly negative durations: turn -1 is the shift before the anchor.
std::int64_t FloorDiv(std::int64_t a, std::int64_t b) {
  const std::int64_t q = a / b;
  return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

}  // namespace

Rotation::Rotation(RotationSettings settings) : settings_(std::move(settings)) {
  sys_days day = settings_.start;
  if (settings_.handover_weekday) {
    // weekday::c_encoding: Sunday = 0; ours: Monday = 0.
    const unsigned wanted = static_cast<unsigned>((*settings_.handover_weekday + 1) % 7);
    while (weekday(day).c_encoding() != wanted) {
      day += days(1);
    }
  }
  anchor_ = TimePoint(day) + settings_.handover_time - settings_.utc_offset;
}

std::size_t Rotation::TurnAt(TimePoint t) const {
  const std::int64_t elapsed = duration_cast<milliseconds>(t - anchor_).count();
  const std::int64_t period = duration_cast<milliseconds>(settings_.period).count();
  const std::int64_t turn = FloorDiv(elapsed, period);
  const auto n = static_cast<std::int64_t>(settings_.engineers.size());
  return static_cast<std::size_t>(((turn % n) + n) % n);
}

const std::string& Rotation::OnCallAt(TimePoint t) const {
  for (const auto& o : settings_.overrides) {
    if (o.from <= t && t < o.until) {
      return o.engineer;
    }
  }
  return settings_.engineers[TurnAt(t)];
}

TimePoint Rotation::NextHandover(TimePoint t) const {
  const std::int64_t elapsed = duration_cast<milliseconds>(t - anchor_).count();
  const std::int64_t period = duration_cast<milliseconds>(settings_.period).count();
  return anchor_ + milliseconds((FloorDiv(elapsed, period) + 1) * period);
}

std::optional<minutes> ParseTimeOfDay(std::string_view text) {
  const std::size_t colon = text.find(':');
  if (colon == std::string_view::npos || colon == 0 || colon > 2 || text.size() != colon + 3) {
    return std::nullopt;
  }
  auto hours = Digits(text, 0, colon);
  auto mins = Digits(text, colon + 1, 2);
  if (!hours || !mins || *hours > 23 || *mins > 59) {
    return std::nullopt;
  }
  return minutes(*hours * 60 + *mins);
}

std::optional<minutes> ParseUtcOffset(std::string_view text) {
  if (text == "UTC" || text == "utc" || text == "Z" || text == "z") {
    return minutes(0);
  }
  if (text.size() < 5 || (text[0] != '+' && text[0] != '-')) {
    return std::nullopt;
  }
  const std::size_t minute_pos = text[3] == ':' ? 4 : 3;
  if (text.size() != minute_pos + 2) {
    return std::nullopt;
  }
  auto hours = Digits(text, 1, 2);
  auto mins = Digits(text, minute_pos, 2);
  if (!hours || !mins || *hours > 18 || *mins > 59) {
    return std::nullopt;
  }
  const minutes offset(*hours * 60 + *mins);
  return text[0] == '-' ? -offset : offset;
}

std::optional<int> ParseWeekday(std::string_view text) {
  static constexpr std::array<std::string_view, 7> kNames = {
      "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"};
  std::string lower;
  for (char c : text) {
    lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  for (int i = 0; i < 7; ++i) {
    if (lower == kNames[i] || (lower.size() == 3 && kNames[i].starts_with(lower))) {
      return i;
    }
  }
  return std::nullopt;
}

std::optional<sys_days> ParseDate(std::string_view text) {
  if (text.size() != 10 || text[4] != '-' || text[7] != '-') {
    return std::nullopt;
  }
  auto y = Digits(text, 0, 4);
  auto m = Digits(text, 5, 2);
  auto d = Digits(text, 8, 2);
  if (!y || !m || !d) {
    return std::nullopt;
  }
  const year_month_day date{year(*y), month(static_cast<unsigned>(*m)),
                            day(static_cast<unsigned>(*d))};
  if (!date.ok()) {
    return std::nullopt;
  }
  return sys_days(date);
}

std::optional<TimePoint> ParseDateTime(std::string_view text, minutes default_offset) {
  if (text.size() < 16 || (text[10] != 'T' && text[10] != 't' && text[10] != ' ')) {
    return std::nullopt;
  }
  auto date = ParseDate(text.substr(0, 10));
  auto time = ParseTimeOfDay(text.substr(11, 5));
  if (!date || !time) {
    return std::nullopt;
  }
  std::string_view rest = text.substr(16);
  seconds secs(0);
  if (rest.size() >= 3 && rest[0] == ':') {
    auto s = Digits(rest, 1, 2);
    if (!s || *s > 59) {
      return std::nullopt;
    }
    secs = seconds(*s);
    rest.remove_prefix(3);
  }
  minutes offset = default_offset;
  if (!rest.empty()) {
    auto parsed = ParseUtcOffset(rest);
    if (!parsed) {
      return std::nullopt;
    }
    offset = *parsed;
  }
  return TimePoint(*date) + *time + secs - offset;
}

}  // namespace lifeline::home::notify

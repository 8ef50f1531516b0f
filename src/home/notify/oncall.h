#pragma once
// On-call rotation: an ordered list of engineers taking turns for a fixed period (a week, a day,
// twelve hours), handing over at a time of day (and weekday) in UTC or a fixed offset from it, with
// optional overrides (a swap, a holiday cover). Fixed offsets rather than time-zone names: the
// hand-over instant then never moves with daylight saving, which engineers plan around anyway.
#include "common/result.h"

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace lifeline::home::notify {

using TimePoint = std::chrono::system_clock::time_point;

struct RotationOverride {
  std::string engineer;
  TimePoint from;   // inclusive
  TimePoint until;  // exclusive
};

struct RotationSettings {
  std::string name;
  std::vector<std::string> engineers;  // in turn order; engineers[0] has the first shift
  std::chrono::seconds period = std::chrono::hours(24 * 7);
  std::chrono::minutes handover_time{9 * 60};  // local time of day
  /// 0 = Monday ... 6 = Sunday; nullopt: the start date's own weekday.
  std::optional<int> handover_weekday = 0;
  std::chrono::minutes utc_offset{0};  // local = UTC + offset
  /// The local date from which turns are counted: engineers[0] takes over at the first hand-over
  /// (handover_weekday, handover_time) on or after it.
  std::chrono::sys_days start = std::chrono::sys_days(std::chrono::year{2024} / 1 / 1);
  std::vector<RotationOverride> overrides;  // the first one covering a time wins
};

class Rotation {
 public:
  /// Precondition: at least one engineer and a positive period (checked when config is compiled).
  explicit Rotation(RotationSettings settings);

  /// Who is on call at `t`: an override covering t, else the engineer whose turn it is. Turns
  /// before the first hand-over count backwards, so every time has someone.
  const std::string& OnCallAt(TimePoint t) const;
  /// The regular (override-free) turn at `t`: index into engineers.
  std::size_t TurnAt(TimePoint t) const;
  /// The first regular hand-over strictly after `t`.
  TimePoint NextHandover(TimePoint t) const;
  /// engineers[0]'s first hand-over instant (UTC).
  TimePoint anchor() const { return anchor_; }
  const RotationSettings& settings() const { return settings_; }

 private:
  RotationSettings settings_;
  TimePoint anchor_;
};

/// "09:00" or "9:30" → minutes after midnight.
std::optional<std::chrono::minutes> ParseTimeOfDay(std::string_view text);
/// "UTC", "Z", "+02:00", "-05:30", "+0100" → offset from UTC.
std::optional<std::chrono::minutes> ParseUtcOffset(std::string_view text);
/// "monday" ... "sunday" (or "mon" ... "sun"), case-insensitive → 0 ... 6.
std::optional<int> ParseWeekday(std::string_view text);
/// "2026-01-05" → that date.
std::optional<std::chrono::sys_days> ParseDate(std::string_view text);
/// "2026-03-01T09:00", "2026-03-01 09:00:30", with "Z" or "+01:00" at the end, or without a zone
/// (then `default_offset` applies) → the UTC instant.
std::optional<TimePoint> ParseDateTime(std::string_view text, std::chrono::minutes default_offset);

}  // namespace lifeline::home::notify

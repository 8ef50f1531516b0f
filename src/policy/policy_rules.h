#pragma once
// The policy model and the decision engine (issue 6, docs/policy.md "Policies and decisions").
// Pure: no I/O, no threads, no clock reads; the time of a request is a parameter. The policy manager
// decides with it for its API, the gateway decides with it from its cache on every session and
// connection, so CompiledPolicy::Decide is indexed and allocates only the reason string.
#include "common/result.h"

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace lifeline::policy {

using TimePoint = std::chrono::system_clock::time_point;

enum class Activity {
  kRemoteSession = 0,  // per application (ssh, https, ...)
  kFileTransfer,
  kConnectHome,  // a connect-home upload
  kScriptExecution,
  kConfigurationChange,
};
inline constexpr int kActivityCount = 5;

/// What a rule says.
enum class Action { kAlwaysAllow, kNeverAllow, kAskForApproval };
/// What a decision says.
enum class Verdict { kAllow, kDeny, kAsk };

/// Where a rule applies; the order is the precedence (a device rule beats a group rule, ...).
enum class ScopeKind { kDevice = 0, kGroup, kModel, kSite };

struct Scope {
  ScopeKind kind = ScopeKind::kSite;
  std::string name;  // serial, group name or model; empty for kSite
  bool operator==(const Scope&) const = default;
};

/// Ask for Approval waits this long for an approver, then denies.
inline constexpr std::chrono::seconds kDefaultAskTimeout{15 * 60};
// Short timeouts serve drills and tests (an approval flow in seconds); production rules use minutes.
inline constexpr std::chrono::seconds kMinAskTimeout{5};
inline constexpr std::chrono::seconds kMaxAskTimeout{24 * 60 * 60};
/// Time-boxed grants: at most 48 h (Pure's Remote Assist windows are 4 to 48 h; shorter is allowed).
inline constexpr std::chrono::seconds kMaxGrantDuration{48 * 60 * 60};
inline constexpr std::chrono::seconds kMinGrantDuration{60};
inline constexpr std::size_t kMaxNameBytes = 128;

/// A weekly time-of-day window in local time at a fixed UTC offset. `days` is a bit set, bit 0 =
/// Monday ... bit 6 = Sunday, naming the day the window opens: Fri 22:00-06:00 runs from Friday 22:00
/// to Saturday 06:00. from > to crosses midnight; from 00:00 to 24:00 is the whole day.
struct TimeWindow {
  std::uint8_t days = 0x7f;
  int from_minute = 0;       // minutes after local midnight, [0, 1439]
  int to_minute = 24 * 60;   // [1, 1440], != from_minute
  int utc_offset_minutes = 0;  // local = UTC + offset, [-14 h, +14 h]
  bool operator==(const TimeWindow&) const = default;
};
inline constexpr std::uint8_t kMonday = 1, kTuesday = 2, kWednesday = 4, kThursday = 8, kFriday = 16,
                              kSaturday = 32, kSunday = 64, kWeekdays = 31, kEveryDay = 127;

/// Whether `t` lies inside the window.
bool InWindow(const TimeWindow& window, TimePoint t);

struct Rule {
  std::int64_t id = 0;  // > 0, unique in the set
  Activity activity = Activity::kRemoteSession;
  std::string application;  // remote sessions only; empty = any application
  Scope scope;
  Action action = Action::kNeverAllow;
  std::chrono::seconds ask_timeout = kDefaultAskTimeout;  // used by kAskForApproval
  /// Empty: always. Otherwise the rule matches only inside one of them; outside, it does not match
  /// and a less specific rule decides.
  std::vector<TimeWindow> windows;
  std::string description;
  bool operator==(const Rule&) const = default;
};

/// Allow an engineer (or any engineer) on a device, group, model or the whole site from `starts_at` to
/// `ends_at`. It turns Ask for Approval into Allow; Never Allow (and "no policy") only when
/// `overrides_never_allow` says so.
struct Grant {
  std::int64_t id = 0;  // > 0, unique among grants
  std::string engineer;  // empty = any engineer
  Scope scope;
  std::vector<Activity> activities = {Activity::kRemoteSession};  // not empty
  std::string application;  // remote sessions only; empty = any application
  TimePoint starts_at;
  TimePoint ends_at;  // exclusive; ends_at - starts_at in [kMinGrantDuration, kMaxGrantDuration]
  bool overrides_never_allow = false;
  std::string granted_by;
  std::string reason;
  bool operator==(const Grant&) const = default;
};

struct DeviceGroup {
  std::string name;
  std::vector<std::string> serials;
  bool operator==(const DeviceGroup&) const = default;
};

/// Everything a gateway needs to decide. The policy manager raises `version` on every change; a
/// gateway keeps the set with the highest version it has seen.
struct PolicySet {
  std::uint64_t version = 0;
  std::vector<DeviceGroup> groups;
  std::vector<Rule> rules;
  std::vector<Grant> grants;
  bool operator==(const PolicySet&) const = default;
};

struct DecisionRequest {
  Activity activity = Activity::kRemoteSession;
  std::string application;  // remote sessions: the application asked for
  std::string device_serial;
  std::string device_model;
  std::string engineer;
  TimePoint time;
};

enum class DecidedBy { kRule, kGrant, kNoPolicy };

struct Decision {
  Verdict verdict = Verdict::kDeny;
  std::chrono::seconds ask_timeout{0};  // kAsk only
  DecidedBy decided_by = DecidedBy::kNoPolicy;
  std::int64_t rule_id = 0;   // the rule that matched (also when a grant then decided), 0 if none
  std::int64_t grant_id = 0;  // kGrant only
  std::optional<TimePoint> grant_ends_at;  // kGrant: the allowance ends then
  /// For operators and the audit log, e.g. "rule 7 (device SN41000, ssh): Ask for Approval".
  std::string reason;
  bool operator==(const Decision&) const = default;
};

enum class PolicyError {
  kDuplicateId = 1,
  kUnknownGroup,
  kBadScope,
  kBadApplication,
  kBadWindow,
  kBadAskTimeout,
  kGrantTooLong,
  kBadGrant,
  kBadGroup,
  kMalformed,  // JSON form unreadable
};
const std::error_category& PolicyErrorCategory();
inline std::error_code make_error_code(PolicyError e) {
  return {static_cast<int>(e), PolicyErrorCategory()};
}

struct Problem {
  PolicyError error;
  std::string message;  // names the rule, grant or group, e.g. "rule 7: unknown group 'racks'"
};
/// Every problem of the set, in rule/grant/group order; empty when the set is valid.
std::vector<Problem> Validate(const PolicySet& set);

/// Decide by scanning every rule and grant. The reference the index is checked against, and fine for
/// one-off decisions on the policy manager; the gateway uses CompiledPolicy.
Decision Decide(const PolicySet& set, const DecisionRequest& request);

/// A validated PolicySet with its lookup index: devices, groups and models to their rules, per
/// activity, in precedence order. Immutable after Compile, so it may be shared between threads.
class CompiledPolicy {
 public:
  /// Fails with the first problem's code; `why` (if given) gets every problem, "; "-separated.
  [[nodiscard]] static Result<std::shared_ptr<const CompiledPolicy>> Compile(PolicySet set,
                                                                             std::string* why);
  Decision Decide(const DecisionRequest& request) const;
  const PolicySet& set() const { return set_; }
  std::uint64_t version() const { return set_.version; }

  struct Index;
  ~CompiledPolicy();
  CompiledPolicy(const CompiledPolicy&) = delete;
  CompiledPolicy& operator=(const CompiledPolicy&) = delete;

 private:
  explicit CompiledPolicy(PolicySet set);
  PolicySet set_;
  std::unique_ptr<Index> index_;
};

std::string_view WireName(Activity activity);
std::string_view WireName(Action action);
std::string_view WireName(Verdict verdict);
std::string_view WireName(ScopeKind kind);
std::string_view WireName(DecidedBy decided_by);
std::optional<Activity> ParseActivity(std::string_view name);
std::optional<Action> ParseAction(std::string_view name);
std::optional<Verdict> ParseVerdict(std::string_view name);
std::optional<ScopeKind> ParseScopeKind(std::string_view name);
std::optional<DecidedBy> ParseDecidedBy(std::string_view name);
/// "Always Allow", "Never Allow", "Ask for Approval" (the seed's words, used in reasons).
std::string_view DisplayName(Action action);

}  // namespace lifeline::policy

template <>
struct std::is_error_code_enum<lifeline::policy::PolicyError> : std::true_type {};

#include "policy/policy_rules.h"

#include "common/clock.h"

#include <algorithm>
#include <array>
#include <set>
#include <tuple>
#include <unordered_map>
#include <unordered_set>

namespace lifeline::policy {
namespace {

// ---- Names

constexpr std::array<std::string_view, kActivityCount> kActivityWire = {
    "remote_session", "file_transfer", "connect_home", "script_execution", "configuration_change"};
constexpr std::array<std::string_view, kActivityCount> kActivityDisplay = {
    "remote session", "file transfer", "connect-home upload", "script execution",
    "configuration change"};
constexpr std::array<std::string_view, 3> kActionWire = {"always_allow", "never_allow",
                                                         "ask_for_approval"};
constexpr std::array<std::string_view, 3> kActionDisplay = {"Always Allow", "Never Allow",
                                                            "Ask for Approval"};
constexpr std::array<std::string_view, 3> kVerdictWire = {"allow", "deny", "ask"};
constexpr std::array<std::string_view, 4> kScopeWire = {"device", "group", "model", "site"};
constexpr std::array<std::string_view, 3> kDecidedByWire = {"rule", "grant", "no_policy"};

template <class Enum, std::size_t N>
std::optional<Enum> ParseIn(const std::array<std::string_view, N>& names, std::string_view name) {
  for (std::size_t i = 0; i < N; ++i) {
    if (names[i] == name) {
      return static_cast<Enum>(i);
    }
  }
  return std::nullopt;
}

const char* Describe(PolicyError e) {
  switch (e) {
    case PolicyError::kDuplicateId:
      return "duplicate id in the policy set";
    case PolicyError::kUnknownGroup:
      return "a rule or grant names a group the policy set does not define";
    case PolicyError::kBadScope:
      return "invalid rule or grant scope";
    case PolicyError::kBadApplication:
      return "invalid application name";
    case PolicyError::kBadWindow:
      return "invalid time-of-day window";
    case PolicyError::kBadAskTimeout:
      return "Ask for Approval timeout out of bounds";
    case PolicyError::kGrantTooLong:
      return "grant longer than 48 hours";
    case PolicyError::kBadGrant:
      return "invalid grant";
    case PolicyError::kBadGroup:
      return "invalid device group";
    case PolicyError::kMalformed:
      return "malformed policy document";
  }
  return "policy error";
}

// ---- Matching

int Restrictiveness(Action a) {
  switch (a) {
    case Action::kNeverAllow:
      return 2;
    case Action::kAskForApproval:
      return 1;
    case Action::kAlwaysAllow:
      return 0;
  }
  return 2;
}

// Precedence among rules that match a request: narrower scope, then an application-specific rule
// over an any-application one, then a rule with time windows over one without (it was written for
// that time), then the more restrictive action, then the lower id. Smaller key wins.
using RuleKey = std::tuple<int, int, int, int, std::int64_t>;
RuleKey KeyOf(const Rule& r) {
  return {static_cast<int>(r.scope.kind), r.application.empty() ? 1 : 0, r.windows.empty() ? 1 : 0,
          -Restrictiveness(r.action), r.id};
}

bool ApplicationMatches(const std::string& wanted, const DecisionRequest& request) {
  return wanted.empty() ||
         (request.activity == Activity::kRemoteSession && wanted == request.application);
}

bool WindowsMatch(const std::vector<TimeWindow>& windows, TimePoint t) {
  if (windows.empty()) {
    return true;
  }
  return std::any_of(windows.begin(), windows.end(),
                     [t](const TimeWindow& w) { return InWindow(w, t); });
}

bool InGroup(const PolicySet& set, const std::string& group, const std::string& serial) {
  for (const auto& g : set.groups) {
    if (g.name == group) {
      return std::find(g.serials.begin(), g.serials.end(), serial) != g.serials.end();
    }
  }
  return false;
}

bool ScopeCoversLinear(const PolicySet& set, const Scope& scope, const DecisionRequest& request) {
  switch (scope.kind) {
    case ScopeKind::kDevice:
      return scope.name == request.device_serial;
    case ScopeKind::kGroup:
      return InGroup(set, scope.name, request.device_serial);
    case ScopeKind::kModel:
      return scope.name == request.device_model;
    case ScopeKind::kSite:
      return true;
  }
  return false;
}

bool GrantActive(const Grant& g, const DecisionRequest& request) {
  return request.time >= g.starts_at && request.time < g.ends_at &&
         (g.engineer.empty() || g.engineer == request.engineer) &&
         std::find(g.activities.begin(), g.activities.end(), request.activity) !=
             g.activities.end() &&
         ApplicationMatches(g.application, request);
}

// Among grants that apply: narrower scope, then one naming the engineer, then the one that lasts
// longest, then the lower id.
using GrantKey = std::tuple<int, int, std::int64_t, std::int64_t>;
GrantKey KeyOf(const Grant& g) {
  return {static_cast<int>(g.scope.kind), g.engineer.empty() ? 1 : 0,
          -std::chrono::duration_cast<std::chrono::milliseconds>(g.ends_at.time_since_epoch())
               .count(),
          g.id};
}

// ---- Reasons

void AppendScope(std::string& out, const Scope& scope) {
  if (scope.kind == ScopeKind::kSite) {
    out += "site default";
    return;
  }
  out += kScopeWire[static_cast<int>(scope.kind)];
  out += ' ';
  out += scope.name;
}

void AppendWhat(std::string& out, Activity activity, const std::string& application) {
  if (activity == Activity::kRemoteSession) {
    out += application.empty() ? std::string_view("any application") : std::string_view(application);
  } else {
    out += kActivityDisplay[static_cast<int>(activity)];
  }
}

void AppendRule(std::string& out, const Rule& rule) {
  out += "rule ";
  out += std::to_string(rule.id);
  out += " (";
  AppendScope(out, rule.scope);
  out += ", ";
  AppendWhat(out, rule.activity, rule.application);
  if (!rule.windows.empty()) {
    out += ", in its time window";
  }
  out += ')';
}

void AppendNoPolicy(std::string& out, const DecisionRequest& request) {
  out += "no policy for device ";
  out += request.device_serial;
  out += " (";
  AppendWhat(out, request.activity, request.application);
  out += ')';
}

// "rule 7 (device SN41000, ssh): Ask for Approval": the index keeps one per rule, so a decision
// costs one string copy rather than its formatting.
std::string RuleText(const Rule& rule) {
  std::string out;
  AppendRule(out, rule);
  out += ": ";
  out += DisplayName(rule.action);
  return out;
}

// The decision once the rule (or none) and the best grant that may change it are known. `grant` is
// already filtered: it is only passed when it is allowed to turn this rule's answer into Allow.
// `rule_text` is RuleText(*rule) when the caller has it.
Decision Finish(const Rule* rule, const Grant* grant, const DecisionRequest& request,
                const std::string* rule_text = nullptr) {
  Decision d;
  if (grant != nullptr) {
    d.reason.reserve(160);
    d.verdict = Verdict::kAllow;
    d.decided_by = DecidedBy::kGrant;
    d.grant_id = grant->id;
    d.rule_id = rule != nullptr ? rule->id : 0;
    d.grant_ends_at = grant->ends_at;
    d.reason += "grant ";
    d.reason += std::to_string(grant->id);
    d.reason += " (";
    if (grant->engineer.empty()) {
      d.reason += "any engineer";
    } else {
      d.reason += "engineer ";
      d.reason += grant->engineer;
    }
    d.reason += ", ";
    AppendScope(d.reason, grant->scope);
    d.reason += ", until ";
    d.reason += FormatRfc3339(grant->ends_at);
    d.reason += "): Allow, over ";
    if (rule != nullptr) {
      d.reason += rule_text != nullptr ? *rule_text : RuleText(*rule);
    } else {
      AppendNoPolicy(d.reason, request);
    }
    return d;
  }
  if (rule == nullptr) {
    d.verdict = Verdict::kDeny;
    d.decided_by = DecidedBy::kNoPolicy;
    AppendNoPolicy(d.reason, request);
    d.reason += ": Never Allow";
    return d;
  }
  d.decided_by = DecidedBy::kRule;
  d.rule_id = rule->id;
  switch (rule->action) {
    case Action::kAlwaysAllow:
      d.verdict = Verdict::kAllow;
      break;
    case Action::kNeverAllow:
      d.verdict = Verdict::kDeny;
      break;
    case Action::kAskForApproval:
      d.verdict = Verdict::kAsk;
      d.ask_timeout = rule->ask_timeout;
      break;
  }
  d.reason = rule_text != nullptr ? *rule_text : RuleText(*rule);
  return d;
}

// Whether a grant may change what `rule` (or no rule) says: Ask always, Never and no policy only when
// the grant says so explicitly, Allow needs no grant.
bool GrantNeeded(const Rule* rule) {
  return rule == nullptr || rule->action != Action::kAlwaysAllow;
}
bool GrantMayOverride(const Grant& g, const Rule* rule) {
  if (rule != nullptr && rule->action == Action::kAskForApproval) {
    return true;
  }
  return g.overrides_never_allow;
}

// ---- Validation

// Names are compared byte for byte, so spaces at either end (invisible in a UI) are refused; inner
// spaces are fine (models like "VSP G900").
bool ValidName(const std::string& name) {
  if (name.empty() || name.size() > kMaxNameBytes || name.front() == ' ' || name.back() == ' ') {
    return false;
  }
  return std::none_of(name.begin(), name.end(), [](char c) {
    auto u = static_cast<unsigned char>(c);
    return u < 0x20 || u == 0x7f;
  });
}
constexpr std::string_view kNameRule = "1 to 128 characters, no control characters or spaces at the ends";

class Checker {
 public:
  explicit Checker(const PolicySet& set) : set_(set) {
    for (const auto& g : set.groups) {
      group_names_.insert(g.name);
    }
  }

  std::vector<Problem> Run() {
    CheckGroups();
    std::unordered_set<std::int64_t> ids;
    for (const auto& r : set_.rules) {
      CheckRule(r, ids);
    }
    ids.clear();
    for (const auto& g : set_.grants) {
      CheckGrant(g, ids);
    }
    return std::move(problems_);
  }

 private:
  void Add(PolicyError e, std::string message) { problems_.push_back({e, std::move(message)}); }

  void CheckGroups() {
    std::unordered_set<std::string> seen;
    for (const auto& g : set_.groups) {
      const std::string what = "group '" + g.name + "'";
      if (!ValidName(g.name)) {
        Add(PolicyError::kBadGroup, what + ": a group name is " + std::string(kNameRule));
      }
      if (!seen.insert(g.name).second) {
        Add(PolicyError::kDuplicateId, what + " is defined twice");
      }
      std::unordered_set<std::string> serials;
      for (const auto& s : g.serials) {
        if (!ValidName(s)) {
          Add(PolicyError::kBadGroup, what + ": invalid serial '" + s + "'");
        } else if (!serials.insert(s).second) {
          Add(PolicyError::kBadGroup, what + " lists " + s + " twice");
        }
      }
    }
  }

  void CheckScope(const std::string& what, const Scope& scope) {
    if (scope.kind == ScopeKind::kSite) {
      if (!scope.name.empty()) {
        Add(PolicyError::kBadScope, what + ": the site scope takes no name");
      }
      return;
    }
    if (!ValidName(scope.name)) {
      Add(PolicyError::kBadScope, what + ": a " + std::string(WireName(scope.kind)) +
                                      " scope needs a name of " + std::string(kNameRule));
      return;
    }
    if (scope.kind == ScopeKind::kGroup && !group_names_.contains(scope.name)) {
      Add(PolicyError::kUnknownGroup, what + ": unknown group '" + scope.name + "'");
    }
  }

  void CheckApplication(const std::string& what, const std::string& application,
                        bool remote_session_only) {
    if (application.empty()) {
      return;
    }
    if (!remote_session_only) {
      Add(PolicyError::kBadApplication,
          what + ": an application applies to remote sessions only");
    } else if (!ValidName(application) || application == "*") {
      Add(PolicyError::kBadApplication, what + ": invalid application name '" + application + "'");
    }
  }

  void CheckRule(const Rule& r, std::unordered_set<std::int64_t>& ids) {
    const std::string what = "rule " + std::to_string(r.id);
    if (r.id <= 0) {
      Add(PolicyError::kDuplicateId, what + ": a rule id is a positive number");
    } else if (!ids.insert(r.id).second) {
      Add(PolicyError::kDuplicateId, what + ": duplicate rule id");
    }
    CheckScope(what, r.scope);
    CheckApplication(what, r.application, r.activity == Activity::kRemoteSession);
    if (r.action == Action::kAskForApproval &&
        (r.ask_timeout < kMinAskTimeout || r.ask_timeout > kMaxAskTimeout)) {
      Add(PolicyError::kBadAskTimeout,
          what + ": the approval timeout is " + std::to_string(r.ask_timeout.count()) +
              " s; it must be between 5 s and 24 h");
    }
    for (std::size_t i = 0; i < r.windows.size(); ++i) {
      const TimeWindow& w = r.windows[i];
      const std::string which = what + ", window " + std::to_string(i + 1);
      if (w.days == 0 || w.days > kEveryDay) {
        Add(PolicyError::kBadWindow, which + ": no valid day of the week");
      }
      if (w.from_minute < 0 || w.from_minute >= 24 * 60 || w.to_minute <= 0 ||
          w.to_minute > 24 * 60 || w.from_minute == w.to_minute) {
        Add(PolicyError::kBadWindow,
            which + ": from must be 00:00-23:59, to 00:01-24:00, and they must differ");
      }
      if (w.utc_offset_minutes < -14 * 60 || w.utc_offset_minutes > 14 * 60) {
        Add(PolicyError::kBadWindow, which + ": the UTC offset must be between -14:00 and +14:00");
      }
    }
  }

  void CheckGrant(const Grant& g, std::unordered_set<std::int64_t>& ids) {
    const std::string what = "grant " + std::to_string(g.id);
    if (g.id <= 0) {
      Add(PolicyError::kDuplicateId, what + ": a grant id is a positive number");
    } else if (!ids.insert(g.id).second) {
      Add(PolicyError::kDuplicateId, what + ": duplicate grant id");
    }
    CheckScope(what, g.scope);
    if (!g.engineer.empty() && !ValidName(g.engineer)) {
      Add(PolicyError::kBadGrant, what + ": invalid engineer name '" + g.engineer + "'");
    }
    if (g.activities.empty()) {
      Add(PolicyError::kBadGrant, what + ": names no activity");
    }
    if (std::set<Activity>(g.activities.begin(), g.activities.end()).size() !=
        g.activities.size()) {
      Add(PolicyError::kBadGrant, what + ": names an activity twice");
    }
    CheckApplication(what, g.application,
                     g.activities.size() == 1 && g.activities[0] == Activity::kRemoteSession);
    const auto duration = g.ends_at - g.starts_at;
    if (duration > kMaxGrantDuration) {
      Add(PolicyError::kGrantTooLong,
          what + ": lasts " +
              std::to_string(std::chrono::duration_cast<std::chrono::minutes>(duration).count()) +
              " min; a grant lasts at most 48 h");
    } else if (duration < kMinGrantDuration) {
      Add(PolicyError::kBadGrant, what + ": must end at least a minute after it starts");
    }
  }

  const PolicySet& set_;
  std::unordered_set<std::string> group_names_;
  std::vector<Problem> problems_;
};

class PolicyErrorCategoryImpl final : public std::error_category {
 public:
  const char* name() const noexcept override { return "lifeline.policy"; }
  std::string message(int value) const override {
    return Describe(static_cast<PolicyError>(value));
  }
};

}  // namespace

const std::error_category& PolicyErrorCategory() {
  static const PolicyErrorCategoryImpl category;
  return category;
}

std::string_view WireName(Activity a) { return kActivityWire[static_cast<int>(a)]; }
std::string_view WireName(Action a) { return kActionWire[static_cast<int>(a)]; }
std::string_view WireName(Verdict v) { return kVerdictWire[static_cast<int>(v)]; }
std::string_view WireName(ScopeKind k) { return kScopeWire[static_cast<int>(k)]; }
std::string_view WireName(DecidedBy d) { return kDecidedByWire[static_cast<int>(d)]; }
std::string_view DisplayName(Action a) { return kActionDisplay[static_cast<int>(a)]; }
std::optional<Activity> ParseActivity(std::string_view n) { return ParseIn<Activity>(kActivityWire, n); }
std::optional<Action> ParseAction(std::string_view n) { return ParseIn<Action>(kActionWire, n); }
std::optional<Verdict> ParseVerdict(std::string_view n) { return ParseIn<Verdict>(kVerdictWire, n); }
std::optional<ScopeKind> ParseScopeKind(std::string_view n) {
  return ParseIn<ScopeKind>(kScopeWire, n);
}
std::optional<DecidedBy> ParseDecidedBy(std::string_view n) {
  return ParseIn<DecidedBy>(kDecidedByWire, n);
}

bool InWindow(const TimeWindow& w, TimePoint t) {
  constexpr std::int64_t kDay = 24 * 60 * 60;
  const std::int64_t local =
      std::chrono::floor<std::chrono::seconds>(t).time_since_epoch().count() +
      std::int64_t{w.utc_offset_minutes} * 60;
  std::int64_t days = local / kDay;
  if (local % kDay < 0) {
    --days;
  }
  const int minute = static_cast<int>((local - days * kDay) / 60);
  // 1970-01-01 was a Thursday; Monday is 0.
  const int weekday = static_cast<int>(((days + 3) % 7 + 7) % 7);
  const auto open_on = [&w](int day) { return (w.days >> day) & 1; };
  if (w.from_minute < w.to_minute) {
    return open_on(weekday) && minute >= w.from_minute && minute < w.to_minute;
  }
  // Crosses midnight: the evening part belongs to today, the morning part to yesterday's window.
  return (open_on(weekday) && minute >= w.from_minute) ||
         (open_on((weekday + 6) % 7) && minute < w.to_minute);
}

std::vector<Problem> Validate(const PolicySet& set) { return Checker(set).Run(); }

Decision Decide(const PolicySet& set, const DecisionRequest& request) {
  const Rule* best = nullptr;
  for (const auto& r : set.rules) {
    if (r.activity != request.activity || !ApplicationMatches(r.application, request) ||
        !ScopeCoversLinear(set, r.scope, request) || !WindowsMatch(r.windows, request.time)) {
      continue;
    }
    if (best == nullptr || KeyOf(r) < KeyOf(*best)) {
      best = &r;
    }
  }
  const Grant* grant = nullptr;
  if (GrantNeeded(best)) {
    for (const auto& g : set.grants) {
      if (GrantActive(g, request) && ScopeCoversLinear(set, g.scope, request) &&
          GrantMayOverride(g, best) && (grant == nullptr || KeyOf(g) < KeyOf(*grant))) {
        grant = &g;
      }
    }
  }
  return Finish(best, grant, request);
}

// ---- The index
//
// One hash lookup for the device (its own rules and grants, and the numbers of its groups), one for
// its model; groups are reached by number and the site by position. Each rule list is sorted by
// precedence, so the first rule in it that matches is the best of it.

namespace {

using RuleList = std::vector<const Rule*>;

struct Bucket {
  std::array<RuleList, kActivityCount> rules;  // by activity, in precedence order
  std::vector<const Grant*> grants;
};

struct DeviceBucket : Bucket {
  std::vector<std::size_t> groups;  // indexes into Index::groups
};

const Rule* FirstMatch(const RuleList& list, const DecisionRequest& request) {
  for (const Rule* r : list) {
    if (ApplicationMatches(r->application, request) && WindowsMatch(r->windows, request.time)) {
      return r;
    }
  }
  return nullptr;
}

// Grants of `bucket` that may turn `rule`'s answer into Allow; keeps the best in `best`.
void BestGrantIn(const Bucket& bucket, const Rule* rule, const DecisionRequest& request,
                 const Grant*& best) {
  for (const Grant* g : bucket.grants) {
    if (GrantActive(*g, request) && GrantMayOverride(*g, rule) &&
        (best == nullptr || KeyOf(*g) < KeyOf(*best))) {
      best = g;
    }
  }
}

}  // namespace

struct CompiledPolicy::Index {
  std::unordered_map<std::string, DeviceBucket> devices;
  std::unordered_map<std::string, Bucket> models;
  std::vector<Bucket> groups;  // in PolicySet::groups order
  Bucket site;
  std::vector<std::string> rule_texts;  // RuleText of set_.rules[i]
};

CompiledPolicy::CompiledPolicy(PolicySet set) : set_(std::move(set)), index_(new Index) {
  Index& index = *index_;
  std::unordered_map<std::string, std::size_t> group_numbers;
  index.groups.resize(set_.groups.size());
  for (std::size_t i = 0; i < set_.groups.size(); ++i) {
    group_numbers.emplace(set_.groups[i].name, i);
    for (const auto& serial : set_.groups[i].serials) {
      index.devices[serial].groups.push_back(i);
    }
  }
  const auto bucket_of = [&](const Scope& scope) -> Bucket& {
    switch (scope.kind) {
      case ScopeKind::kDevice:
        return index.devices[scope.name];
      case ScopeKind::kGroup:
        return index.groups[group_numbers.at(scope.name)];  // Validate checked the name
      case ScopeKind::kModel:
        return index.models[scope.name];
      case ScopeKind::kSite:
        break;
    }
    return index.site;
  };
  index.rule_texts.reserve(set_.rules.size());
  for (const auto& r : set_.rules) {
    index.rule_texts.push_back(RuleText(r));
    bucket_of(r.scope).rules[static_cast<int>(r.activity)].push_back(&r);
  }
  for (const auto& g : set_.grants) {
    bucket_of(g.scope).grants.push_back(&g);
  }
  const auto by_key = [](const Rule* a, const Rule* b) { return KeyOf(*a) < KeyOf(*b); };
  const auto sort_bucket = [&by_key](Bucket& bucket) {
    for (auto& list : bucket.rules) {
      std::sort(list.begin(), list.end(), by_key);
    }
  };
  for (auto& [serial, bucket] : index.devices) {
    sort_bucket(bucket);
  }
  for (auto& [model, bucket] : index.models) {
    sort_bucket(bucket);
  }
  for (auto& bucket : index.groups) {
    sort_bucket(bucket);
  }
  sort_bucket(index.site);
}

CompiledPolicy::~CompiledPolicy() = default;

Result<std::shared_ptr<const CompiledPolicy>> CompiledPolicy::Compile(PolicySet set,
                                                                      std::string* why) {
  auto problems = Validate(set);
  if (!problems.empty()) {
    if (why != nullptr) {
      why->clear();
      for (const auto& p : problems) {
        if (!why->empty()) {
          *why += "; ";
        }
        *why += p.message;
      }
    }
    return Fail(make_error_code(problems.front().error));
  }
  return std::shared_ptr<const CompiledPolicy>(new CompiledPolicy(std::move(set)));
}

Decision CompiledPolicy::Decide(const DecisionRequest& request) const {
  const int activity = static_cast<int>(request.activity);
  if (activity < 0 || activity >= kActivityCount) {
    return Finish(nullptr, nullptr, request);
  }
  const Index& index = *index_;
  auto device_it = index.devices.find(request.device_serial);
  const DeviceBucket* device = device_it == index.devices.end() ? nullptr : &device_it->second;
  auto model_it = index.models.find(request.device_model);
  const Bucket* model = model_it == index.models.end() ? nullptr : &model_it->second;

  const Rule* best = device != nullptr ? FirstMatch(device->rules[activity], request) : nullptr;
  if (best == nullptr && device != nullptr) {
    for (std::size_t group : device->groups) {
      const Rule* r = FirstMatch(index.groups[group].rules[activity], request);
      if (r != nullptr && (best == nullptr || KeyOf(*r) < KeyOf(*best))) {
        best = r;
      }
    }
  }
  if (best == nullptr && model != nullptr) {
    best = FirstMatch(model->rules[activity], request);
  }
  if (best == nullptr) {
    best = FirstMatch(index.site.rules[activity], request);
  }

  const Grant* grant = nullptr;
  if (GrantNeeded(best)) {
    if (device != nullptr) {
      BestGrantIn(*device, best, request, grant);
      for (std::size_t group : device->groups) {
        BestGrantIn(index.groups[group], best, request, grant);
      }
    }
    if (model != nullptr) {
      BestGrantIn(*model, best, request, grant);
    }
    BestGrantIn(index.site, best, request, grant);
  }
  return Finish(best, grant, request,
                best != nullptr ? &index.rule_texts[best - set_.rules.data()] : nullptr);
}

}  // namespace lifeline::policy

#include "policy/policy_json.h"

#include <boost/json.hpp>

#include <fmt/format.h>

#include <array>
#include <climits>

namespace lifeline::policy {
namespace json = boost::json;
namespace {

// Generous caps on untrusted text; Validate() applies the real limits to names.
constexpr std::size_t kMaxStringBytes = 4096;

constexpr std::array<std::string_view, 7> kDayNames = {"mon", "tue", "wed", "thu",
                                                       "fri", "sat", "sun"};

std::int64_t ToMillis(TimePoint t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}
TimePoint FromMillis(std::int64_t ms) {
  return TimePoint(std::chrono::duration_cast<TimePoint::duration>(std::chrono::milliseconds(ms)));
}

// Field readers over one object: each returns false and fills `why` (first problem only) when a
// field is missing, of the wrong type or unreadable.
class Reader {
 public:
  Reader(const json::value& value, std::string context, std::string* why)
      : object_(value.if_object()), context_(std::move(context)), why_(why) {
    if (object_ == nullptr) {
      Fail("", "must be a JSON object");
    }
  }
  bool ok() const { return ok_; }

  bool String(std::string_view key, std::string* out, bool required) {
    const json::value* v = Find(key);
    if (v == nullptr) {
      return !required || Fail(key, "is missing");
    }
    if (!v->is_string()) {
      return Fail(key, "must be a string");
    }
    if (v->get_string().size() > kMaxStringBytes) {
      return Fail(key, fmt::format("is longer than {} bytes", kMaxStringBytes));
    }
    *out = std::string(v->get_string());
    return true;
  }

  bool Int(std::string_view key, std::int64_t* out, bool required) {
    const json::value* v = Find(key);
    if (v == nullptr) {
      return !required || Fail(key, "is missing");
    }
    if (v->is_int64()) {
      *out = v->get_int64();
      return true;
    }
    if (v->is_uint64() && v->get_uint64() <= static_cast<std::uint64_t>(INT64_MAX)) {
      *out = static_cast<std::int64_t>(v->get_uint64());
      return true;
    }
    return Fail(key, "must be an integer");
  }

  bool Bool(std::string_view key, bool* out) {
    const json::value* v = Find(key);
    if (v == nullptr) {
      return true;
    }
    if (!v->is_bool()) {
      return Fail(key, "must be true or false");
    }
    *out = v->get_bool();
    return true;
  }

  // An array that may be absent (then empty).
  const json::array* Array(std::string_view key, bool required) {
    static const json::array kEmpty;
    const json::value* v = Find(key);
    if (v == nullptr) {
      if (required) {
        Fail(key, "is missing");
        return nullptr;
      }
      return &kEmpty;
    }
    if (!v->is_array()) {
      Fail(key, "must be an array");
      return nullptr;
    }
    return &v->get_array();
  }

  bool Has(std::string_view key) const { return Find(key) != nullptr; }

  const json::value* Value(std::string_view key) {
    const json::value* v = Find(key);
    if (v == nullptr) {
      Fail(key, "is missing");
    }
    return v;
  }

  template <class E>
  bool Enum(std::string_view key, std::optional<E> (*parse)(std::string_view), E* out) {
    std::string name;
    if (!String(key, &name, true)) {
      return false;
    }
    auto parsed = parse(name);
    if (!parsed) {
      return Fail(key, fmt::format("has an unknown value '{}'", name));
    }
    *out = *parsed;
    return true;
  }

  bool Fail(std::string_view key, std::string_view problem) {
    ok_ = false;
    if (why_ != nullptr && why_->empty()) {
      *why_ = fmt::format("{}{}{}{}", context_, key.empty() ? "" : ".", key,
                          " " + std::string(problem));
    }
    return false;
  }

  std::string Context(std::string_view key, std::size_t index) const {
    return fmt::format("{}.{}[{}]", context_, key, index);
  }
  std::string Context(std::string_view key) const { return fmt::format("{}.{}", context_, key); }
  std::string* why() const { return why_; }

 private:
  const json::value* Find(std::string_view key) const {
    return object_ == nullptr ? nullptr : object_->if_contains(key);
  }

  const json::object* object_;
  std::string context_;
  std::string* why_;
  bool ok_ = true;
};

Failure Malformed() { return Fail(make_error_code(PolicyError::kMalformed)); }

json::object ScopeToJson(const Scope& scope) {
  json::object o{{"kind", WireName(scope.kind)}};
  if (scope.kind != ScopeKind::kSite) {
    o["name"] = scope.name;
  }
  return o;
}

bool ReadScope(Reader& parent, std::string_view key, Scope* out) {
  const json::value* v = parent.Value(key);
  if (v == nullptr) {
    return false;
  }
  Reader r(*v, parent.Context(key), parent.why());
  return r.ok() && r.Enum(std::string_view("kind"), &ParseScopeKind, &out->kind) &&
         r.String("name", &out->name, out->kind != ScopeKind::kSite);
}

// "*" and absence both mean any application (or any engineer).
bool ReadAny(Reader& r, std::string_view key, std::string* out) {
  if (!r.String(key, out, false)) {
    return false;
  }
  if (*out == "*") {
    out->clear();
  }
  return true;
}

// A Unix-milliseconds field, kept inside what TimePoint can hold (about +-292 years in ns).
bool ReadMillis(Reader& r, std::string_view key, TimePoint* out, bool required) {
  constexpr std::int64_t kLimitMs = 9'000'000'000'000;  // ms; TimePoint counts ns in an int64
  std::int64_t ms = 0;
  const bool present = required || r.Has(key);
  if (!present) {
    return true;
  }
  if (!r.Int(key, &ms, true)) {
    return false;
  }
  if (ms < -kLimitMs || ms > kLimitMs) {
    return r.Fail(key, "is out of range");
  }
  *out = FromMillis(ms);
  return true;
}

template <class T>
bool ReadList(Reader& parent, std::string_view key, bool required, std::vector<T>* out,
              Result<T> (*read)(const json::value&, std::string*)) {
  const json::array* array = parent.Array(key, required);
  if (array == nullptr) {
    return false;
  }
  out->clear();
  out->reserve(array->size());
  for (const auto& item : *array) {
    std::string inner;
    auto parsed = read(item, &inner);
    if (!parsed) {
      return parent.Fail(fmt::format("{}[{}]", key, out->size()), inner);
    }
    out->push_back(std::move(*parsed));
  }
  return true;
}

bool ReadStrings(Reader& parent, std::string_view key, std::vector<std::string>* out) {
  const json::array* array = parent.Array(key, true);
  if (array == nullptr) {
    return false;
  }
  out->clear();
  out->reserve(array->size());
  for (const auto& item : *array) {
    if (!item.is_string() || item.get_string().size() > kMaxStringBytes) {
      return parent.Fail(fmt::format("{}[{}]", key, out->size()), "must be a short string");
    }
    out->emplace_back(item.get_string());
  }
  return true;
}

}  // namespace

std::string FormatMinuteOfDay(int minute) {
  return fmt::format("{:02}:{:02}", minute / 60, minute % 60);
}

std::optional<int> ParseMinuteOfDay(std::string_view text) {
  if (text.size() != 5 || text[2] != ':') {
    return std::nullopt;
  }
  for (std::size_t i : {0, 1, 3, 4}) {
    if (text[i] < '0' || text[i] > '9') {
      return std::nullopt;
    }
  }
  const int hours = (text[0] - '0') * 10 + (text[1] - '0');
  const int minutes = (text[3] - '0') * 10 + (text[4] - '0');
  if (minutes > 59 || hours > 24 || (hours == 24 && minutes != 0)) {
    return std::nullopt;
  }
  return hours * 60 + minutes;
}

std::string FormatUtcOffset(int minutes) {
  if (minutes == 0) {
    return "Z";
  }
  const int magnitude = minutes < 0 ? -minutes : minutes;
  return fmt::format("{}{:02}:{:02}", minutes < 0 ? '-' : '+', magnitude / 60, magnitude % 60);
}

std::optional<int> ParseUtcOffset(std::string_view text) {
  if (text == "Z" || text == "z") {
    return 0;
  }
  if (text.size() != 6 || (text[0] != '+' && text[0] != '-')) {
    return std::nullopt;
  }
  auto hhmm = ParseMinuteOfDay(text.substr(1));
  if (!hhmm) {
    return std::nullopt;
  }
  return text[0] == '-' ? -*hhmm : *hhmm;
}

// ---- Encoding

json::object ToJson(const TimeWindow& w) {
  json::array days;
  for (int d = 0; d < 7; ++d) {
    if ((w.days >> d) & 1) {
      days.emplace_back(kDayNames[d]);
    }
  }
  return {{"days", std::move(days)},
          {"from", FormatMinuteOfDay(w.from_minute)},
          {"to", FormatMinuteOfDay(w.to_minute)},
          {"utc_offset", FormatUtcOffset(w.utc_offset_minutes)}};
}

json::object ToJson(const Rule& r) {
  json::object o{{"id", r.id},
                 {"activity", WireName(r.activity)},
                 {"scope", ScopeToJson(r.scope)},
                 {"action", WireName(r.action)}};
  if (!r.application.empty()) {
    o["application"] = r.application;
  }
  if (r.action == Action::kAskForApproval) {
    o["ask_timeout_s"] = r.ask_timeout.count();
  }
  if (!r.windows.empty()) {
    json::array windows;
    for (const auto& w : r.windows) {
      windows.push_back(ToJson(w));
    }
    o["windows"] = std::move(windows);
  }
  if (!r.description.empty()) {
    o["description"] = r.description;
  }
  return o;
}

json::object ToJson(const Grant& g) {
  json::array activities;
  for (Activity a : g.activities) {
    activities.emplace_back(WireName(a));
  }
  json::object o{{"id", g.id},
                 {"scope", ScopeToJson(g.scope)},
                 {"activities", std::move(activities)},
                 {"starts_at_ms", ToMillis(g.starts_at)},
                 {"ends_at_ms", ToMillis(g.ends_at)},
                 {"overrides_never_allow", g.overrides_never_allow}};
  if (!g.engineer.empty()) {
    o["engineer"] = g.engineer;
  }
  if (!g.application.empty()) {
    o["application"] = g.application;
  }
  if (!g.granted_by.empty()) {
    o["granted_by"] = g.granted_by;
  }
  if (!g.reason.empty()) {
    o["reason"] = g.reason;
  }
  return o;
}

json::object ToJson(const DeviceGroup& g) {
  json::array serials;
  for (const auto& s : g.serials) {
    serials.emplace_back(s);
  }
  return {{"name", g.name}, {"serials", std::move(serials)}};
}

json::object ToJson(const PolicySet& set) {
  json::array groups, rules, grants;
  for (const auto& g : set.groups) {
    groups.push_back(ToJson(g));
  }
  for (const auto& r : set.rules) {
    rules.push_back(ToJson(r));
  }
  for (const auto& g : set.grants) {
    grants.push_back(ToJson(g));
  }
  return {{"version", set.version},
          {"groups", std::move(groups)},
          {"rules", std::move(rules)},
          {"grants", std::move(grants)}};
}

json::object ToJson(const DecisionRequest& q) {
  json::object o{{"activity", WireName(q.activity)},
                 {"device", q.device_serial},
                 {"model", q.device_model},
                 {"engineer", q.engineer},
                 {"time_ms", ToMillis(q.time)}};
  if (!q.application.empty()) {
    o["application"] = q.application;
  }
  return o;
}

json::object ToJson(const Decision& d) {
  json::object o{{"verdict", WireName(d.verdict)},
                 {"decided_by", WireName(d.decided_by)},
                 {"reason", d.reason}};
  if (d.verdict == Verdict::kAsk) {
    o["ask_timeout_s"] = d.ask_timeout.count();
  }
  if (d.rule_id != 0) {
    o["rule_id"] = d.rule_id;
  }
  if (d.grant_id != 0) {
    o["grant_id"] = d.grant_id;
  }
  if (d.grant_ends_at) {
    o["grant_ends_at_ms"] = ToMillis(*d.grant_ends_at);
  }
  return o;
}

std::string EncodePolicySet(const PolicySet& set) { return json::serialize(ToJson(set)); }
std::string EncodeDecision(const Decision& d) { return json::serialize(ToJson(d)); }

// ---- Decoding

Result<TimeWindow> TimeWindowFromJson(const json::value& value, std::string* why) {
  Reader r(value, "window", why);
  TimeWindow w;
  w.days = 0;
  std::vector<std::string> days;
  std::string from, to, offset = "Z";
  if (!r.ok() || !ReadStrings(r, "days", &days) || !r.String("from", &from, true) ||
      !r.String("to", &to, true) || !r.String("utc_offset", &offset, false)) {
    return Malformed();
  }
  for (const auto& day : days) {
    auto it = std::find(kDayNames.begin(), kDayNames.end(), day);
    if (it == kDayNames.end()) {
      r.Fail("days", fmt::format("has an unknown day '{}' (mon, tue, ... sun)", day));
      return Malformed();
    }
    w.days |= static_cast<std::uint8_t>(1u << (it - kDayNames.begin()));
  }
  auto from_minute = ParseMinuteOfDay(from);
  auto to_minute = ParseMinuteOfDay(to);
  auto offset_minutes = ParseUtcOffset(offset);
  if (!from_minute) {
    r.Fail("from", "must be HH:MM");
    return Malformed();
  }
  if (!to_minute) {
    r.Fail("to", "must be HH:MM (24:00 for the end of the day)");
    return Malformed();
  }
  if (!offset_minutes) {
    r.Fail("utc_offset", "must be +HH:MM, -HH:MM or Z");
    return Malformed();
  }
  w.from_minute = *from_minute;
  w.to_minute = *to_minute;
  w.utc_offset_minutes = *offset_minutes;
  return w;
}

Result<Rule> RuleFromJson(const json::value& value, std::string* why) {
  Reader r(value, "rule", why);
  Rule rule;
  std::int64_t timeout = kDefaultAskTimeout.count();
  if (!r.ok() || !r.Int("id", &rule.id, true) ||
      !r.Enum(std::string_view("activity"), &ParseActivity, &rule.activity) ||
      !ReadAny(r, "application", &rule.application) || !ReadScope(r, "scope", &rule.scope) ||
      !r.Enum(std::string_view("action"), &ParseAction, &rule.action) ||
      !r.Int("ask_timeout_s", &timeout, false) ||
      !ReadList(r, "windows", false, &rule.windows, &TimeWindowFromJson) ||
      !r.String("description", &rule.description, false)) {
    return Malformed();
  }
  rule.ask_timeout = std::chrono::seconds(timeout);
  return rule;
}

Result<Grant> GrantFromJson(const json::value& value, std::string* why) {
  Reader r(value, "grant", why);
  Grant g;
  std::vector<std::string> activities;
  if (!r.ok() || !r.Int("id", &g.id, true) || !ReadAny(r, "engineer", &g.engineer) ||
      !ReadScope(r, "scope", &g.scope) || !ReadStrings(r, "activities", &activities) ||
      !ReadAny(r, "application", &g.application) || !ReadMillis(r, "starts_at_ms", &g.starts_at, true) ||
      !ReadMillis(r, "ends_at_ms", &g.ends_at, true) ||
      !r.Bool("overrides_never_allow", &g.overrides_never_allow) ||
      !r.String("granted_by", &g.granted_by, false) || !r.String("reason", &g.reason, false)) {
    return Malformed();
  }
  g.activities.clear();
  for (const auto& name : activities) {
    auto a = ParseActivity(name);
    if (!a) {
      r.Fail("activities", fmt::format("has an unknown activity '{}'", name));
      return Malformed();
    }
    g.activities.push_back(*a);
  }
  return g;
}

Result<DeviceGroup> GroupFromJson(const json::value& value, std::string* why) {
  Reader r(value, "group", why);
  DeviceGroup g;
  if (!r.ok() || !r.String("name", &g.name, true) || !ReadStrings(r, "serials", &g.serials)) {
    return Malformed();
  }
  return g;
}

Result<PolicySet> PolicySetFromJson(const json::value& value, std::string* why) {
  Reader r(value, "policy", why);
  PolicySet set;
  std::int64_t version = 0;
  if (!r.ok() || !r.Int("version", &version, true)) {
    return Malformed();
  }
  if (version < 0) {
    r.Fail("version", "must not be negative");
    return Malformed();
  }
  set.version = static_cast<std::uint64_t>(version);
  if (!ReadList(r, "groups", false, &set.groups, &GroupFromJson) ||
      !ReadList(r, "rules", false, &set.rules, &RuleFromJson) ||
      !ReadList(r, "grants", false, &set.grants, &GrantFromJson)) {
    return Malformed();
  }
  return set;
}

Result<DecisionRequest> DecisionRequestFromJson(const json::value& value, std::string* why) {
  Reader r(value, "request", why);
  DecisionRequest q;
  if (!r.ok() || !r.Enum(std::string_view("activity"), &ParseActivity, &q.activity) ||
      !r.String("application", &q.application, false) ||
      !r.String("device", &q.device_serial, true) || !r.String("model", &q.device_model, false) ||
      !r.String("engineer", &q.engineer, false) || !ReadMillis(r, "time_ms", &q.time, true)) {
    return Malformed();
  }
  return q;
}

Result<Decision> DecisionFromJson(const json::value& value, std::string* why) {
  Reader r(value, "decision", why);
  Decision d;
  std::int64_t timeout = 0;
  TimePoint ends;
  if (!r.ok() || !r.Enum(std::string_view("verdict"), &ParseVerdict, &d.verdict) ||
      !r.Enum(std::string_view("decided_by"), &ParseDecidedBy, &d.decided_by) ||
      !r.String("reason", &d.reason, true) || !r.Int("ask_timeout_s", &timeout, false) ||
      !r.Int("rule_id", &d.rule_id, false) || !r.Int("grant_id", &d.grant_id, false) ||
      !ReadMillis(r, "grant_ends_at_ms", &ends, false)) {
    return Malformed();
  }
  d.ask_timeout = std::chrono::seconds(timeout);
  if (r.Has("grant_ends_at_ms")) {
    d.grant_ends_at = ends;
  }
  return d;
}

namespace {
template <class T>
Result<T> ParseThen(std::string_view text, std::string* why,
                    Result<T> (*read)(const json::value&, std::string*)) {
  boost::system::error_code ec;
  json::parse_options options;
  options.max_depth = 16;
  json::value parsed = json::parse(text, ec, {}, options);
  if (ec) {
    if (why != nullptr) {
      *why = "not valid JSON: " + ec.message();
    }
    return Malformed();
  }
  return read(parsed, why);
}
}  // namespace

Result<PolicySet> DecodePolicySet(std::string_view text, std::string* why) {
  return ParseThen<PolicySet>(text, why, &PolicySetFromJson);
}

Result<Decision> DecodeDecision(std::string_view text, std::string* why) {
  return ParseThen<Decision>(text, why, &DecisionFromJson);
}

}  // namespace lifeline::policy

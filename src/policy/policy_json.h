#pragma once
// JSON form of policy sets, rules, grants, groups, decision requests and decisions (docs/policy.md
// "Policies and decisions"): the policy manager's API, the gateway's durable cache and the audit log.
// Decoders take untrusted text: they never throw, check every field's presence and type and say what
// was wrong in `why` (error PolicyError::kMalformed). They check shape only: call Validate() or
// CompiledPolicy::Compile() for the meaning (unknown groups, bounds, duplicate ids).
#include "policy/policy_rules.h"

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <string>
#include <string_view>

namespace lifeline::policy {

boost::json::object ToJson(const TimeWindow& window);
boost::json::object ToJson(const Rule& rule);
boost::json::object ToJson(const Grant& grant);
boost::json::object ToJson(const DeviceGroup& group);
boost::json::object ToJson(const PolicySet& set);
boost::json::object ToJson(const DecisionRequest& request);
boost::json::object ToJson(const Decision& decision);

[[nodiscard]] Result<TimeWindow> TimeWindowFromJson(const boost::json::value& value, std::string* why);
[[nodiscard]] Result<Rule> RuleFromJson(const boost::json::value& value, std::string* why);
[[nodiscard]] Result<Grant> GrantFromJson(const boost::json::value& value, std::string* why);
[[nodiscard]] Result<DeviceGroup> GroupFromJson(const boost::json::value& value, std::string* why);
[[nodiscard]] Result<PolicySet> PolicySetFromJson(const boost::json::value& value, std::string* why);
[[nodiscard]] Result<DecisionRequest> DecisionRequestFromJson(const boost::json::value& value,
                                                              std::string* why);
[[nodiscard]] Result<Decision> DecisionFromJson(const boost::json::value& value, std::string* why);

/// Serialized documents (compact JSON, one line: fit for JSON-lines audit exports).
std::string EncodePolicySet(const PolicySet& set);
[[nodiscard]] Result<PolicySet> DecodePolicySet(std::string_view json, std::string* why);
std::string EncodeDecision(const Decision& decision);
[[nodiscard]] Result<Decision> DecodeDecision(std::string_view json, std::string* why);

/// "09:00" <-> 540; "24:00" is 1440 (a window's end). "+01:00" / "-05:30" / "Z" <-> minutes.
std::string FormatMinuteOfDay(int minute);
std::optional<int> ParseMinuteOfDay(std::string_view text);
std::string FormatUtcOffset(int minutes);
std::optional<int> ParseUtcOffset(std::string_view text);

}  // namespace lifeline::policy

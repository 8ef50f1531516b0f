#pragma once
// What every part of bench_agent feeds the agents: ten log rules of the kind a storage-array vendor
// writes, and typical 100-200 byte array log lines, of which one in `match_every` matches a rule.
// The same rules go into the agent's agent.toml, zabbix_agentd's log[] item (as one alternation) and
// the in-process RuleSet benchmark, so all three do the same work.
#include "agent/rules.h"

#include <cstdint>
#include <string>
#include <vector>

namespace lifeline::bench {

/// The ten rules. Patterns use only syntax that ECMAScript, RE2 and PCRE read alike (no \d, no quotes,
/// no backslashes), so zabbix_agentd's PCRE matches the same lines.
std::vector<agent::LogRule> TenRules();

/// Line `index` of a generated log: one in `match_every` lines matches one of the rules (cycling
/// through several of them), the rest are routine lines that every rule must reject.
std::string ArrayLogLine(std::uint64_t index, std::uint64_t match_every);

/// True when ArrayLogLine(index, match_every) is one of the matching lines.
inline bool IsMatchingLine(std::uint64_t index, std::uint64_t match_every) {
  return index % match_every == match_every - 1;
}

/// The rules as agent.toml [[rules]] tables.
std::string RulesToml();

/// The rules' patterns as one alternation, for a zabbix log[] item.
std::string RulesAlternation();

}  // namespace lifeline::bench

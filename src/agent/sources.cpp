#include "agent/sources.h"

#include "agent/command_check.h"
#include "agent/health_check.h"
#include "agent/log_source.h"
#include "agent/syslog_source.h"
#include "common/log.h"

#include <fmt/format.h>

#include <charconv>

namespace lifeline::agent {
namespace {

std::error_code BadRule() { return make_error_code(Errc::kBadRule); }

GateOptions ToGate(const GateConfig& gate) { return {gate.min_count, gate.window, gate.max_per_window}; }

protocol::Severity ToSeverity(const std::string& name) {
  return protocol::ParseSeverity(name).value_or(protocol::Severity::kError);
}

// Compiles `configs` into a rule set and the gate options of each rule.
Result<RuleSet> CompileRules(const std::vector<RuleConfig>& configs, std::vector<GateOptions>* gates,
                             std::string* error) {
  std::vector<LogRule> rules;
  for (const auto& r : configs) {
    rules.push_back({r.name, r.pattern, r.code, ToSeverity(r.severity), r.message, r.clear_pattern});
    gates->push_back(ToGate(r.gate));
  }
  return RuleSet::Compile(std::move(rules), error);
}

Result<std::unique_ptr<Check>> MakeCommandCheck(const CommandCheckConfig& config, std::string* error) {
  const auto refuse = [&](const std::string& why) -> Result<std::unique_ptr<Check>> {
    *error = fmt::format("command check '{}': {}", config.name, why);
    return Fail(BadRule());
  };
  CommandCheckSpec spec;
  spec.name = config.name;
  if (config.command.empty()) {
    return refuse("command is empty");
  }
  if (config.shell) {
    if (config.command.size() != 1) {
      return refuse("with shell = true, command holds one shell command line");
    }
    spec.argv = {"/bin/sh", "-c", config.command[0]};
  } else {
    spec.argv = config.command;
  }
  spec.interval = config.interval;
  spec.timeout = config.timeout;
  spec.code = config.code.empty() ? config.name : config.code;
  spec.message = config.message;
  std::string why;
  if (!ExitStatusMap::Parse(config.exit_status, &spec.exit_map, &why)) {
    return refuse("exit_status: " + why);
  }
  std::vector<LogRule> patterns;
  for (std::size_t i = 0; i < config.patterns.size(); ++i) {
    const auto& p = config.patterns[i];
    patterns.push_back(
        {fmt::format("{} pattern #{}", config.name, i + 1), p.pattern, p.code, ToSeverity(p.severity), p.message, ""});
  }
  auto compiled = RuleSet::Compile(std::move(patterns), error);
  if (!compiled) {
    *error = fmt::format("command check '{}': {}", config.name, *error);
    return compiled.error();
  }
  spec.patterns = std::move(*compiled);
  spec.gate = ToGate(config.gate);
  return std::unique_ptr<Check>(std::make_unique<CommandCheck>(std::move(spec)));
}

Result<std::unique_ptr<Check>> MakeHealthCheck(const HealthCheckConfig& config, std::string* error) {
  const auto refuse = [&](const std::string& why) -> Result<std::unique_ptr<Check>> {
    *error = fmt::format("health check '{}': {}", config.name, why);
    return Fail(BadRule());
  };
  HealthCheckSpec spec;
  spec.name = config.name;
  const auto kind = ParseHealthKind(config.kind);
  if (!kind) {
    return refuse("kind is required: filesystem, memory, load, process, unit or file_age");
  }
  spec.kind = *kind;
  spec.path = config.path;
  spec.max_percent = config.max_percent;
  spec.min_available_mb = config.min_available_mb;
  spec.max_age = config.max_age;
  spec.interval = config.interval;
  spec.code = config.code.empty() ? config.name : config.code;
  spec.severity = ToSeverity(config.severity);
  spec.gate = ToGate(config.gate);
  switch (spec.kind) {
    case HealthKind::kFilesystem:
    case HealthKind::kFileAge:
      if (spec.path.empty()) {
        return refuse("path is required");
      }
      break;
    case HealthKind::kProcess:
      spec.target = config.process;
      if (spec.target.empty()) {
        return refuse("process is required");
      }
      break;
    case HealthKind::kUnit:
      spec.target = config.unit;
      if (spec.target.empty()) {
        return refuse("unit is required");
      }
      break;
    case HealthKind::kLoad: {
      const char* first = config.max_load.data();
      const char* last = first + config.max_load.size();
      const auto [end, ec] = std::from_chars(first, last, spec.max_load);
      if (ec != std::errc() || end != last || spec.max_load <= 0) {
        return refuse(fmt::format("max_load \"{}\" is not a positive number", config.max_load));
      }
      break;
    }
    case HealthKind::kMemory:
      break;
  }
  return std::unique_ptr<Check>(std::make_unique<HealthCheck>(std::move(spec)));
}

}  // namespace

Result<std::vector<std::unique_ptr<Source>>> MakeDetectionSources(const AgentConfig& config, AgentQueue& queue,
                                                                  std::string* error) {
  std::vector<std::unique_ptr<Source>> sources;
  std::vector<GateOptions> gates;
  auto compiled = CompileRules(config.sources.rules, &gates, error);
  if (!compiled) {
    return compiled.error();
  }
  if (!config.sources.logs.empty()) {
    std::vector<std::unique_ptr<LogFollower>> followers;
    for (const auto& watched : config.sources.logs) {
      auto saved = queue.LoadPosition(watched.path);
      if (!saved) {
        *error = fmt::format("cannot read the saved position of {}: {}", watched.path, saved.error().message());
        return saved.error();
      }
      followers.push_back(std::make_unique<LogFollower>(
          watched.path, *saved, watched.from_beginning ? StartPolicy::kFromBeginning : StartPolicy::kFromEnd));
      log::Get("agent")->info("watching {} ({})", watched.path,
                              saved->has_value() ? fmt::format("resuming at byte {}", (*saved)->offset)
                                                 : "new lines only");
    }
    sources.push_back(std::make_unique<LogSource>(std::move(followers), std::move(*compiled), queue,
                                                  std::chrono::milliseconds(config.sources.poll_interval_ms),
                                                  std::move(gates)));
  }

  // Each command check on its own thread: a slow command holds up nothing else.
  for (const auto& check_config : config.sources.command_checks) {
    auto check = MakeCommandCheck(check_config, error);
    if (!check) {
      return check.error();
    }
    std::vector<std::unique_ptr<Check>> checks;
    checks.push_back(std::move(*check));
    sources.push_back(std::make_unique<CheckSource>("check " + check_config.name, std::move(checks)));
  }
  // The built-in health checks are cheap (systemctl is bounded by its own timeout): one thread for all.
  if (!config.sources.health_checks.empty()) {
    std::vector<std::unique_ptr<Check>> checks;
    for (const auto& health_config : config.sources.health_checks) {
      auto check = MakeHealthCheck(health_config, error);
      if (!check) {
        return check.error();
      }
      checks.push_back(std::move(*check));
    }
    sources.push_back(std::make_unique<CheckSource>("health checks", std::move(checks)));
  }

  const SyslogConfig& syslog = config.sources.syslog;
  if (!syslog.udp.empty() || !syslog.tcp.empty()) {
    std::vector<GateOptions> syslog_gates;
    auto rules = CompileRules(config.sources.syslog_rules, &syslog_gates, error);
    if (!rules) {
      *error = "syslog_rules: " + *error;
      return rules.error();
    }
    SyslogOptions options{.udp = syslog.udp,
                          .tcp = syslog.tcp,
                          .max_message_bytes = static_cast<std::size_t>(syslog.max_message_bytes),
                          .max_connections = static_cast<std::size_t>(syslog.max_connections),
                          .idle_timeout = syslog.idle_timeout};
    auto source = SyslogSource::Open(std::move(options), std::move(*rules), std::move(syslog_gates), error);
    if (!source) {
      return source.error();
    }
    sources.push_back(std::move(*source));
  } else if (!config.sources.syslog_rules.empty()) {
    *error = "syslog_rules are set but neither syslog.udp nor syslog.tcp: no syslog would ever be received";
    return Fail(BadRule());
  }
  return sources;
}

}  // namespace lifeline::agent

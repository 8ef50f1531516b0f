#include "agent/sources_config.h"

namespace lifeline::agent {
namespace {

using std::chrono::seconds;

void DeclareGate(config::Schema& item, GateConfig& gate) {
  item.Int("min_count", &gate.min_count, 1, 1000000, "occurrences within `window` before the first alert")
      .Duration("window", &gate.window, seconds(1), seconds(7 * 86400),
                "counting window of min_count and max_per_window (in memory: a restart resets it)")
      .Int("max_per_window", &gate.max_per_window, 0, 1000000, "alerts per window for one code; 0: no cap");
}

void DeclareRule(config::Schema& item, RuleConfig& rule, const char* what) {
  item.RequiredString("name", &rule.name, "rule name, for logs")
      .RequiredString("pattern", &rule.pattern, std::string("RE2 regular expression searched in each ") + what)
      .RequiredString("code", &rule.code, "alert code; may use {1}..{9} capture groups")
      .Choice("severity", &rule.severity, {"info", "warning", "error", "critical"}, "alert severity")
      .String("message", &rule.message, "message template: {line}, {0}, {1}..{9}")
      .String("clear_pattern", &rule.clear_pattern,
              "RE2 expression: a matching line sends a clear with the same code (code built from its groups)");
  DeclareGate(item, rule.gate);
}

}  // namespace

void DeclareSourceOptions(config::Schema& schema, SourcesConfig& sources) {
  schema.Int("watch.poll_interval_ms", &sources.poll_interval_ms, 10, 60000, "how often log files are checked")
      .TableArray<WatchedLog>(
          "logs", &sources.logs,
          [](config::Schema& item, WatchedLog& log) {
            item.RequiredString("path", &log.path, "log file to follow (rotation is followed)")
                .Bool("from_beginning", &log.from_beginning,
                      "on the very first start, also read what the file already holds");
          },
          "log files to watch")
      .TableArray<RuleConfig>(
          "rules", &sources.rules, [](config::Schema& item, RuleConfig& rule) { DeclareRule(item, rule, "log line"); },
          "rules turning log lines into alerts; the first matching rule wins")
      .TableArray<CommandCheckConfig>(
          "checks.command", &sources.command_checks,
          [](config::Schema& item, CommandCheckConfig& check) {
            item.RequiredString("name", &check.name, "check name")
                .StringList("command", &check.command,
                            "program and arguments (no shell), or one shell command line with shell = true")
                .Bool("shell", &check.shell, "run command[0] with /bin/sh -c")
                .Duration("interval", &check.interval, seconds(1), seconds(7 * 86400), "how often it runs")
                .Duration("timeout", &check.timeout, seconds(1), seconds(3600),
                          "the command's process group is killed after this; counts as an error")
                .String("code", &check.code, "alert code (default: the name)")
                .String("exit_status", &check.exit_status,
                        "exit status to level: \"STATUS=LEVEL ...\", LEVEL ok/info/warning/error/critical, * = any other")
                .String("message", &check.message, "alert text template: {name}, {status}, {output}")
                .TableArray<OutputPatternConfig>(
                    "patterns", &check.patterns,
                    [](config::Schema& p, OutputPatternConfig& pattern) {
                      p.RequiredString("pattern", &pattern.pattern, "RE2 expression matched against each output line")
                          .RequiredString("code", &pattern.code, "alert code; {1}..{9} capture groups")
                          .Choice("severity", &pattern.severity, {"info", "warning", "error", "critical"},
                                  "alert severity")
                          .String("message", &pattern.message,
                                  "alert text: {line}, {0}, {1}..{9}, {name}, {status}, {output}");
                    },
                    "output patterns; the first matching line wins over the exit status");
            DeclareGate(item, check.gate);
          },
          "command checks: run on a schedule; a failure alerts once, passing again clears")
      .TableArray<HealthCheckConfig>(
          "checks.health", &sources.health_checks,
          [](config::Schema& item, HealthCheckConfig& check) {
            item.RequiredString("name", &check.name, "check name")
                .Choice("kind", &check.kind, {"filesystem", "memory", "load", "process", "unit", "file_age"},
                        "what is checked (required)")
                .String("path", &check.path, "filesystem: a path on it; file_age: the file")
                .String("process", &check.process, "process: name (as in /proc/PID/comm or argv[0])")
                .String("unit", &check.unit, "unit: systemd unit that must be active (systemctl is-active)")
                .Int("max_percent", &check.max_percent, 1, 100, "filesystem: used percent above this alerts")
                .Int("min_available_mb", &check.min_available_mb, 0, 1 << 30,
                     "memory: MemAvailable below this many MiB alerts")
                .String("max_load", &check.max_load, "load: 1-minute load average above this alerts, e.g. \"8.5\"")
                .Duration("max_age", &check.max_age, seconds(1), seconds(365 * 86400),
                          "file_age: a file not modified for longer alerts")
                .Duration("interval", &check.interval, seconds(1), seconds(86400), "how often it runs")
                .String("code", &check.code, "alert code (default: the name)")
                .Choice("severity", &check.severity, {"info", "warning", "error", "critical"}, "alert severity");
            DeclareGate(item, check.gate);
          },
          "built-in health checks; each alerts and clears")
      .String("syslog.udp", &sources.syslog.udp, "listen for syslog on UDP at ADDRESS:PORT (e.g. 127.0.0.1:5514); off when empty")
      .String("syslog.tcp", &sources.syslog.tcp, "listen for syslog on TCP at ADDRESS:PORT; off when empty")
      .Int("syslog.max_message_bytes", &sources.syslog.max_message_bytes, 480, 1 << 20,
           "longer messages are cut (TCP lines) or dropped (UDP, octet-counted TCP)")
      .Int("syslog.max_connections", &sources.syslog.max_connections, 1, 10000, "TCP connections at once")
      .Duration("syslog.idle_timeout", &sources.syslog.idle_timeout, seconds(1), seconds(86400),
                "a TCP connection silent this long is closed")
      .TableArray<RuleConfig>(
          "syslog_rules", &sources.syslog_rules,
          [](config::Schema& item, RuleConfig& rule) { DeclareRule(item, rule, "syslog message text"); },
          "rules for syslog messages (text only); templates also get {host}, {app}, {severity}, {facility}");
}

}  // namespace lifeline::agent

#include "agent/sources_config.h"

namespace lifeline::agent {

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
          "rules", &sources.rules,
          [](config::Schema& item, RuleConfig& rule) {
            item.RequiredString("name", &rule.name, "rule name, for logs")
                .RequiredString("pattern", &rule.pattern, "regular expression matched against each line")
                .RequiredString("code", &rule.code, "alert code; may use {1}..{9} capture groups")
                .Choice("severity", &rule.severity, {"info", "warning", "error", "critical"}, "alert severity")
                .String("message", &rule.message, "message template: {line}, {0}, {1}..{9}");
          },
          "rules turning log lines into alerts; the first matching rule wins");
}

}  // namespace lifeline::agent

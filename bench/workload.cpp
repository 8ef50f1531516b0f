#include "bench/workload.h"

#include <fmt/format.h>

#include <array>

namespace lifeline::bench {

std::vector<agent::LogRule> TenRules() {
  using protocol::Severity;
  return {
      {"sim", "SIM=([0-9A-F]{6}) (.*)", "SIM-{1}", Severity::kCritical, "{2}"},
      {"drive_failed", "drive (HDD[0-9]{2}-[0-9]{2}) failed", "DRIVE-FAILED", Severity::kCritical, "{line}"},
      {"psu_voltage", "power supply (PS-[0-9]) voltage out of range", "PSU-{1}", Severity::kError, "{line}"},
      {"fan", "fan (failure|stopped) on (DKC|DKU)-[0-9]+", "FAN-{2}", Severity::kError, "{line}"},
      {"battery", "cache battery (BAT-[0-9]) (low|failed)", "BATTERY-{2}", Severity::kWarning, "{line}"},
      {"path_lost", "path (CL[0-9]-[A-H]) (lost|offline)", "PATH-{1}", Severity::kError, "{line}"},
      {"pool_full", "pool (POOL[0-9]+) usage (9[0-9])% exceeds threshold", "POOL-{1}", Severity::kWarning,
       "{line}"},
      {"temperature", "temperature sensor ([A-Z0-9-]+) ([0-9]+)C critical", "TEMP-{1}", Severity::kCritical,
       "{line}"},
      {"replication", "replication session (RS-[0-9]+) suspended", "REPL-SUSPENDED", Severity::kError,
       "{line}"},
      {"controller", "controller (CTL[0-9]) (reset|panic)", "CTL-{2}", Severity::kCritical, "{line}"},
  };
}

std::string ArrayLogLine(std::uint64_t index, std::uint64_t match_every) {
  // A fixed timestamp keeps lines the same length run to run; the rules do not look at it.
  const auto prefix = fmt::format("2024-05-14T10:22:{:02}.{:06}+02:00 array01 ctrl{}[{}]: ", index % 60,
                                  index % 1000000, index % 2, 2200 + index % 64);
  if (IsMatchingLine(index, match_every)) {
    // Few distinct alert codes, so the home joins repeats to a handful of tickets.
    switch ((index / match_every) % 4) {
      case 0:
        return prefix + fmt::format("ERROR SIM=3A21F{} drive enclosure DKU-01 fan failure detected",
                                    index / match_every % 2);
      case 1:
        return prefix + "CRITICAL raid: RG 1-3 drive HDD05-12 failed, rebuild to spare HDD07-00 started";
      case 2:
        return prefix + "WARNING psu: power supply PS-2 voltage out of range (11.2V), redundancy lost";
      default:
        return prefix + "ERROR fc: path CL1-A lost on host group HG-ORACLE01, multipath degraded";
    }
  }
  switch (index % 6) {
    case 0:
      return prefix + fmt::format("INFO io_stats: pool=POOL01 vol=VOL-{:04} read_iops={} write_iops={} "
                                  "lat_us={} queue={}",
                                  index % 512, 1000 + index % 997, 500 + index % 331, 200 + index % 400, index % 8);
    case 1:
      return prefix + fmt::format("INFO replication: session RS-{:04} in sync, lag_ms={}, bytes={}",
                                  index % 16, index % 50, 1048576 + index % 4096);
    case 2:
      return prefix + fmt::format("NOTICE cache: destage completed for LDEV 00:3A:{:02X}, {} blocks, {} ms",
                                  index % 256, 2048 + index % 128, index % 9);
    case 3:
      return prefix + fmt::format("INFO host_port: CL{}-{} login wwn=50:06:0e:80:12:34:56:{:02x} speed=32G "
                                  "host_group=HG-ESX{:02}",
                                  1 + index % 4, static_cast<char>('A' + index % 8), index % 256, index % 40);
    case 4:
      return prefix + fmt::format("DEBUG scheduler: task=scrub pool=POOL{:02} progress={}% eta={}m "
                                  "throttle=low",
                                  index % 4, index % 100, index % 90);
    default:
      return prefix + fmt::format("INFO env: temperature sensor DKC-IN-{} {}C normal, fan speed {} rpm",
                                  index % 4, 22 + index % 10, 4200 + index % 300);
  }
}

std::string RulesToml() {
  std::string out;
  for (const auto& rule : TenRules()) {
    out += fmt::format("[[rules]]\nname = \"{}\"\npattern = '{}'\ncode = \"{}\"\nseverity = \"{}\"\n"
                       "message = \"{}\"\n",
                       rule.name, rule.pattern, rule.code, protocol::ToString(rule.severity), rule.message);
  }
  return out;
}

std::string RulesAlternation() {
  std::string out;
  for (const auto& rule : TenRules()) {
    out += (out.empty() ? "" : "|") + rule.pattern;
  }
  return out;
}

}  // namespace lifeline::bench

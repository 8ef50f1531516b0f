#include "agent/health_check.h"

#include <fmt/format.h>

#include <sys/statvfs.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace lifeline::agent {
namespace {

namespace fs = std::filesystem;

std::optional<std::string> ReadSmallFile(const fs::path& path, std::size_t limit = 64 * 1024) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return std::nullopt;
  }
  std::string text(limit, '\0');
  in.read(text.data(), static_cast<std::streamsize>(limit));
  text.resize(static_cast<std::size_t>(in.gcount()));
  return text;
}

std::string Basename(std::string_view path) {
  const auto slash = path.rfind('/');
  return std::string(slash == std::string_view::npos ? path : path.substr(slash + 1));
}

}  // namespace

std::optional<HealthKind> ParseHealthKind(std::string_view text) {
  if (text == "filesystem") return HealthKind::kFilesystem;
  if (text == "memory") return HealthKind::kMemory;
  if (text == "load") return HealthKind::kLoad;
  if (text == "process") return HealthKind::kProcess;
  if (text == "unit") return HealthKind::kUnit;
  if (text == "file_age") return HealthKind::kFileAge;
  return std::nullopt;
}

std::optional<std::int64_t> ParseMemAvailableKib(std::string_view meminfo) {
  std::istringstream lines{std::string(meminfo)};
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("MemAvailable:", 0) == 0) {
      std::istringstream fields(line.substr(13));
      std::int64_t kib = -1;
      if (fields >> kib && kib >= 0) {
        return kib;
      }
      return std::nullopt;
    }
  }
  return std::nullopt;
}

std::optional<double> ParseLoadAverage(std::string_view loadavg) {
  std::istringstream fields{std::string(loadavg)};
  double load = -1;
  if (fields >> load && load >= 0) {
    return load;
  }
  return std::nullopt;
}

std::optional<std::string> HealthCheck::Problem(const std::function<bool()>& cancelled) const {
  switch (spec_.kind) {
    case HealthKind::kFilesystem: {
      struct statvfs st {};
      if (::statvfs(spec_.path.c_str(), &st) != 0) {
        return fmt::format("cannot read the usage of {}: {}", spec_.path, std::strerror(errno));
      }
      // As df computes it: used / (used + available to unprivileged users).
      const double used = static_cast<double>(st.f_blocks - st.f_bfree);
      const double total = used + static_cast<double>(st.f_bavail);
      const double percent = total > 0 ? 100.0 * used / total : 0.0;
      if (percent > static_cast<double>(spec_.max_percent)) {
        return fmt::format("{} is {:.0f}% full (threshold {}%)", spec_.path, percent, spec_.max_percent);
      }
      return std::nullopt;
    }
    case HealthKind::kMemory: {
      const auto text = ReadSmallFile(fs::path(spec_.proc_root) / "meminfo");
      const auto kib = text ? ParseMemAvailableKib(*text) : std::nullopt;
      if (!kib) {
        return std::string("cannot read MemAvailable from /proc/meminfo");
      }
      if (*kib / 1024 < spec_.min_available_mb) {
        return fmt::format("only {} MiB of memory available (threshold {} MiB)", *kib / 1024,
                           spec_.min_available_mb);
      }
      return std::nullopt;
    }
    case HealthKind::kLoad: {
      const auto text = ReadSmallFile(fs::path(spec_.proc_root) / "loadavg");
      const auto load = text ? ParseLoadAverage(*text) : std::nullopt;
      if (!load) {
        return std::string("cannot read /proc/loadavg");
      }
      if (*load > spec_.max_load) {
        return fmt::format("load average {:.2f} (threshold {:.2f})", *load, spec_.max_load);
      }
      return std::nullopt;
    }
    case HealthKind::kProcess: {
      std::error_code ec;
      for (fs::directory_iterator it(spec_.proc_root, ec), end; !ec && it != end; it.increment(ec)) {
        const std::string pid = it->path().filename().string();
        if (pid.empty() || pid.find_first_not_of("0123456789") != std::string::npos) {
          continue;
        }
        if (auto comm = ReadSmallFile(it->path() / "comm", 256)) {
          while (!comm->empty() && comm->back() == '\n') {
            comm->pop_back();
          }
          if (*comm == spec_.target) {
            return std::nullopt;
          }
        }
        // comm is cut at 15 characters; argv[0] carries the full name.
        if (auto cmdline = ReadSmallFile(it->path() / "cmdline", 4096)) {
          const std::string argv0(cmdline->c_str());
          if (!argv0.empty() && (argv0 == spec_.target || Basename(argv0) == spec_.target)) {
            return std::nullopt;
          }
        }
      }
      return fmt::format("process {} is not running", spec_.target);
    }
    case HealthKind::kUnit: {
      auto ran = RunCommand({"systemctl", "is-active", spec_.target}, std::chrono::seconds(10), 4096, cancelled);
      if (!ran) {
        return fmt::format("cannot check unit {}: systemctl cannot run: {}", spec_.target, ran.error().message());
      }
      if (ran->timed_out) {
        return fmt::format("cannot check unit {}: systemctl gave no answer within 10 s", spec_.target);
      }
      std::string state = ran->output;
      while (!state.empty() && (state.back() == '\n' || state.back() == ' ')) {
        state.pop_back();
      }
      if (ran->exit_status == 0 && state == "active") {
        return std::nullopt;
      }
      return fmt::format("unit {} is {}", spec_.target, state.empty() ? "not active" : state);
    }
    case HealthKind::kFileAge: {
      std::error_code ec;
      const auto modified = fs::last_write_time(spec_.path, ec);
      if (ec) {
        return fmt::format("{} cannot be read: {}", spec_.path, ec.message());
      }
      const auto age = std::chrono::duration_cast<std::chrono::seconds>(fs::file_time_type::clock::now() - modified);
      if (age > spec_.max_age) {
        return fmt::format("{} not updated for {} s (threshold {} s)", spec_.path, age.count(), spec_.max_age.count());
      }
      return std::nullopt;
    }
  }
  return std::nullopt;
}

CheckOutcome HealthCheck::Run(const std::function<bool()>& cancelled) {
  CheckOutcome outcome;
  if (auto problem = Problem(cancelled)) {
    outcome.ok = false;
    outcome.alert = {CleanText(spec_.code, RuleSet::kMaxCodeBytes), spec_.severity,
                     CleanText(spec_.name + ": " + *problem, RuleSet::kMaxTextBytes),
                     CleanText("health " + spec_.name, RuleSet::kMaxSourceBytes)};
  }
  return outcome;
}

}  // namespace lifeline::agent

#include "agent/reports.h"

#include "agent/config_report.h"
#include "agent/heartbeat_source.h"
#include "agent/inventory.h"
#include "agent/log_follower.h"  // Errc
#include "agent/performance.h"

#include <fmt/format.h>
#include <sodium.h>

#include <algorithm>
#include <cmath>

#include <fcntl.h>
#include <unistd.h>

namespace lifeline::agent {
namespace {

// The length of the valid UTF-8 sequence starting at `s[0]`, or 0 when it is not one (overlong forms,
// surrogates and code points above U+10FFFF are invalid, as in RFC 3629).

}  // namespace

std::chrono::milliseconds JitteredInterval(std::chrono::milliseconds interval, double fraction,
                                           std::mt19937_64& random) {
  fraction = std::clamp(fraction, 0.0, 0.9);
  std::uniform_real_distribution<double> factor(1.0 - fraction, 1.0 + fraction);
  const double ms = static_cast<double>(interval.count()) * factor(random);
  return std::chrono::milliseconds(std::max<std::int64_t>(1, std::llround(ms)));
}


// libsodium rather than OpenSSL: the resident agent links no OpenSSL (about 3 MiB resident when loaded).
std::string Sha256Hex(std::string_view data) {
  // No sodium_init(): SHA-256 needs no CPU dispatch or random numbers, and init would link all of
  // libsodium's primitives into the resident agent.
  unsigned char digest[crypto_hash_sha256_BYTES];
  if (crypto_hash_sha256(digest, reinterpret_cast<const unsigned char*>(data.data()), data.size()) != 0) {
    return {};
  }
  std::string hex;
  hex.reserve(sizeof digest * 2);
  for (unsigned int i = 0; i < sizeof digest; ++i) {
    hex += fmt::format("{:02x}", digest[i]);
  }
  return hex;
}

Result<std::string> ReadFileBounded(const std::string& path, std::size_t max_bytes, bool* truncated) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    return std::error_code(errno, std::generic_category());
  }
  // /proc files report size 0, so read until EOF (or one byte past the limit) rather than trusting stat.
  std::string data;
  char buffer[16 * 1024];
  while (data.size() <= max_bytes) {
    const ssize_t got = ::read(fd, buffer, sizeof buffer);
    if (got < 0) {
      if (errno == EINTR) {
        continue;
      }
      const std::error_code ec(errno, std::generic_category());
      ::close(fd);
      return ec;
    }
    if (got == 0) {
      break;
    }
    data.append(buffer, static_cast<std::size_t>(got));
  }
  ::close(fd);
  const bool more = data.size() > max_bytes;
  if (more) {
    data.resize(max_bytes);
  }
  if (truncated != nullptr) {
    *truncated = more;
  }
  return data;
}

PeriodicSource::~PeriodicSource() { Stop(); }

void PeriodicSource::Start(DetectionSink& sink) {
  {
    std::lock_guard lock(mutex_);
    stopping_ = false;
  }
  thread_ = std::thread([this, &sink] {
    std::unique_lock lock(mutex_);
    while (!stopping_) {
      lock.unlock();
      const auto wait = Tick(sink);
      lock.lock();
      wake_.wait_for(lock, wait, [this] { return stopping_ || woken_; });
      woken_ = false;
    }
  });
}

void PeriodicSource::Wake() {
  {
    std::lock_guard lock(mutex_);
    woken_ = true;
  }
  wake_.notify_all();
}

void PeriodicSource::Stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) {
    thread_.join();
  }
}

Result<std::vector<std::unique_ptr<Source>>> MakeReportSources(const AgentConfig& config, AgentQueue& queue,
                                                               std::string* error, ReportHooks hooks) {
  const ReportsConfig& reports = config.reports;
  const auto refuse = [&](std::string why) -> Result<std::vector<std::unique_ptr<Source>>> {
    if (error != nullptr) {
      *error = std::move(why);
    }
    return Fail(Errc::kBadRule);
  };
  if (reports.inventory_enabled && reports.inventory_check_interval > reports.inventory_interval) {
    return refuse("key 'inventory.check_interval': must not exceed inventory.interval");
  }
  if (reports.performance_enabled && reports.performance_sample_interval > reports.performance_report_interval) {
    return refuse("key 'performance.sample_interval': must not exceed performance.report_interval");
  }

  std::vector<std::unique_ptr<Source>> sources;
  HeartbeatOptions heartbeat;
  heartbeat.interval = reports.heartbeat_interval;
  heartbeat.jitter = static_cast<double>(reports.heartbeat_jitter_percent) / 100.0;
  heartbeat.queue_status = std::move(hooks.queue_status);
  if (!heartbeat.queue_status) {
    AgentQueue* q = &queue;
    heartbeat.queue_status = [q] {
      auto depth = q->Depth();
      return fmt::format("queue depth {}", depth ? *depth : -1);
    };
  }
  sources.push_back(std::make_unique<HeartbeatSource>(std::move(heartbeat)));

  if (reports.inventory_enabled) {
    InventorySourceOptions options;
    options.interval = reports.inventory_interval;
    options.check_interval = reports.inventory_check_interval;
    options.packages = reports.inventory_packages;
    sources.push_back(std::make_unique<InventorySource>(options, queue));
  }

  if (!reports.config_files.empty()) {
    std::vector<ReportedFile> files;
    for (std::size_t i = 0; i < reports.config_files.size(); ++i) {
      const auto& file = reports.config_files[i];
      std::string why;
      auto redactor = Redactor::Compile(file.redact, &why);
      if (!redactor) {
        return refuse(fmt::format("key 'config_files[{}].redact' ({}): {}", i, file.path, why));
      }
      files.push_back({file.path, std::move(*redactor)});
    }
    sources.push_back(std::make_unique<ConfigFileSource>(
        std::move(files), reports.config_files_interval,
        static_cast<std::size_t>(reports.config_files_max_bytes), queue));
  }

  if (reports.performance_enabled) {
    sources.push_back(std::make_unique<PerformanceSource>(reports.performance_sample_interval,
                                                          reports.performance_report_interval));
  }
  return sources;
}

}  // namespace lifeline::agent

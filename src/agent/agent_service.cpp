#include "agent/agent_service.h"

#include "agent/instructions.h"
#include "agent/queue.h"
#include "agent/queue_config.h"
#include "agent/reports.h"
#include "agent/sender_process.h"
#include "agent/sources.h"
#include "common/log.h"

#include <fmt/format.h>

#include <atomic>
#include <filesystem>
#include <fstream>

namespace lifeline::agent {
namespace {

std::shared_ptr<spdlog::logger> Log() { return log::Get("agent"); }

// Reads a small file the sender wrote (the staged configuration's instruction id).
std::string ReadSmallText(const std::filesystem::path& path, std::size_t max) {
  std::ifstream in(path, std::ios::binary);
  std::string text(max, '\0');
  in.read(text.data(), static_cast<std::streamsize>(max));
  text.resize(static_cast<std::size_t>(std::max<std::streamsize>(in.gcount(), 0)));
  return text;
}

}  // namespace

struct AgentService::Parts final : DetectionSink {
  AgentConfig config;
  std::unique_ptr<AgentQueue> queue;
  std::vector<std::unique_ptr<Source>> sources;
  std::unique_ptr<InstructionHandler> instructions;  // records results of staged configurations
  std::unique_ptr<SenderProcess> sender;
  std::atomic<bool> reload_requested{false};

  // Every source stores what it found here; the sender is woken for it.
  bool Emit(std::vector<protocol::Message> drafts,
            std::optional<std::pair<std::string, FilePosition>> position) override {
    const bool has_messages = !drafts.empty();
    auto stored = queue->Enqueue(std::move(drafts), std::move(position));
    if (!stored) {
      Log()->error("cannot store in the queue {}: {}", config.QueuePath().string(), stored.error().message());
      return false;
    }
    if (has_messages && sender) {
      sender->Wake();
    }
    return true;
  }

  bool HasWork() {
    auto next = queue->Peek(1);
    return !next || !next->empty() || !instructions->PendingResults().empty();
  }

  void SendInventoryNow() {
    for (auto& source : sources) {
      if (source->SendNow()) {
        return;
      }
    }
    Log()->warn("the home asked for an inventory report, but inventory is disabled in this agent's config");
  }
};

Result<std::unique_ptr<AgentService>> AgentService::Start(const AgentConfig& config,
                                                         const std::vector<std::string>& sender_argv) {
  auto parts = std::make_unique<Parts>();
  parts->config = config;
  std::error_code ec;
  std::filesystem::create_directories(config.state_dir, ec);
  auto queue = OpenQueue(config);
  if (!queue) {
    Log()->error("cannot open the queue {}: {}", config.QueuePath().string(), queue.error().message());
    return queue.error();
  }
  parts->queue = std::move(*queue);

  std::string error;
  auto detection = MakeDetectionSources(config, *parts->queue, &error);
  if (!detection) {
    Log()->error("{}", error);
    return detection.error();
  }
  // The heartbeat tells the home how full the queue is and what it ever had to drop.
  ReportHooks report_hooks;
  AgentQueue* queue_for_status = parts->queue.get();
  report_hooks.queue_status = [queue_for_status] {
    auto stats = queue_for_status->Stats();
    if (!stats) {
      return std::string("queue unreadable");
    }
    return fmt::format("queue depth {}, {} KiB of {} KiB{}{}", stats->Depth(), stats->bytes_used / 1024,
                       stats->max_bytes / 1024, stats->evicted.empty() ? "" : ", evicted ",
                       FormatEvictionCounts(stats->evicted));
  };
  auto reports = MakeReportSources(config, *parts->queue, &error, report_hooks);
  if (!reports) {
    Log()->error("{}", error);
    return reports.error();
  }
  for (auto* list : {&*detection, &*reports}) {
    for (auto& source : *list) {
      parts->sources.push_back(std::move(source));
    }
  }

  parts->instructions = std::make_unique<InstructionHandler>(*parts->queue, *parts, InstructionHooks{});

  // The sender process reads the keys; missing ones are reported here, at start, where an operator looks.
  const AgentPkiPaths paths(config.pki_dir);
  for (const auto& [path, advice] :
       {std::pair{paths.device_sign_key, "has this device been enrolled? run `lifeline agent enroll`"},
        std::pair{paths.device_cert, "enroll this device first (`lifeline agent enroll`)"},
        std::pair{paths.home_seal_public, "copy it from the home's PKI directory"},
        std::pair{paths.home_sign_public, "copy it from the home's PKI directory"}}) {
    if (!std::filesystem::exists(path)) {
      Log()->error("{} is missing: {}", path.string(), advice);
      return std::make_error_code(std::errc::no_such_file_or_directory);
    }
  }

  Parts* self = parts.get();
  SenderProcess::Hooks hooks;
  hooks.has_work = [self] { return self->HasWork(); };
  hooks.inventory_requested = [self] { self->SendInventoryNow(); };
  hooks.reload_requested = [self] { self->reload_requested = true; };
  parts->sender = std::make_unique<SenderProcess>(
      SenderProcess::Options{.argv = sender_argv, .retry_min = config.retry_min, .retry_max = config.retry_max},
      std::move(hooks));

  for (auto& source : parts->sources) {
    source->Start(*parts);
  }
  parts->sender->Start();
  Log()->info("agent {} started: home {}, {} log(s), {} rule(s), {} source(s), heartbeat every {} s",
              config.device.Key(), config.home_url, config.sources.logs.size(), config.sources.rules.size(),
              parts->sources.size(), config.reports.heartbeat_interval.count());
  return std::unique_ptr<AgentService>(new AgentService(std::move(parts)));
}

AgentService::AgentService(std::unique_ptr<Parts> parts) : parts_(std::move(parts)) {}

bool AgentService::ReloadRequested() const { return parts_ && parts_->reload_requested; }

void AgentService::RecordInstructionResult(const protocol::InstructionResult& result) {
  parts_->instructions->RecordResult(result);
  parts_->sender->Wake();  // the result goes home with the next batch, even an empty one
}

Result<std::unique_ptr<AgentService>> ApplyStagedConfig(const AgentConfig& current,
                                                       const std::vector<std::string>& sender_argv) {
  const std::filesystem::path path = current.config_path;
  const std::filesystem::path staged = current.config_path + ".staged";
  const std::filesystem::path previous = current.config_path + ".previous";
  const std::string instruction_id = ReadSmallText(staged.string() + "-id", 64);
  std::error_code ec;
  std::filesystem::copy_file(path, previous, std::filesystem::copy_options::overwrite_existing, ec);
  if (!ec) {
    std::filesystem::rename(staged, path, ec);
  }
  std::filesystem::remove(staged.string() + "-id");
  std::string failure;
  if (ec) {
    failure = "cannot replace " + path.string() + ": " + ec.message();
  } else {
    try {
      auto next = AgentService::Start(AgentConfig::Load(path), sender_argv);
      if (next) {
        Log()->info("configuration from home (instruction {}) applied; previous one kept as {}",
                    instruction_id.substr(0, 8), previous.string());
        (*next)->RecordInstructionResult({instruction_id, "done", ""});
        return next;
      }
      failure = "the agent did not start with it: " + next.error().message();
    } catch (const config::ConfigError& e) {
      failure = e.what();
    }
    std::filesystem::rename(previous, path, ec);
  }
  Log()->error("configuration from home (instruction {}) rolled back: {}", instruction_id.substr(0, 8), failure);
  auto restored = AgentService::Start(AgentConfig::Load(path), sender_argv);
  if (restored) {
    (*restored)->RecordInstructionResult({instruction_id, "failed", "rolled back: " + failure});
  }
  return restored;
}
AgentService::~AgentService() { Stop(); }

void AgentService::Stop() {
  if (!parts_) {
    return;
  }
  for (auto& source : parts_->sources) {
    source->Stop();
  }
  parts_->sender->Stop();
  auto depth = parts_->queue->Depth();
  Log()->info("agent stopped; {} message(s) stay queued", depth ? *depth : -1);
  parts_.reset();
}

Result<std::string> StatusReport(const AgentConfig& config) {
  auto queue = AgentQueue::OpenForStatus(config.QueuePath());
  if (!queue) {
    return queue.error();
  }
  auto depth = (*queue)->Depth();
  auto last_contact = (*queue)->GetState("last_contact_ms");
  auto tickets = (*queue)->RecentTickets(10);
  if (!depth || !last_contact || !tickets) {
    return std::make_error_code(std::errc::io_error);
  }
  std::string text = fmt::format("device:        {}\nhome:          {}\nqueue depth:   {}\n", config.device.Key(),
                                 config.home_url, *depth);
  if (last_contact->has_value()) {
    const auto ms = std::stoll(**last_contact);
    text += fmt::format("last contact:  {}\n",
                        FormatRfc3339(std::chrono::system_clock::time_point(std::chrono::milliseconds(ms))));
  } else {
    text += "last contact:  never\n";
  }
  text += fmt::format("tickets:       {}\n", tickets->empty() ? "none received" : "");
  for (const auto& t : *tickets) {
    text += fmt::format("  {}  {}  {}\n", t.ticket, t.alert_code,
                        FormatRfc3339(std::chrono::system_clock::time_point(std::chrono::milliseconds(t.received_at_ms))));
  }
  return text;
}

}  // namespace lifeline::agent

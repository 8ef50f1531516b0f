#include "agent/agent_service.h"

#include "agent/connection_paths.h"
#include "agent/log_follower.h"
#include "agent/queue.h"
#include "agent/instructions.h"
#include "agent/queue_config.h"
#include "agent/reports.h"
#include "agent/rules.h"
#include "agent/sender.h"
#include "agent/sources.h"
#include "common/log.h"
#include "crypto/keys.h"
#include "crypto/pki.h"
#include "protocol/codec.h"

#include <fmt/format.h>

#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <thread>

namespace lifeline::agent {
namespace {

std::shared_ptr<spdlog::logger> Log() { return log::Get("agent"); }

Result<SenderKeys> LoadSenderKeys(const AgentPkiPaths& paths) {
  SenderKeys keys;
  auto sign = crypto::ReadSigningKeyPair(paths.device_sign_key);
  if (!sign) {
    Log()->error("cannot read {}: {} (has this device been enrolled? run `lifeline agent enroll`)",
                 paths.device_sign_key.string(), sign.error().message());
    return sign.error();
  }
  auto seal = crypto::ReadPublicKey(paths.home_seal_public, crypto::KeyKind::kX25519Public);
  auto home_sign = crypto::ReadPublicKey(paths.home_sign_public, crypto::KeyKind::kEd25519Public);
  if (!seal || !home_sign) {
    const auto& path = !seal ? paths.home_seal_public : paths.home_sign_public;
    const auto ec = !seal ? seal.error() : home_sign.error();
    Log()->error("cannot read {}: {} (copy it from the home's PKI directory)", path.string(), ec.message());
    return ec;
  }
  keys.device_sign = *sign;
  keys.home_seal_public = *seal;
  keys.home_sign_public = *home_sign;
  return keys;
}

}  // namespace

struct AgentService::Parts final : DetectionSink {
  AgentConfig config;
  std::unique_ptr<AgentQueue> queue;
  std::unique_ptr<Sender> sender;
  std::vector<std::unique_ptr<Source>> sources;

  std::unique_ptr<InstructionHandler> instructions;
  std::atomic<bool> reload_requested{false};

  std::mutex mutex;
  std::condition_variable wake_sender;
  bool stopping = false;
  bool work_queued = false;
  std::thread sender_thread;

  // apply_config: the new file must parse, keep this device's identity and directories, and build every
  // source; then it is staged beside the config file and the main thread swaps it in.
  bool StageConfig(const std::string& toml, const std::string& id, std::string* detail) {
    if (config.config_path.empty()) {
      *detail = "this agent was not started from a config file";
      return false;
    }
    AgentConfig next;
    try {
      next = AgentConfig::Parse(toml, "configuration from home");
    } catch (const config::ConfigError& e) {
      *detail = e.what();
      return false;
    }
    if (!next.device.SameDevice(config.device) || next.pki_dir != config.pki_dir || next.state_dir != config.state_dir) {
      *detail = "a configuration from home may not change device identity, pki.dir or state.dir";
      return false;
    }
    std::string error;
    if (!MakeDetectionSources(next, *queue, &error) || !MakeReportSources(next, *queue, &error)) {
      *detail = error;
      return false;
    }
    const std::string staged = config.config_path + ".staged";
    if (!crypto::WriteFileAtomically(staged, toml, 0600) || !crypto::WriteFileAtomically(staged + "-id", id, 0600)) {
      *detail = "cannot write " + staged;
      return false;
    }
    reload_requested = true;
    return true;
  }

  // Every source stores what it found here; the sender is woken for it.
  bool Emit(std::vector<protocol::Message> drafts,
            std::optional<std::pair<std::string, FilePosition>> position) override {
    const bool has_messages = !drafts.empty();
    auto stored = queue->Enqueue(std::move(drafts), std::move(position));
    if (!stored) {
      Log()->error("cannot store in the queue {}: {}", config.QueuePath().string(), stored.error().message());
      return false;
    }
    if (has_messages) {
      {
        std::lock_guard lock(mutex);
        work_queued = true;
      }
      wake_sender.notify_one();
    }
    return true;
  }

  void SenderLoop() {
    std::mt19937_64 random(std::random_device{}());
    int failures = 0;
    std::unique_lock lock(mutex);
    while (!stopping) {
      work_queued = false;
      lock.unlock();
      auto outcome = sender->SendOnce();
      lock.lock();
      if (!outcome) {
        // Back off with full jitter; new alerts do not cut the wait short (the home is struggling or gone).
        const auto delay = RetryDelay(failures++, config.retry_min, config.retry_max, random);
        wake_sender.wait_for(lock, delay, [this] { return stopping; });
        continue;
      }
      if (failures > 0) {
        Log()->info("home reachable again after {} failed attempt(s)", failures);
      }
      failures = 0;
      if (outcome->queue_empty) {
        wake_sender.wait_for(lock, std::chrono::seconds(5), [this] { return stopping || work_queued; });
      }
    }
  }
};

Result<std::unique_ptr<AgentService>> AgentService::Start(const AgentConfig& config) {
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

  Parts* self = parts.get();
  InstructionHooks hooks;
  hooks.send_inventory_now = [self] {
    for (auto& source : self->sources) {
      if (source->SendNow()) {
        return true;
      }
    }
    return false;
  };
  hooks.stage_config = [self](const std::string& toml, const std::string& id, std::string* detail) {
    return self->StageConfig(toml, id, detail);
  };
  parts->instructions = std::make_unique<InstructionHandler>(*parts->queue, *parts, std::move(hooks));

  const AgentPkiPaths paths(config.pki_dir);
  auto keys = LoadSenderKeys(paths);
  if (!keys) {
    return keys.error();
  }
  if (!std::filesystem::exists(paths.device_cert)) {
    Log()->error("{} is missing: enroll this device first (`lifeline agent enroll`)", paths.device_cert.string());
    return std::make_error_code(std::errc::no_such_file_or_directory);
  }
  auto sender = MakeSender(config, *parts->queue, *keys);
  if (!sender) {
    return sender.error();
  }
  parts->sender = std::move(*sender);
  parts->sender->SetInstructionHandler(parts->instructions.get());

  for (auto& source : parts->sources) {
    source->Start(*parts);
  }
  Parts* raw = parts.get();
  parts->sender_thread = std::thread([raw] { raw->SenderLoop(); });
  Log()->info("agent {} started: home {}, {} log(s), {} rule(s), {} source(s), heartbeat every {} s",
              config.device.Key(), config.home_url, config.sources.logs.size(), config.sources.rules.size(),
              parts->sources.size(), config.reports.heartbeat_interval.count());
  return std::unique_ptr<AgentService>(new AgentService(std::move(parts)));
}

AgentService::AgentService(std::unique_ptr<Parts> parts) : parts_(std::move(parts)) {}

bool AgentService::ReloadRequested() const { return parts_ && parts_->reload_requested; }

void AgentService::RecordInstructionResult(const protocol::InstructionResult& result) {
  parts_->instructions->RecordResult(result);
}

Result<std::unique_ptr<AgentService>> ApplyStagedConfig(const AgentConfig& current) {
  const std::filesystem::path path = current.config_path;
  const std::filesystem::path staged = current.config_path + ".staged";
  const std::filesystem::path previous = current.config_path + ".previous";
  auto id = crypto::ReadSmallFile(staged.string() + "-id", 64);
  const std::string instruction_id = id ? *id : "";
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
      auto next = AgentService::Start(AgentConfig::Load(path));
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
  auto restored = AgentService::Start(AgentConfig::Load(path));
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
  {
    std::lock_guard lock(parts_->mutex);
    parts_->stopping = true;
  }
  parts_->wake_sender.notify_all();
  for (auto& source : parts_->sources) {
    source->Stop();
  }
  parts_->sender_thread.join();
  auto depth = parts_->queue->Depth();
  Log()->info("agent stopped; {} message(s) stay queued", depth ? *depth : -1);
  parts_.reset();
}

Result<EnrollOutcome> Enroll(const AgentConfig& config, const std::string& token, bool force,
                             std::string* refusal) {
  const AgentPkiPaths paths(config.pki_dir);
  auto fail = [&](std::error_code ec, std::string text) -> Result<EnrollOutcome> {
    *refusal = std::move(text);
    return ec;
  };
  if (std::filesystem::exists(paths.device_cert) && !force) {
    return fail(std::make_error_code(std::errc::file_exists),
                fmt::format("{} exists: this device is already enrolled (use --force to enroll again)",
                            paths.device_cert.string()));
  }
  if (!std::filesystem::exists(paths.ca_cert)) {
    return fail(std::make_error_code(std::errc::no_such_file_or_directory),
                fmt::format("{} is missing: copy ca.crt, home-seal.pub and home-sign.pub from the home's PKI "
                            "directory", paths.ca_cert.string()));
  }
  std::error_code ec;
  std::filesystem::create_directories(config.pki_dir, ec);
  // Keys are made here and only public halves leave: a retry after a failed request reuses them.
  if (!std::filesystem::exists(paths.device_key)) {
    if (auto written = crypto::WritePrivateKeyPem(paths.device_key, crypto::GeneratePrivateKeyPem()); !written) {
      return fail(written.error(), fmt::format("cannot write {}: {}", paths.device_key.string(), written.error().message()));
    }
  }
  if (!std::filesystem::exists(paths.device_sign_key)) {
    if (auto written = crypto::WriteSecretKeyFile(paths.device_sign_key, crypto::GenerateSigningKeyPair()); !written) {
      return fail(written.error(),
                  fmt::format("cannot write {}: {}", paths.device_sign_key.string(), written.error().message()));
    }
  }
  auto key_pem = crypto::ReadSmallFile(paths.device_key, 1 << 16, /*require_private=*/true);
  auto sign = crypto::ReadSigningKeyPair(paths.device_sign_key);
  if (!key_pem || !sign) {
    const auto err = !key_pem ? key_pem.error() : sign.error();
    return fail(err, fmt::format("cannot read the device keys in {}: {}", config.pki_dir, err.message()));
  }
  auto csr = crypto::MakeCsr(*key_pem, config.device);
  if (!csr) {
    return fail(csr.error(), "cannot make a certificate signing request: " + csr.error().message());
  }
  protocol::EnrollRequest request{.token = token,
                                  .device = config.device,
                                  .csr_pem = *csr,
                                  .signing_public_key = crypto::Base64Encode(sign->public_key)};
  transport::HttpClient client(transport::ClientTls{.ca_file = paths.ca_cert.string()});
  // The same paths and endpoints as the sender: enrollment must work where sending does.
  auto routes = MakeConnectionPaths(config, nullptr);
  transport::ClientRequest enroll_request{
      .url = "", .content_type = "application/json", .body = protocol::EncodeEnrollRequest(request),
      .timeout = std::chrono::duration_cast<std::chrono::milliseconds>(config.request_timeout)};
  auto response = routes->Send([&](const transport::ProxySettings& path, const std::string& endpoint,
                                   std::string* detail) {
    enroll_request.url = endpoint + "/v1/enroll";
    enroll_request.proxy = path;
    auto answer = client.Send(enroll_request);
    if (!answer) {
      *detail = client.LastErrorDetail();
    }
    return answer;
  });
  if (!response) {
    return fail(response.error(), fmt::format("cannot reach the home: {}", routes->LastFailure()));
  }
  if (response->status != 200) {
    std::string message;
    const auto reason = protocol::DecodeError(response->body, &message);
    return fail(make_error_code(reason), fmt::format("enrollment refused: {}: {}", protocol::WireName(reason), message));
  }
  std::string why;
  auto enrolled = protocol::DecodeEnrollResponse(response->body, &why);
  if (!enrolled) {
    return fail(enrolled.error(), "unreadable enrollment response: " + why);
  }
  auto ca_pem = crypto::ReadSmallFile(paths.ca_cert, 1 << 20);
  auto identity = crypto::IdentityFromCertificatePem(enrolled->certificate_pem);
  if (!ca_pem || !crypto::VerifyCertificateChain(enrolled->certificate_pem, *ca_pem) || !identity ||
      !identity->SameDevice(config.device)) {
    return fail(make_error_code(protocol::Reject::kBadSignature),
                "the home returned a certificate that is not for this device or not from the pinned CA");
  }
  if (auto written = crypto::WriteFileAtomically(paths.device_cert, enrolled->certificate_pem, 0644); !written) {
    return fail(written.error(), fmt::format("cannot write {}: {}", paths.device_cert.string(), written.error().message()));
  }
  auto fingerprint = crypto::CertificateFingerprintSha256(enrolled->certificate_pem);
  EnrollOutcome outcome;
  outcome.certificate_fingerprint = fingerprint ? *fingerprint : "";
  outcome.message = fmt::format("enrolled {} with {}; certificate {} (SHA-256 {})", config.device.Key(),
                                config.home_url, paths.device_cert.string(), outcome.certificate_fingerprint);
  return outcome;
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

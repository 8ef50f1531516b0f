#include "agent/send_service.h"

#include "agent/backoff.h"
#include "agent/instructions.h"
#include "agent/queue.h"
#include "agent/queue_config.h"
#include "agent/reports.h"
#include "agent/sender.h"
#include "agent/sources.h"
#include "common/log.h"
#include "crypto/keys.h"
#include "crypto/pki.h"

#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <random>

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

// Tells the agent's resident process something; a gone agent is noticed on the wake pipe instead.
void TellAgent(int event_fd, std::string_view line) {
  std::string text(line);
  text += '\n';
  (void)!::write(event_fd, text.data(), text.size());
}

// What the instruction handler stores (a test alert) goes into the queue this process sends from.
struct QueueSink final : DetectionSink {
  explicit QueueSink(AgentQueue& queue) : queue(queue) {}
  bool Emit(std::vector<protocol::Message> drafts,
            std::optional<std::pair<std::string, FilePosition>> position) override {
    auto stored = queue.Enqueue(std::move(drafts), std::move(position));
    if (!stored) {
      Log()->error("cannot store in the queue: {}", stored.error().message());
      return false;
    }
    queued_here = true;
    return true;
  }
  AgentQueue& queue;
  bool queued_here = false;
};

// apply_config: the new file must parse, keep this device's identity and directories, and build every
// source; then it is staged beside the config file and the agent swaps it in.
bool StageConfig(const AgentConfig& config, AgentQueue& queue, const std::string& toml, const std::string& id,
                 std::string* detail) {
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
  if (!next.device.SameDevice(config.device) || next.pki_dir != config.pki_dir ||
      next.state_dir != config.state_dir) {
    *detail = "a configuration from home may not change device identity, pki.dir or state.dir";
    return false;
  }
  std::string error;
  if (!MakeDetectionSources(next, queue, &error) || !MakeReportSources(next, queue, &error)) {
    *detail = error;
    return false;
  }
  const std::string staged = config.config_path + ".staged";
  if (!crypto::WriteFileAtomically(staged, toml, 0600) ||
      !crypto::WriteFileAtomically(staged + "-id", id, 0600)) {
    *detail = "cannot write " + staged;
    return false;
  }
  return true;
}

// Waits up to `timeout` for a wake byte. Returns false when the agent has gone (end of file).
bool WaitForWake(int fd, std::chrono::milliseconds timeout, bool* woken) {
  *woken = false;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    pollfd watch{.fd = fd, .events = POLLIN, .revents = 0};
    const int ready = ::poll(&watch, 1, static_cast<int>(std::max<std::int64_t>(left.count(), 0)));
    if (ready < 0 && errno == EINTR) {
      continue;
    }
    if (ready <= 0) {
      return true;
    }
    char bytes[64];
    const ssize_t n = ::read(fd, bytes, sizeof bytes);
    if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) {
      return false;
    }
    *woken = true;
    return true;
  }
}

}  // namespace

int RunSendService(const AgentConfig& config, const SendServiceOptions& options) {
  auto queue = OpenQueue(config);
  if (!queue) {
    Log()->error("sender: cannot open the queue {}: {}", config.QueuePath().string(), queue.error().message());
    return 1;
  }
  const AgentPkiPaths paths(config.pki_dir);
  auto keys = LoadSenderKeys(paths);
  if (!keys) {
    return 1;
  }
  if (!std::filesystem::exists(paths.device_cert)) {
    Log()->error("{} is missing: enroll this device first (`lifeline agent enroll`)", paths.device_cert.string());
    return 1;
  }
  auto sender = MakeSender(config, **queue, *keys);
  if (!sender) {
    return 1;
  }
  QueueSink sink(**queue);
  bool reload_staged = false;
  InstructionHooks hooks;
  hooks.send_inventory_now = [&] {
    TellAgent(options.event_fd, "inventory");
    return config.reports.inventory_enabled;
  };
  hooks.stage_config = [&](const std::string& toml, const std::string& id, std::string* detail) {
    if (!StageConfig(config, **queue, toml, id, detail)) {
      return false;
    }
    reload_staged = true;
    return true;
  };
  InstructionHandler instructions(**queue, sink, std::move(hooks));
  (*sender)->SetInstructionHandler(&instructions);

  std::mt19937_64 random(std::random_device{}());
  int failures = 0;
  for (;;) {
    sink.queued_here = false;
    auto outcome = (*sender)->SendOnce();
    if (reload_staged) {
      // The agent restarts everything with the new configuration, this process included.
      TellAgent(options.event_fd, "reload");
      return 0;
    }
    bool woken = false;
    if (!outcome) {
      // Back off with full jitter; new alerts do not cut the wait short (the home is struggling or gone).
      const auto delay = RetryDelay(failures++, config.retry_min, config.retry_max, random);
      const auto until = std::chrono::steady_clock::now() + delay;
      while (std::chrono::steady_clock::now() < until) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
        if (!WaitForWake(options.wake_fd, left, &woken)) {
          return 0;  // the agent has gone; the queue keeps everything for the next one
        }
      }
      continue;
    }
    if (failures > 0) {
      Log()->info("home reachable again after {} failed attempt(s)", failures);
    }
    failures = 0;
    if (!outcome->queue_empty || sink.queued_here) {
      continue;
    }
    // Idle: stay a little for what comes next (one connection for a burst), then leave the agent small.
    if (!WaitForWake(options.wake_fd, options.idle_exit, &woken)) {
      return 0;
    }
    if (!woken) {
      auto last = (*sender)->SendOnce();
      if (last && last->queue_empty && last->sent == 0 && !sink.queued_here && !reload_staged) {
        return 0;
      }
    }
  }
}

}  // namespace lifeline::agent

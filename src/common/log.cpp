#include "common/log.h"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>

#include <mutex>

namespace lifeline::log {
namespace {

// Writes the message escaped as a JSON string body; spdlog's %v would emit quotes and newlines raw.
class JsonEscapedMessage final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&, spdlog::memory_buf_t& dest) override {
    for (char c : msg.payload) {
      switch (c) {
        case '"': dest.append(std::string_view("\\\"")); break;
        case '\\': dest.append(std::string_view("\\\\")); break;
        case '\n': dest.append(std::string_view("\\n")); break;
        case '\r': dest.append(std::string_view("\\r")); break;
        case '\t': dest.append(std::string_view("\\t")); break;
        default:
          if (static_cast<unsigned char>(c) < 0x20) {
            fmt::format_to(std::back_inserter(dest), "\\u{:04x}", static_cast<int>(c));
          } else {
            dest.push_back(c);
          }
      }
    }
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<JsonEscapedMessage>();
  }
};

std::mutex g_mutex;
Format g_format = Format::kText;
spdlog::level::level_enum g_level = spdlog::level::info;

std::unique_ptr<spdlog::formatter> MakeFormatter(Format format) {
  auto formatter = std::make_unique<spdlog::pattern_formatter>();
  if (format == Format::kJson) {
    formatter->add_flag<JsonEscapedMessage>('*').set_pattern(
        R"({"time":"%Y-%m-%dT%H:%M:%S.%e%z","level":"%l","logger":"%n","pid":%P,"msg":"%*"})");
  } else {
    formatter->set_pattern("%Y-%m-%d %H:%M:%S.%e %^%-5l%$ [%n] %v");
  }
  return formatter;
}

void Configure(spdlog::logger& logger) {
  logger.set_formatter(MakeFormatter(g_format));
  logger.set_level(g_level);
  logger.flush_on(spdlog::level::info);
}

}  // namespace

void Init(Format format, spdlog::level::level_enum level) {
  std::lock_guard lock(g_mutex);
  g_format = format;
  g_level = level;
  spdlog::apply_all([](const std::shared_ptr<spdlog::logger>& logger) { Configure(*logger); });
}

bool ParseFormat(std::string_view text, Format* out) {
  if (text == "text") {
    *out = Format::kText;
    return true;
  }
  if (text == "json") {
    *out = Format::kJson;
    return true;
  }
  return false;
}

std::shared_ptr<spdlog::logger> Get(const std::string& module) {
  std::lock_guard lock(g_mutex);
  if (auto existing = spdlog::get(module)) {
    return existing;
  }
  auto logger = spdlog::stderr_logger_mt(module);
  Configure(*logger);
  return logger;
}

}  // namespace lifeline::log

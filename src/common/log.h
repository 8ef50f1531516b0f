#pragma once
// Logging: spdlog, one named logger per module, readable text by default and JSON lines for machines.
#include <spdlog/spdlog.h>

#include <memory>
#include <string>
#include <string_view>

namespace lifeline::log {

enum class Format { kText, kJson };

/// Configures every logger: format, level, output to stderr. Call once at start-up; safe to call again.
void Init(Format format, spdlog::level::level_enum level = spdlog::level::info);

/// Parses "text" or "json"; returns false for anything else.
bool ParseFormat(std::string_view text, Format* out);

/// The logger for a module ("home", "agent", "transport", ...), created on first use.
std::shared_ptr<spdlog::logger> Get(const std::string& module);

}  // namespace lifeline::log

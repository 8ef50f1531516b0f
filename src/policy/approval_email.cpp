#include "policy/approval_email.h"

#include "common/clock.h"

#include <fmt/format.h>

#include <chrono>

namespace lifeline::policy {
namespace {

std::string Time(std::int64_t ms) {
  return FormatRfc3339(std::chrono::system_clock::time_point(std::chrono::milliseconds(ms)));
}

std::string Duration(std::int64_t seconds) {
  if (seconds % 3600 == 0) {
    return fmt::format("{} h", seconds / 3600);
  }
  if (seconds % 60 == 0) {
    return fmt::format("{} min", seconds / 60);
  }
  return fmt::format("{} s", seconds);
}

std::string OrNone(const std::string& text) { return text.empty() ? "(none given)" : text; }

}  // namespace

transport::Email ComposeApprovalEmail(const ApprovalRequest& r, const std::vector<std::string>& to,
                                      std::string_view api_url) {
  // What is being asked for: the application for a remote session, else the activity.
  const std::string what = r.application.empty() ? r.activity : r.application;
  transport::Email email;
  email.to = to;
  email.subject = fmt::format("[Lifeline] Approval needed: {} -> {} {}", r.engineer, r.device, what);

  const std::string url = api_url.empty() ? std::string() : fmt::format(" --url {}", api_url);
  std::string& b = email.body;
  b += fmt::format("{} asks for {}{} on device {}{}.\n\n", r.engineer, r.activity,
                   r.application.empty() ? "" : " (" + r.application + ")", r.device,
                   r.model.empty() ? "" : " (model " + r.model + ")");
  b += fmt::format("Engineer:        {}\n", r.engineer);
  b += fmt::format("Device:          {}\n", r.device);
  b += fmt::format("Model:           {}\n", r.model.empty() ? "(unknown)" : r.model);
  b += fmt::format("Activity:        {}\n", r.activity);
  b += fmt::format("Application:     {}\n", r.application.empty() ? "(any)" : r.application);
  b += fmt::format("Reason:          {}\n", OrNone(r.reason));
  b += fmt::format("Service request: {}\n", OrNone(r.service_request));
  b += fmt::format("Gateway:         {}\n", r.gateway);
  b += fmt::format("Rule:            {}\n", r.rule_id);
  b += fmt::format("Request id:      {}\n", r.id);
  b += fmt::format("Received:        {}\n", Time(r.received_ms));
  b += fmt::format("Expires:         {} ({} after it arrived; unanswered, it is denied)\n\n", Time(r.expires_ms),
                   Duration(r.timeout_s));
  b += "Approve or deny it (as an approver; nobody decides their own request):\n\n";
  b += fmt::format("  lifeline policy requests approve {}{} --comment \"...\"\n", r.id, url);
  b += fmt::format("  lifeline policy requests deny {}{} --comment \"...\"\n\n", r.id, url);
  b += fmt::format("with your token (--token-file or LIFELINE_POLICY_TOKEN) and the policy manager's CA\n"
                   "(--ca-file){}. `lifeline policy requests list` shows every pending request.\n",
                   url.empty() ? " and its --url" : "");
  return email;
}

}  // namespace lifeline::policy

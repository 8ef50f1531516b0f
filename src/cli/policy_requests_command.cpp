#include "cli/policy_requests_command.h"

#include "cli/commands.h"
#include "common/clock.h"

#include <boost/json.hpp>
#include <fmt/format.h>

#include <chrono>
#include <iostream>

namespace lifeline::cli {
namespace json = boost::json;
namespace {

std::string Field(const json::object& object, std::string_view key) {
  const auto* v = object.if_contains(key);
  if (v == nullptr || v->is_null()) {
    return "";
  }
  return v->is_string() ? std::string(v->get_string()) : json::serialize(*v);
}

std::string Time(const json::object& object, std::string_view key) {
  const auto* v = object.if_contains(key);
  if (v == nullptr || !v->is_int64()) {
    return "-";
  }
  return FormatRfc3339(std::chrono::system_clock::time_point(std::chrono::milliseconds(v->get_int64())));
}

/// "ssh" for a remote session, else the activity.
std::string What(const json::object& request) {
  const std::string application = Field(request, "application");
  return application.empty() ? Field(request, "activity") : application;
}

int List(const PolicyRequestsOptions& options) {
  constexpr std::string_view program = "lifeline policy requests list";
  int exit_code = kExitFailure;
  auto answer = SendPolicyRequest(options.api, program, "GET",
                                  options.all ? "/v1/requests" : "/v1/requests?state=pending", "", &exit_code);
  if (!answer) {
    return exit_code;
  }
  const json::value* list = answer->json.is_object() ? answer->json.as_object().if_contains("requests") : nullptr;
  if (!answer->ok() || list == nullptr || !list->is_array()) {
    ReportPolicyApiError(program, *answer);
    return kExitFailure;
  }
  if (options.json) {
    std::cout << json::serialize(answer->json) << "\n";
    return kExitOk;
  }
  if (list->get_array().empty()) {
    std::cout << (options.all ? "no approval requests\n" : "no pending approval requests\n");
    return kExitOk;
  }
  std::cout << fmt::format("{:<32}  {:<8}  {:<14} {:<16} {:<14} {:<24}  {}\n", "ID", "STATE", "ENGINEER", "DEVICE",
                           "WHAT", options.all ? "DECIDED" : "EXPIRES", "REASON");
  for (const auto& item : list->get_array()) {
    if (!item.is_object()) {
      continue;
    }
    const json::object& r = item.as_object();
    const std::string state = Field(r, "state");
    std::string decided = state == "pending" ? Time(r, "expires_ms") : Time(r, "decided_ms");
    if (options.all && !Field(r, "decided_by").empty()) {
      decided += " by " + Field(r, "decided_by");
    }
    std::string reason = Field(r, "reason");
    if (!Field(r, "service_request").empty()) {
      reason += (reason.empty() ? "" : " ") + std::string("[") + Field(r, "service_request") + "]";
    }
    std::cout << fmt::format("{:<32}  {:<8}  {:<14} {:<16} {:<14} {:<24}  {}\n", Field(r, "id"), state,
                             Field(r, "engineer"), Field(r, "device"), What(r), decided, reason);
  }
  return kExitOk;
}

int Decide(const PolicyRequestsOptions& options, bool approve) {
  const std::string program = fmt::format("lifeline policy requests {}", approve ? "approve" : "deny");
  if (options.id.empty() || options.id.find_first_of("/?#% ") != std::string::npos) {
    std::cerr << program << ": give the request's id (as `lifeline policy requests list` shows it)\n";
    return kExitUsage;
  }
  const std::string body = json::serialize(json::object{{"comment", options.comment}});
  int exit_code = kExitFailure;
  auto answer = SendPolicyRequest(options.api, program, "POST",
                                  fmt::format("/v1/requests/{}/{}", options.id, approve ? "approve" : "deny"), body,
                                  &exit_code);
  if (!answer) {
    return exit_code;
  }
  if (answer->ok() && answer->json.is_object()) {
    const json::object& r = answer->json.as_object();
    std::cout << fmt::format("{} request {}: {} -> {} {}\n", approve ? "approved" : "denied", Field(r, "id"),
                             Field(r, "engineer"), Field(r, "device"), What(r));
    return kExitOk;
  }
  // The answers an approver meets in practice, in words that say what to do.
  const json::object* error = answer->json.is_object() ? &answer->json.as_object() : nullptr;
  const std::string code = error != nullptr ? Field(*error, "error") : "";
  if (answer->status == 403 && code == "own_request") {
    std::cerr << program << ": this is your own request: another approver must decide it\n";
  } else if (answer->status == 403) {
    std::cerr << program << ": your token's role may not decide requests (needs approver or admin)\n";
  } else if (answer->status == 409 && code == "not_pending") {
    std::cerr << fmt::format("{}: request {} is not pending: it was {} already\n", program, options.id,
                             Field(*error, "state"));
  } else if (answer->status == 404) {
    std::cerr << fmt::format("{}: no request {} (see `lifeline policy requests list --all`)\n", program, options.id);
  } else {
    ReportPolicyApiError(program, *answer);
  }
  return kExitFailure;
}

}  // namespace

PolicyRequestsCommands AddPolicyRequestsCommands(CLI::App* policy, PolicyRequestsOptions& options) {
  PolicyRequestsCommands c;
  auto* requests =
      policy->add_subcommand("requests", "Approval requests of the running policy manager")->require_subcommand(1);
  c.list = requests->add_subcommand("list", "List pending approval requests (any role)");
  c.list->add_flag("--all", options.all, "Every request, decided and expired ones too (newest first)");
  c.list->add_flag("--json", options.json, "Print the API's JSON");
  c.approve = requests->add_subcommand("approve", "Approve a request (approver; not your own)");
  c.deny = requests->add_subcommand("deny", "Deny a request (approver; not your own)");
  for (CLI::App* sub : {c.approve, c.deny}) {
    sub->add_option("id", options.id, "The request's id")->required();
    sub->add_option("--comment", options.comment, "Why; shown to the engineer and in the audit log");
  }
  for (CLI::App* sub : {c.list, c.approve, c.deny}) {
    AddPolicyApiOptions(sub, options.api);
  }
  return c;
}

int RunPolicyRequestsCommands(const PolicyRequestsCommands& c, const PolicyRequestsOptions& options) {
  if (c.list == nullptr) {
    return -1;
  }
  if (c.list->parsed()) {
    return List(options);
  }
  if (c.approve->parsed()) {
    return Decide(options, true);
  }
  if (c.deny->parsed()) {
    return Decide(options, false);
  }
  return -1;
}

}  // namespace lifeline::cli

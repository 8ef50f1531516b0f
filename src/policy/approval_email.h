#pragma once
// The email an approval request sends to `[approvals] notify` (docs/policy.md "Approvals API"):
// subject "[Lifeline] Approval needed: ENGINEER -> DEVICE APPLICATION", a body naming everything an
// approver needs to decide, and the commands that approve or deny it.
#include "policy/approvals.h"
#include "transport/mailer.h"

#include <string>
#include <string_view>
#include <vector>

namespace lifeline::policy {

/// `api_url` ("" when not configured) goes into the commands as --url.
transport::Email ComposeApprovalEmail(const ApprovalRequest& request, const std::vector<std::string>& to,
                                      std::string_view api_url);

}  // namespace lifeline::policy

#pragma once
// Internal to notify: one blocking HTTP(S) POST on a fresh libcurl handle, for webhooks and SMS
// gateways. Not transport::HttpClient: that one speaks only https to the home with its pinned CA,
// while webhooks go to any http(s) receiver trusted through the system store (or a given CA file).
#include "home/notify/outcome.h"

#include <chrono>
#include <string>
#include <utility>
#include <vector>

namespace lifeline::home::notify::detail {

struct PostRequest {
  std::string url;  // http:// or https:// only
  std::string content_type;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string basic_user;  // with basic_password: HTTP basic authentication
  std::string basic_password;
  std::chrono::milliseconds timeout{10000};  // the whole exchange, connect included
  std::string ca_file;                       // empty: the system store
};

/// POSTs and sorts the result: 2xx sent, else ClassifyHttpStatus / ClassifyTransferError. The
/// detail names the status and the first bytes of the answer, or curl's error; never the URL
/// (webhook URLs often carry a token) nor a credential.
DeliveryResult Post(const PostRequest& request);

}  // namespace lifeline::home::notify::detail

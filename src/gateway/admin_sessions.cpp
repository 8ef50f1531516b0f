#include "gateway/admin_sessions.h"

#include <boost/json.hpp>
#include <fmt/format.h>

namespace lifeline::gateway {

namespace json = boost::json;

void AddSessionRoutes(AdminServer& server, SessionManager& sessions) {
  server.Route("GET", "/v1/sessions", [&sessions](const AdminRequest& request) {
    if (!request.rest.empty()) {
      auto record = sessions.Find(request.rest[0]);
      if (!record) {
        return AdminError(404, "not_found", fmt::format("no session {} at this gateway", request.rest[0]));
      }
      return AdminJson(SessionJson(*record));
    }
    const bool all = request.query.find("all=1") != std::string::npos;
    std::string body = "{\"sessions\":[";
    bool first = true;
    for (const auto& record : sessions.List(all)) {
      body += first ? "" : ",";
      body += SessionJson(record);
      first = false;
    }
    body += "]}";
    return AdminJson(std::move(body));
  });
  server.Route("DELETE", "/v1/sessions", [&sessions](const AdminRequest& request) {
    if (request.rest.size() != 1) {
      return AdminError(400, "bad_request", "DELETE /v1/sessions/{id}");
    }
    auto killed = sessions.Kill(request.rest[0], request.actor);
    if (!killed) {
      return AdminError(404, "not_found", fmt::format("no open session {} at this gateway", request.rest[0]));
    }
    return AdminJson(SessionJson(*killed));
  });
  server.Route("GET", "/v1/remote-access", [&sessions](const AdminRequest&) {
    return AdminJson(json::serialize(json::object{{"enabled", sessions.RemoteAccessEnabled()}}));
  });
  server.Route("PUT", "/v1/remote-access", [&sessions](const AdminRequest& request) {
    boost::system::error_code ec;
    auto body = json::parse(request.http.body, ec);
    const json::value* enabled = ec || !body.is_object() ? nullptr : body.get_object().if_contains("enabled");
    if (enabled == nullptr || !enabled->is_bool()) {
      return AdminError(400, "bad_request", "send {\"enabled\": true} or {\"enabled\": false}");
    }
    sessions.SetRemoteAccess(enabled->get_bool(), request.actor);
    return AdminJson(json::serialize(json::object{{"enabled", sessions.RemoteAccessEnabled()}}));
  });
}

}  // namespace lifeline::gateway

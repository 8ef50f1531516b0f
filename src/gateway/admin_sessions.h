#pragma once
// Local admin routes for remote sessions (docs/gateway.md, "Remote sessions"):
//   GET    /v1/sessions[?all=1]   open sessions, or the latest audit records of all
//   DELETE /v1/sessions/{id}      end a session now (its connections are cut)
//   GET    /v1/remote-access      {"enabled": true|false}
//   PUT    /v1/remote-access      {"enabled": false} switches remote access off (open sessions end)
#include "gateway/admin_server.h"
#include "gateway/session_manager.h"

namespace lifeline::gateway {

void AddSessionRoutes(AdminServer& server, SessionManager& sessions);

}  // namespace lifeline::gateway

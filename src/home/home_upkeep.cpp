#include "home/home_upkeep.h"

#include "common/log.h"
#include "crypto/token.h"
#include "home/ingest_handler.h"

#include <boost/url/parse.hpp>

namespace lifeline::home {

Result<std::unique_ptr<HomeUpkeep>> HomeUpkeep::Create(store::HomeStore& store, const Clock& clock,
                                                       UpkeepOptions options) {
  std::unique_ptr<HomeUpkeep> upkeep(new HomeUpkeep(store));
  if (options.heartbeats.enabled) {
    upkeep->heartbeats_ =
        std::make_unique<HeartbeatMonitor>(store, clock, options.heartbeats, std::move(options.tickets));
    if (auto restored = upkeep->heartbeats_->Restore(); !restored) {
      return restored.error();
    }
  } else {
    log::Get("heartbeats")->warn("heartbeats.enabled is false: no missing-heartbeat tickets");
  }
  upkeep->retention_ = std::make_unique<RetentionJob>(store, clock, options.retention, options.max_clock_skew);
  return upkeep;
}

HomeUpkeep::~HomeUpkeep() { Stop(); }

void HomeUpkeep::OnBatchCommitted(const protocol::Batch& batch, const protocol::BatchReply& reply,
                                  std::int64_t now_ms) {
  if (heartbeats_) {
    heartbeats_->OnBatchCommitted(batch, reply, now_ms);
  }
}

void HomeUpkeep::Start() {
  if (heartbeats_) {
    heartbeats_->Start();
  }
  retention_->Start();
}

void HomeUpkeep::Stop() {
  if (heartbeats_) {
    heartbeats_->Stop();
  }
  if (retention_) {
    retention_->Stop();
  }
}

std::optional<transport::HttpResponse> HomeUpkeep::HandleAdmin(const transport::HttpRequest& request) {
  auto url = boost::urls::parse_origin_form(request.target);
  if (!url || url->path() != "/v1/retention/preview") {
    return std::nullopt;
  }
  // Any admin token may read it (it changes nothing), checked as the admin API checks tokens.
  auto auth = request.headers.find("authorization");
  constexpr std::string_view kBearer = "Bearer ";
  if (auth == request.headers.end() || !auth->second.starts_with(kBearer)) {
    return ErrorResponse(protocol::Reject::kUnauthorized, "send 'Authorization: Bearer <admin token>'");
  }
  auto token = store_.FindAdminToken(crypto::HashToken(auth->second.substr(kBearer.size())));
  if (!token) {
    return ErrorResponse(protocol::Reject::kInternal, "the store failed; see the home's log");
  }
  if (!token->has_value()) {
    log::Get("admin")->warn("refused admin request from {}: unknown token", request.remote);
    return ErrorResponse(protocol::Reject::kUnauthorized, "unknown admin token");
  }
  if (request.method != "GET") {
    return ErrorResponse(protocol::Reject::kNotFound, "GET only");
  }
  auto preview = retention_->Preview();
  if (!preview) {
    log::Get("admin")->error("retention preview failed: {}", preview.error().message());
    return ErrorResponse(protocol::Reject::kInternal, "the store failed; see the home's log");
  }
  transport::HttpResponse response;
  response.body = RetentionPreviewJson(*preview);
  return response;
}

}  // namespace lifeline::home

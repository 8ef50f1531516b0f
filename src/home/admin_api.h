#pragma once
// The home's admin API (docs/api.md): read tickets, devices and totals with a bearer token that the
// home stores only as a SHA-256 hash.
//   GET /v1/tickets[?state=open|resolved&limit=N]   GET /v1/tickets/<number>
//   GET /v1/devices                                  GET /v1/stats
#include "store/home_store.h"
#include "transport/https_server.h"

namespace lifeline::home {

class AdminApi {
 public:
  explicit AdminApi(store::HomeStore& store) : store_(store) {}
  transport::HttpResponse Handle(const transport::HttpRequest& request);

 private:
  store::HomeStore& store_;
};

}  // namespace lifeline::home

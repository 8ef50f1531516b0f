#pragma once
// Config of how the agent reaches home: endpoints and connection paths (direct, HTTP or SOCKS proxies).
#include "common/config.h"

namespace lifeline::agent {

struct PathsConfig {};

void DeclarePathOptions(config::Schema& schema, PathsConfig& paths);

}  // namespace lifeline::agent

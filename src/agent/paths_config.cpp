#include "agent/paths_config.h"

namespace lifeline::agent {

void DeclarePathOptions(config::Schema& /*schema*/, PathsConfig& /*paths*/) {}

}  // namespace lifeline::agent

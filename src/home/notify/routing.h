#pragma once
// Routing: which contact groups hear about a ticket, from the device's customer, site and model and
// the ticket's severity. Routes are tried in order and the first match wins, like a firewall rule
// list, so a specific route placed above a general one overrides it; a route with
// `continue_matching` adds its groups and lets later routes match too (Alertmanager's `continue`).
// No match at all: the default groups.
#include "protocol/message.h"

#include <string>
#include <string_view>
#include <vector>

namespace lifeline::home::notify {

/// Shell-style glob, ASCII case-insensitive: `*` any run of characters, `?` one byte; everything
/// else literal. An empty pattern matches anything (an unset route field).
bool GlobMatch(std::string_view pattern, std::string_view text);

struct Route {
  std::string customer;  // globs; empty or "*": any
  std::string site;
  std::string model;
  protocol::Severity min_severity = protocol::Severity::kInfo;
  std::vector<std::string> groups;
  bool continue_matching = false;

  bool Matches(const protocol::DeviceIdentity& device, protocol::Severity severity) const;
};

class Router {
 public:
  Router() = default;
  Router(std::vector<Route> routes, std::vector<std::string> default_groups);

  /// The groups for a ticket, each once, in the order the routes name them.
  std::vector<std::string> GroupsFor(const protocol::DeviceIdentity& device,
                                     protocol::Severity severity) const;

  const std::vector<Route>& routes() const { return routes_; }

 private:
  std::vector<Route> routes_;
  std::vector<std::string> default_groups_;
};

}  // namespace lifeline::home::notify

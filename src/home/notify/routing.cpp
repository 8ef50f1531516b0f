#include "home/notify/routing.h"

#include <algorithm>
#include <cctype>

namespace lifeline::home::notify {

namespace {

bool SameChar(char a, char b) {
  return std::tolower(static_cast<unsigned char>(a)) == std::tolower(static_cast<unsigned char>(b));
}

void AddOnce(std::vector<std::string>& out, const std::vector<std::string>& groups) {
  for (const auto& g : groups) {
    if (std::find(out.begin(), out.end(), g) == out.end()) {
      out.push_back(g);
    }
  }
}

}  // namespace

bool GlobMatch(std::string_view pattern, std::string_view text) {
  if (pattern.empty()) {
    return true;
  }
  // Iterative matcher with one backtrack point (the last '*'): O(pattern * text) at worst, no
  // recursion, so a hostile model name cannot blow the stack.
  std::size_t p = 0;
  std::size_t t = 0;
  std::size_t star = std::string_view::npos;
  std::size_t star_t = 0;
  while (t < text.size()) {
    if (p < pattern.size() && (pattern[p] == '?' || (pattern[p] != '*' && SameChar(pattern[p], text[t])))) {
      ++p;
      ++t;
    } else if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      star_t = t;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      t = ++star_t;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') {
    ++p;
  }
  return p == pattern.size();
}

bool Route::Matches(const protocol::DeviceIdentity& device, protocol::Severity severity) const {
  return severity >= min_severity && GlobMatch(customer, device.customer) &&
         GlobMatch(site, device.site) && GlobMatch(model, device.model);
}

Router::Router(std::vector<Route> routes, std::vector<std::string> default_groups)
    : routes_(std::move(routes)), default_groups_(std::move(default_groups)) {}

std::vector<std::string> Router::GroupsFor(const protocol::DeviceIdentity& device,
                                           protocol::Severity severity) const {
  std::vector<std::string> groups;
  bool matched = false;
  for (const auto& route : routes_) {
    if (!route.Matches(device, severity)) {
      continue;
    }
    matched = true;
    AddOnce(groups, route.groups);
    if (!route.continue_matching) {
      break;
    }
  }
  if (!matched) {
    AddOnce(groups, default_groups_);
  }
  return groups;
}

}  // namespace lifeline::home::notify

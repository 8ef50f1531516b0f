#pragma once
// The managed-devices routes of the local admin interface (docs/gateway.md, "Local admin
// interface"):
//   GET    /v1/devices                   every deployed device with its latest probe results
//   GET    /v1/devices/{serial}          one device
//   POST   /v1/devices                   deploy: {"serial", "model", "address", "apps": {"ssh": 22}, "enabled"}
//   PUT    /v1/devices/{serial}          edit: the fields given change ("model", "address", "apps", "enabled")
//   DELETE /v1/devices/{serial}          undeploy
//   GET    /v1/devices/{serial}/history  that device's changes, newest first (?limit=N)
//   GET    /v1/history                   every change, newest first (?limit=N)
// Validation errors are 400 with a message saying what to fix; an unknown or undeployed device
// 404; deploying a serial that is deployed 409.
#include "gateway/admin_server.h"
#include "gateway/device_registry.h"

namespace lifeline::gateway {

/// Adds the routes above to `server`; `registry` must outlive it.
void AddDeviceRoutes(AdminServer& server, DeviceRegistry& registry);

}  // namespace lifeline::gateway

// Pieces of the campaign results JSON (reports/README.md) shared by the writer of one campaign's
// results (campaign.cpp) and the merger of shards (merge.cpp). Internal to harness/core.
#pragma once
#include <nlohmann/json.hpp>

#include "harness/core/device_check.hpp"

namespace moecheck {

/// `check.device` of a results file: the device checker's counters and times.
nlohmann::json device_check_json(const DeviceCheckStats& d);

}  // namespace moecheck

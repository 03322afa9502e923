#pragma once

#include "tools/vtpmctl/instance_config.hpp"
#include "tools/vtpmctl/instance_paths.hpp"

#include <nlohmann/json.hpp>

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <sys/types.h>

// What `list` and `status` show about an instance: its configuration, whether its vtpmd runs,
// and the daemon's own health report. Gathering it never touches the control channel.
namespace vtpm::tools
{

enum class RunState
{
    Running,    // pid alive and the status socket answered
    Stopped,    // no pid file
    Failed,     // stale pid file, pid reused, or a live pid that does not answer
    NotCreated, // directories exist but no instance.json
};

std::string_view runStateName(RunState state) noexcept;

struct InstanceView
{
    InstancePaths paths;
    std::optional<InstanceConfig> config;
    RunState state = RunState::Stopped;
    pid_t pid = 0;
    std::optional<nlohmann::json> health; // vtpmd's --status report
    std::string reason;                   // why Failed / NotCreated, with what to do next
};

// A live daemon that does not answer its status socket within this time counts as failed.
inline constexpr std::chrono::milliseconds kStatusTimeout{2000};

// Instance names found under the state and runtime roots, sorted; invalid names are skipped.
std::vector<std::string> instanceNames(const Locations& where);

// Inspects all instances in one pass; status sockets are queried in parallel.
std::vector<InstanceView> inspectInstances(const Locations& where,
                                           const std::vector<std::string>& names);

nlohmann::json toJson(const InstanceView& view);

// Bools from the health report, false when absent.
bool healthFlag(const InstanceView& view, const char* key);

} // namespace vtpm::tools

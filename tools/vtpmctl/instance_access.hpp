#pragma once

#include "tools/vtpmctl/commands.hpp"
#include "tools/vtpmctl/instance_config.hpp"
#include "tools/vtpmctl/instance_paths.hpp"

#include <chrono>

// Shared first steps of the per-instance commands: validate the name, find the instance, load
// its configuration, with the "not found" error every command reports the same way.
namespace vtpm::tools
{

struct Instance
{
    Locations where;
    InstancePaths paths;
    InstanceConfig config;
};

// Throws CommandError(Usage) for a bad name, (NotFound) if there is no instance.json.
Instance openInstance(const GlobalOptions& global, const std::string& name);

// Seconds from the command line as a duration; Usage error unless 0 < s <= one day.
std::chrono::milliseconds timeoutFrom(double seconds);

} // namespace vtpm::tools

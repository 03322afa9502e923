#pragma once

#include "tools/vtpmctl/instance_config.hpp"
#include "tools/vtpmctl/instance_paths.hpp"

#include <optional>
#include <string>
#include <vector>

// The one place that turns an instance into a vtpmd command line and into QEMU arguments
// (doc/instance-layout.md). `start` spawns exactly what `exec` would execv().
namespace vtpm::tools
{

// --vtpmd, then $VTPMD, then the installed binary (meson: VTPMCTL_DEFAULT_VTPMD).
fs::path vtpmdPath(const std::optional<fs::path>& option);

// argv[0] is the vtpmd path.
std::vector<std::string> vtpmdArgv(const fs::path& vtpmd, const InstanceConfig& config,
                                   const InstancePaths& paths);

// -chardev/-tpmdev/-device for qemu-system-*, on one line.
std::string qemuArgs(const InstanceConfig& config, const InstancePaths& paths);

} // namespace vtpm::tools

#pragma once

#include "tools/vtpmctl/instance_paths.hpp"

#include <string>

// On a host run by systemd, system instances belong to vtpm@NAME.service: vtpmctl asks
// systemctl to start and stop them so the unit's sandbox and restart policy apply.
namespace vtpm::tools
{

// True for the system locations as root, with /run/systemd/system present, unless disabled.
bool systemdManages(const Locations& where, bool noSystemd);

// Runs `systemctl VERB vtpm@NAME.service`; throws CommandError(Failed) naming journalctl.
void runSystemctl(const std::string& verb, const std::string& name);

} // namespace vtpm::tools

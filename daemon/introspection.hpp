#pragma once

#include "daemon/options.hpp"

#include <string>

// The machine-readable self-descriptions libvirt and swtpm_setup read (protocol.md §11).
namespace vtpm::daemon
{

// --print-capabilities: one JSON line in swtpm's shape, listing only what vtpmd implements.
std::string capabilitiesJson(const Options& options);
// --print-states: the blobs present in the state directory, no trailing newline.
std::string statesJson(const Options& options);

} // namespace vtpm::daemon

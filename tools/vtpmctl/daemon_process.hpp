#pragma once

#include "state/unique_fd.hpp"
#include "tools/vtpmctl/deadline_io.hpp"
#include "tools/vtpmctl/instance_paths.hpp"

#include <optional>
#include <string>

#include <sys/types.h>

// What the pid file of an instance says about its vtpmd, and a handle to wait for that process
// to exit without being its parent (pidfd, Linux >= 5.3).
namespace vtpm::tools
{

enum class PidState
{
    NoPidFile, // never started, or stopped cleanly (vtpmd removes its pid file)
    Alive,     // the process exists and is this instance's vtpmd
    Gone,      // the pid file is stale: the process died without cleaning up
    Foreign,   // the pid was reused by an unrelated process
};

struct PidProbe
{
    PidState state = PidState::NoPidFile;
    pid_t pid = 0;
};

PidProbe probePid(const InstancePaths& paths);

// A pidfd for pid; invalid if the process is already gone.
state::UniqueFd openPidfd(pid_t pid);

// True once the process behind the pidfd has exited (or at once if the pidfd is invalid).
bool waitExit(const state::UniqueFd& pidfd, Deadline deadline) noexcept;

// Removes what a vtpmd that died without cleaning up left behind in the runtime directory.
void removeStaleRuntimeFiles(const InstancePaths& paths) noexcept;

} // namespace vtpm::tools

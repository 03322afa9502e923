#pragma once

#include "tools/vtpmctl/instance_paths.hpp"

#include <chrono>
#include <string_view>

#include <sys/types.h>

// Stops one vtpmd in escalating steps, all within one time budget: CMD_SHUTDOWN on a fresh
// control connection (vtpmd saves state and exits), then SIGTERM (the same orderly exit, for a
// daemon whose control connection is held by QEMU), then SIGKILL.
namespace vtpm::tools
{

enum class StopStep
{
    AlreadyGone,
    Shutdown,
    Terminate,
    Kill,
};

std::string_view stopStepName(StopStep step) noexcept;

struct StopOutcome
{
    StopStep step = StopStep::AlreadyGone;
    std::chrono::milliseconds elapsed{0};
};

// Throws CommandError(Failed) if the process is still there when `timeout` has passed, or
// if vtpmctl may not signal it. With `controlHeld` (the status report says another client, i.e.
// QEMU, holds the control connection) CMD_SHUTDOWN is skipped: it could not be served.
StopOutcome stopDaemon(pid_t pid, const InstancePaths& paths, std::chrono::milliseconds timeout,
                       bool controlHeld);

} // namespace vtpm::tools

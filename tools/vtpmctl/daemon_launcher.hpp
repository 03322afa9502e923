#pragma once

#include "tools/vtpmctl/instance_paths.hpp"

#include <chrono>
#include <string>
#include <vector>

#include <sys/types.h>

// Starts vtpmd detached (own session, stdin/stdout on /dev/null) and returns once vtpmd itself
// reports READY=1 over the sd_notify protocol on a datagram socket vtpmctl owns. The wait also
// watches the child (pidfd) and its stderr (a pipe), so a vtpmd that fails is reported at once
// with its own message, and nothing sleeps or polls for a path.
namespace vtpm::tools
{

struct LaunchResult
{
    pid_t pid = 0;
    std::chrono::microseconds elapsed{0};
};

// argv[0] is the program. Throws CommandError(Failed) with vtpmd's stderr if it exits before
// READY=1, or after killing it if READY=1 does not come within `timeout`. `logFile` is named in
// error messages as the place to look for details.
LaunchResult launchUntilReady(const std::vector<std::string>& argv, const fs::path& logFile,
                              std::chrono::milliseconds timeout);

} // namespace vtpm::tools

#pragma once

#include "state/unique_fd.hpp"
#include "tools/vtpmctl/instance_paths.hpp"

namespace vtpm::tools
{

enum class ConnectResult
{
    Connected,
    Refused, // no socket or nobody listening
    Busy,    // the listener's backlog is full
    Error,
};

// Opens a non-blocking, close-on-exec UNIX stream socket connected to path. A UNIX connect
// either completes at once or fails: it never blocks, so no deadline is needed here.
ConnectResult connectUnix(const fs::path& path, state::UniqueFd& out);

} // namespace vtpm::tools

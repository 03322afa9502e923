#pragma once

#include "state/unique_fd.hpp"
#include "tools/vtpmctl/instance_paths.hpp"

// Serialises vtpmctl commands that change one instance (start, stop, destroy): an flock(2) on
// a file in the runtime directory, released when the process exits, whatever the way.
namespace vtpm::tools
{

class InstanceLock
{
public:
    // Throws CommandError(Busy) if another vtpmctl holds it, CommandError(Failed) on I/O errors.
    explicit InstanceLock(const InstancePaths& paths);

private:
    state::UniqueFd fd_;
};

// Creates the runtime directory of an instance (and its parents) if missing.
void ensureRuntimeDir(const Locations& where, const InstancePaths& paths);

// mkdir with an exact mode (umask does not apply); true if it created the directory.
bool makeDir(const fs::path& dir, unsigned mode);

} // namespace vtpm::tools

#include "tools/vtpmctl/instance_lock.hpp"

#include "tools/vtpmctl/exit_codes.hpp"

#include <cerrno>
#include <cstring>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>

namespace vtpm::tools
{

InstanceLock::InstanceLock(const InstancePaths& paths) :
    fd_(::open(paths.lockFile.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600))
{
    if (!fd_)
    {
        throw CommandError(ExitCode::Failed, "cannot open " + paths.lockFile.string() + ": " +
                                                 std::strerror(errno) +
                                                 "; check the runtime directory's permissions");
    }
    if (::flock(fd_.get(), LOCK_EX | LOCK_NB) != 0)
    {
        throw CommandError(ExitCode::Busy, "another vtpmctl is starting, stopping or destroying " +
                                               paths.name + " right now; wait for it and retry");
    }
}

bool makeDir(const fs::path& dir, unsigned mode)
{
    if (::mkdir(dir.c_str(), static_cast<mode_t>(mode)) != 0)
    {
        if (errno == EEXIST)
        {
            return false;
        }
        throw CommandError(ExitCode::Failed, "cannot create " + dir.string() + ": " +
                                                 std::strerror(errno) +
                                                 "; check permissions of its parent directory");
    }
    (void)::chmod(dir.c_str(), static_cast<mode_t>(mode));
    return true;
}

void ensureRuntimeDir(const Locations& where, const InstancePaths& paths)
{
    // The shared root is traversable for everyone only for the system locations (QEMU may run
    // as another user); per-instance runtime directories are 0711: sockets carry their own
    // mode, so the directory only needs to let QEMU pass through.
    const unsigned rootMode = where.system ? 0755U : 0700U;
    std::error_code ec;
    if (!fs::exists(where.runRoot, ec))
    {
        fs::create_directories(where.runRoot.parent_path(), ec);
        (void)makeDir(where.runRoot, rootMode);
    }
    (void)makeDir(paths.runDir, 0711U);
}

} // namespace vtpm::tools

#include "daemon/process.hpp"

#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <string_view>
#include <system_error>
#include <vector>

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

namespace vtpm::daemon
{

namespace
{

[[noreturn]] void throwErrno(const std::string& what)
{
    throw std::system_error(errno, std::generic_category(), what);
}

bool writeAll(int fd, std::string_view data) noexcept
{
    while (!data.empty())
    {
        const ssize_t n = ::write(fd, data.data(), data.size());
        if (n < 0 && errno == EINTR)
        {
            continue;
        }
        if (n <= 0)
        {
            return false;
        }
        data.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
}

constexpr char kReady = 'R';
constexpr char kFailed = 'E';

} // namespace

PidFile::PidFile(const std::optional<PidOptions>& options)
{
    if (!options)
    {
        return;
    }
    const std::string pid = std::to_string(::getpid()) + "\n";
    if (options->fd >= 0)
    {
        const bool ok = writeAll(options->fd, pid);
        ::close(options->fd);
        if (!ok)
        {
            throwErrno("cannot write the pid to fd " + std::to_string(options->fd));
        }
        return;
    }
    // Written to a temporary name and renamed, so a reader never sees a half-written pid.
    const std::filesystem::path tmp = options->file.string() + ".tmp";
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0)
    {
        throwErrno("cannot create pid file " + tmp.string());
    }
    const bool ok = writeAll(fd, pid);
    ::close(fd);
    if (!ok || ::rename(tmp.c_str(), options->file.c_str()) != 0)
    {
        const int saved = errno;
        ::unlink(tmp.c_str());
        errno = saved;
        throwErrno("cannot write pid file " + options->file.string());
    }
    path_ = options->file;
}

PidFile::~PidFile()
{
    if (!path_.empty())
    {
        ::unlink(path_.c_str());
    }
}

Detacher::Detacher()
{
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0)
    {
        throwErrno("pipe");
    }
    const pid_t child = ::fork();
    if (child < 0)
    {
        throwErrno("fork");
    }
    if (child > 0)
    {
        ::close(fds[1]);
        std::string message;
        char buffer[512];
        ssize_t n = 0;
        while ((n = ::read(fds[0], buffer, sizeof(buffer))) != 0)
        {
            if (n < 0 && errno == EINTR)
            {
                continue;
            }
            if (n < 0)
            {
                break;
            }
            message.append(buffer, static_cast<std::size_t>(n));
        }
        if (!message.empty() && message[0] == kReady)
        {
            std::_Exit(EXIT_SUCCESS);
        }
        if (message.size() > 1)
        {
            std::fprintf(stderr, "vtpmd: %s\n", message.c_str() + 1);
        }
        else
        {
            std::fprintf(stderr, "vtpmd: the daemon exited before it was ready\n");
        }
        std::_Exit(EXIT_FAILURE);
    }
    ::close(fds[0]);
    fd_ = fds[1];
    ::setsid();
}

Detacher::~Detacher()
{
    if (fd_ >= 0)
    {
        ::close(fd_);
    }
}

void Detacher::ready()
{
    if (::chdir("/") != 0)
    {
        throwErrno("chdir /");
    }
    const int devNull = ::open("/dev/null", O_RDWR | O_CLOEXEC);
    if (devNull >= 0)
    {
        ::dup2(devNull, STDIN_FILENO);
        ::dup2(devNull, STDOUT_FILENO);
        ::dup2(devNull, STDERR_FILENO);
        ::close(devNull);
    }
    (void)writeAll(fd_, std::string_view(&kReady, 1));
    ::close(fd_);
    fd_ = -1;
}

void Detacher::failed(const std::string& message)
{
    if (fd_ < 0)
    {
        return;
    }
    (void)writeAll(fd_, std::string(1, kFailed) + message);
    ::close(fd_);
    fd_ = -1;
}

void dropPrivileges(const std::string& user, const std::filesystem::path& stateDir)
{
    errno = 0;
    const passwd* pw = ::getpwnam(user.c_str());
    if (pw == nullptr)
    {
        throw std::runtime_error("--runas: unknown user '" + user + "'");
    }
    const uid_t uid = pw->pw_uid;
    const gid_t gid = pw->pw_gid;
    // The lock file was created before the switch; the new user must be able to reopen it on
    // its next start.
    const std::filesystem::path lock = stateDir / ".lock";
    if (::chown(lock.c_str(), uid, gid) != 0 && errno != ENOENT)
    {
        throwErrno("--runas: cannot hand " + lock.string() + " to " + user);
    }
    if (::initgroups(user.c_str(), gid) != 0)
    {
        throwErrno("--runas: initgroups");
    }
    if (::setgid(gid) != 0)
    {
        throwErrno("--runas: setgid");
    }
    if (::setuid(uid) != 0)
    {
        throwErrno("--runas: setuid");
    }
    if (::setuid(0) == 0 && uid != 0)
    {
        throw std::runtime_error("--runas: root privileges could be regained");
    }
    spdlog::info("running as {} (uid {}, gid {})", user, uid, gid);
}

} // namespace vtpm::daemon

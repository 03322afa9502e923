#include "tools/vtpmctl/daemon_launcher.hpp"

#include "state/unique_fd.hpp"
#include "tools/vtpmctl/daemon_process.hpp"
#include "tools/vtpmctl/deadline_io.hpp"
#include "tools/vtpmctl/exit_codes.hpp"
#include "tools/vtpmctl/notify_socket.hpp"

#include <array>
#include <cerrno>
#include <cstring>
#include <system_error>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ; // NOLINT(readability-redundant-declaration): POSIX, not in <unistd.h>

namespace vtpm::tools
{

namespace
{

constexpr std::size_t kMaxStderr = 16 * 1024;

[[noreturn]] void throwErrno(const char* what)
{
    throw std::system_error(errno, std::generic_category(), what);
}

// The child's environment: ours, with NOTIFY_SOCKET pointing at our socket.
std::vector<std::string> childEnvironment(const std::string& notifyAddress)
{
    std::vector<std::string> env;
    for (char** e = environ; *e != nullptr; ++e)
    {
        if (std::strncmp(*e, "NOTIFY_SOCKET=", 14) != 0)
        {
            env.emplace_back(*e);
        }
    }
    env.push_back("NOTIFY_SOCKET=" + notifyAddress);
    return env;
}

std::vector<char*> pointers(std::vector<std::string>& strings)
{
    std::vector<char*> p;
    p.reserve(strings.size() + 1);
    for (std::string& s : strings)
    {
        p.push_back(s.data());
    }
    p.push_back(nullptr);
    return p;
}

// Runs in the forked child: only async-signal-safe calls, everything was prepared before fork.
[[noreturn]] void execChild(int devNull, int stderrPipe, char* const* argv, char* const* envp)
{
    ::setsid(); // own session: no controlling terminal, not hit by the caller's job control
    ::dup2(devNull, STDIN_FILENO);
    ::dup2(devNull, STDOUT_FILENO);
    ::dup2(stderrPipe, STDERR_FILENO);
    ::umask(077);
    sigset_t none;
    ::sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::execve(argv[0], argv, envp);
    const int error = errno;
    static constexpr char kPrefix[] = "vtpmctl: cannot execute ";
    (void)!::write(STDERR_FILENO, kPrefix, sizeof(kPrefix) - 1);
    (void)!::write(STDERR_FILENO, argv[0], std::strlen(argv[0]));
    (void)!::write(STDERR_FILENO, ": ", 2);
    const char* reason = ::strerrordesc_np(error);
    (void)!::write(STDERR_FILENO, reason, std::strlen(reason));
    (void)!::write(STDERR_FILENO, "\n", 1);
    ::_exit(127);
}

// Appends what the child wrote to stderr so far; false once the pipe reached EOF.
bool drainStderr(int fd, std::string& out)
{
    std::array<char, 4096> buffer{};
    for (;;)
    {
        const ssize_t n = ::read(fd, buffer.data(), buffer.size());
        if (n > 0)
        {
            out.append(buffer.data(), std::min(static_cast<std::size_t>(n),
                                               kMaxStderr - std::min(kMaxStderr, out.size())));
            continue;
        }
        if (n < 0 && errno == EINTR)
        {
            continue;
        }
        return n < 0 && errno == EAGAIN;
    }
}

std::string describeExit(int status)
{
    if (WIFEXITED(status))
    {
        return "exited with status " + std::to_string(WEXITSTATUS(status));
    }
    if (WIFSIGNALED(status))
    {
        return std::string("was killed by signal ") + ::sigabbrev_np(WTERMSIG(status));
    }
    return "ended";
}

std::string indent(std::string text)
{
    while (!text.empty() && (text.back() == '\n' || text.back() == ' '))
    {
        text.pop_back();
    }
    if (text.empty())
    {
        return "  (vtpmd wrote nothing to stderr)\n";
    }
    std::string out = "  ";
    for (const char c : text)
    {
        out += c;
        if (c == '\n')
        {
            out += "  ";
        }
    }
    return out + "\n";
}

} // namespace

LaunchResult launchUntilReady(const std::vector<std::string>& argv, const fs::path& logFile,
                              std::chrono::milliseconds timeout)
{
    const auto started = Clock::now();
    NotifySocket notify;
    std::vector<std::string> args = argv;
    std::vector<std::string> env = childEnvironment(notify.address());
    const std::vector<char*> argp = pointers(args);
    const std::vector<char*> envp = pointers(env);

    state::UniqueFd devNull(::open("/dev/null", O_RDWR | O_CLOEXEC));
    std::array<int, 2> pipeFds{-1, -1};
    if (!devNull || ::pipe2(pipeFds.data(), O_CLOEXEC | O_NONBLOCK) != 0)
    {
        throwErrno("cannot prepare the vtpmd process");
    }
    state::UniqueFd stderrRead(pipeFds[0]);
    state::UniqueFd stderrWrite(pipeFds[1]);
    // The child's end must block: vtpmd's stderr writes must not fail with EAGAIN.
    (void)::fcntl(stderrWrite.get(), F_SETFL, 0);

    const pid_t child = ::fork();
    if (child < 0)
    {
        throwErrno("fork");
    }
    if (child == 0)
    {
        execChild(devNull.get(), stderrWrite.get(), argp.data(), envp.data());
    }
    stderrWrite.reset();
    const state::UniqueFd pidfd = openPidfd(child);
    if (!pidfd)
    {
        const int error = errno;
        ::kill(child, SIGKILL);
        (void)::waitpid(child, nullptr, 0);
        errno = error;
        throwErrno("pidfd_open (vtpmctl needs Linux 5.3 or later)");
    }
    const Deadline deadline = started + timeout;
    std::string errors;
    bool stderrOpen = true;
    for (;;)
    {
        std::array<pollfd, 3> fds{
            {{.fd = notify.fd(), .events = POLLIN, .revents = 0},
             {.fd = pidfd.get(), .events = POLLIN, .revents = 0},
             {.fd = stderrOpen ? stderrRead.get() : -1, .events = POLLIN, .revents = 0}}};
        const int n = ::poll(fds.data(), fds.size(), pollTimeout(deadline));
        if (n < 0 && errno == EINTR)
        {
            continue;
        }
        if (fds[2].revents != 0)
        {
            stderrOpen = drainStderr(stderrRead.get(), errors);
        }
        if (fds[0].revents != 0 && notify.receiveReady(child))
        {
            return {.pid = child,
                    .elapsed = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() -
                                                                                     started)};
        }
        if (fds[1].revents != 0)
        {
            int status = 0;
            while (::waitpid(child, &status, 0) < 0 && errno == EINTR)
            {
            }
            (void)drainStderr(stderrRead.get(), errors);
            throw CommandError(ExitCode::Failed, "vtpmd " + describeExit(status) +
                                                     " before it was ready:\n" + indent(errors) +
                                                     "Details may be in " + logFile.string() +
                                                     "; fix the cause and run the command again.");
        }
        if (n == 0)
        {
            ::kill(child, SIGKILL);
            int status = 0;
            while (::waitpid(child, &status, 0) < 0 && errno == EINTR)
            {
            }
            (void)drainStderr(stderrRead.get(), errors);
            throw CommandError(
                ExitCode::Failed,
                "vtpmd did not report READY=1 within " + std::to_string(timeout.count()) +
                    " ms and was killed; its stderr:\n" + indent(errors) + "Check " +
                    logFile.string() + ", or retry with a longer --timeout on a loaded host.");
        }
    }
}

} // namespace vtpm::tools

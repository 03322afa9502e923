#include "tools/vtpmctl/daemon_stopper.hpp"

#include "tools/vtpmctl/ctrl_client.hpp"
#include "tools/vtpmctl/daemon_process.hpp"
#include "tools/vtpmctl/exit_codes.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace vtpm::tools
{

namespace
{

using std::chrono::milliseconds;

// Shares of the budget at which each step gives up (CMD_SHUTDOWN, SIGTERM; SIGKILL gets the
// rest). A CMD_SHUTDOWN reply is awaited at most kShutdownReply: a held control connection
// never answers, and vtpmd's orderly exit normally takes a few milliseconds.
constexpr double kShutdownShare = 0.5;
constexpr double kTerminateShare = 0.85;
constexpr milliseconds kShutdownReply{1000};

milliseconds share(milliseconds total, double fraction)
{
    return milliseconds(
        static_cast<milliseconds::rep>(static_cast<double>(total.count()) * fraction));
}

// pidfd_send_signal: cannot hit a process that reused the pid after ours exited.
bool sendSignal(const state::UniqueFd& pidfd, pid_t pid, int signal)
{
    if (::syscall(SYS_pidfd_send_signal, pidfd.get(), signal, nullptr, 0) == 0 || errno == ESRCH)
    {
        return true;
    }
    if (errno == EPERM)
    {
        throw CommandError(ExitCode::Failed, "not permitted to signal vtpmd (pid " +
                                                 std::to_string(pid) +
                                                 "); run vtpmctl as the user that owns it");
    }
    return false;
}

} // namespace

std::string_view stopStepName(StopStep step) noexcept
{
    switch (step)
    {
    case StopStep::AlreadyGone:
        return "already gone";
    case StopStep::Shutdown:
        return "CMD_SHUTDOWN";
    case StopStep::Terminate:
        return "SIGTERM";
    case StopStep::Kill:
        return "SIGKILL";
    }
    return "";
}

StopOutcome stopDaemon(pid_t pid, const InstancePaths& paths, milliseconds timeout,
                       bool controlHeld)
{
    const auto started = Clock::now();
    const auto elapsed = [&started]
    {
        return std::chrono::duration_cast<milliseconds>(Clock::now() - started);
    };
    const state::UniqueFd pidfd = openPidfd(pid);
    if (!pidfd)
    {
        return {.step = StopStep::AlreadyGone};
    }

    if (!controlHeld)
    {
        const Deadline shutdownEnd = started + share(timeout, kShutdownShare);
        const protocol::Bytes request = protocol::encodeRequest(protocol::CtrlCode::Shutdown);
        const CtrlReply reply =
            ctrlRequest(paths.ctrlSocket, protocol::CtrlCode::Shutdown, request,
                        std::min(kShutdownReply, share(timeout, kShutdownShare)));
        if (reply.outcome == CtrlOutcome::Replied && reply.result == protocol::rc::kSuccess &&
            waitExit(pidfd, shutdownEnd))
        {
            return {.step = StopStep::Shutdown, .elapsed = elapsed()};
        }
    }
    if (waitExit(pidfd, Clock::now()))
    {
        return {.step = StopStep::Shutdown, .elapsed = elapsed()};
    }

    if (sendSignal(pidfd, pid, SIGTERM) &&
        waitExit(pidfd, started + share(timeout, kTerminateShare)))
    {
        return {.step = StopStep::Terminate, .elapsed = elapsed()};
    }
    if (sendSignal(pidfd, pid, SIGKILL) && waitExit(pidfd, started + timeout))
    {
        return {.step = StopStep::Kill, .elapsed = elapsed()};
    }
    throw CommandError(ExitCode::Failed,
                       "vtpmd (pid " + std::to_string(pid) + ") of " + paths.name +
                           " is still there after CMD_SHUTDOWN, SIGTERM and SIGKILL within " +
                           std::to_string(timeout.count()) +
                           " ms; it may be stuck in the kernel (check 'ps -o stat,wchan -p " +
                           std::to_string(pid) + "') and try again");
}

} // namespace vtpm::tools

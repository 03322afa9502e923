#include "tools/vtpmctl/daemon_process.hpp"

#include <cerrno>
#include <charconv>
#include <fstream>
#include <iterator>
#include <system_error>

#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace vtpm::tools
{

namespace
{

std::optional<pid_t> readPidFile(const fs::path& file)
{
    std::ifstream in(file);
    std::string text;
    if (!in || !std::getline(in, text))
    {
        return std::nullopt;
    }
    pid_t pid = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), pid);
    if (ec != std::errc{} || pid <= 1)
    {
        return std::nullopt;
    }
    return pid;
}

// Whether a live pid is this instance's vtpmd: one of its arguments names the instance's TPM
// state directory. If /proc does not let us look (another user, hidepid) the pid is trusted;
// an empty cmdline (a zombie) or a vanished /proc entry means the daemon is gone.
PidState classify(pid_t pid, const InstancePaths& paths)
{
    std::ifstream in("/proc/" + std::to_string(pid) + "/cmdline", std::ios::binary);
    if (!in)
    {
        return errno == ENOENT ? PidState::Gone : PidState::Alive;
    }
    const std::string cmdline{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    if (cmdline.empty())
    {
        return PidState::Gone;
    }
    const std::string wanted = "dir=" + paths.tpmDir.string();
    std::size_t pos = 0;
    while (pos < cmdline.size())
    {
        std::size_t end = cmdline.find('\0', pos);
        end = end == std::string::npos ? cmdline.size() : end;
        const std::string_view arg(cmdline.data() + pos, end - pos);
        if (arg == wanted || arg.starts_with(wanted + ","))
        {
            return PidState::Alive;
        }
        pos = end + 1;
    }
    return PidState::Foreign;
}

} // namespace

PidProbe probePid(const InstancePaths& paths)
{
    const auto pid = readPidFile(paths.pidFile);
    if (!pid)
    {
        std::error_code ec;
        return {.state = fs::exists(paths.pidFile, ec) ? PidState::Gone : PidState::NoPidFile};
    }
    if (::kill(*pid, 0) != 0 && errno == ESRCH)
    {
        return {.state = PidState::Gone, .pid = *pid};
    }
    return {.state = classify(*pid, paths), .pid = *pid};
}

state::UniqueFd openPidfd(pid_t pid)
{
    return state::UniqueFd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
}

bool waitExit(const state::UniqueFd& pidfd, Deadline deadline) noexcept
{
    return !pidfd.valid() || waitReadable(pidfd.get(), deadline);
}

void removeStaleRuntimeFiles(const InstancePaths& paths) noexcept
{
    std::error_code ec;
    fs::remove(paths.pidFile, ec);
    fs::remove(paths.ctrlSocket, ec);
    fs::remove(paths.statusSocket, ec);
}

} // namespace vtpm::tools

#include "tools/vtpmctl/systemd_host.hpp"

#include "tools/vtpmctl/exit_codes.hpp"

#include <cerrno>
#include <cstring>
#include <vector>

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ; // NOLINT(readability-redundant-declaration): POSIX, not in <unistd.h>

namespace vtpm::tools
{

bool systemdManages(const Locations& where, bool noSystemd)
{
    std::error_code ec;
    return !noSystemd && where.system && !where.relocated && ::geteuid() == 0 &&
           fs::is_directory("/run/systemd/system", ec);
}

void runSystemctl(const std::string& verb, const std::string& name)
{
    const std::string unit = "vtpm@" + name + ".service";
    std::vector<std::string> args{"systemctl", verb, unit};
    std::vector<char*> argv;
    for (std::string& a : args)
    {
        argv.push_back(a.data());
    }
    argv.push_back(nullptr);
    pid_t pid = 0;
    const int error = ::posix_spawnp(&pid, "systemctl", nullptr, nullptr, argv.data(), environ);
    if (error != 0)
    {
        throw CommandError(ExitCode::Failed, std::string("cannot run systemctl: ") +
                                                 std::strerror(error) +
                                                 "; use --no-systemd to manage vtpmd directly");
    }
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR)
    {
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    {
        throw CommandError(ExitCode::Failed, "systemctl " + verb + " " + unit +
                                                 " failed; see 'systemctl status " + unit +
                                                 "' and 'journalctl -u " + unit + "'");
    }
}

} // namespace vtpm::tools

// vtpmd: one software TPM for one VM, a drop-in for `swtpm socket`.

#include "daemon/daemon.hpp"
#include "daemon/introspection.hpp"
#include "daemon/logging.hpp"
#include "daemon/options.hpp"
#include "daemon/process.hpp"
#include "daemon/tpm_engine.hpp"
#include "vtpmd_config.hpp"

#include <spdlog/spdlog.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <span>

namespace
{

constexpr int kExitUsage = 2;

int printOnly(const vtpm::daemon::Options& options, const char* program)
{
    using vtpm::daemon::Action;
    switch (options.action)
    {
    case Action::Help:
        std::fputs(vtpm::daemon::usageText(program).c_str(), stdout);
        return EXIT_SUCCESS;
    case Action::Version:
    {
        const std::uint32_t v = vtpm::daemon::TpmEngine::libraryVersion();
        std::printf("vtpmd %s (libtpms %u.%u.%u)\n", VTPMD_VERSION, v >> 16U, (v >> 8U) & 0xffU,
                    v & 0xffU);
        return EXIT_SUCCESS;
    }
    case Action::PrintCapabilities:
        std::printf("%s\n", vtpm::daemon::capabilitiesJson(options).c_str());
        return EXIT_SUCCESS;
    case Action::PrintStates:
        std::fputs(vtpm::daemon::statesJson(options).c_str(), stdout);
        return EXIT_SUCCESS;
    case Action::Run:
        break;
    }
    return -1;
}

} // namespace

int main(int argc, char* argv[])
{
    std::signal(SIGPIPE, SIG_IGN); // a vanished peer is an I/O error, not a reason to die
    const char* program = argc > 0 ? argv[0] : "vtpmd";
    vtpm::daemon::Options options;
    try
    {
        options = vtpm::daemon::parseOptions(std::span(argv, static_cast<std::size_t>(argc)));
    }
    catch (const vtpm::daemon::UsageError& e)
    {
        std::fprintf(stderr, "vtpmd: %s\nTry '%s socket --help' for more information.\n",
                     e.what(), program);
        return kExitUsage;
    }
    try
    {
        const int printed = printOnly(options, program);
        if (printed >= 0)
        {
            return printed;
        }
    }
    catch (const std::exception& e)
    {
        std::fprintf(stderr, "vtpmd: %s\n", e.what());
        return EXIT_FAILURE;
    }

    std::optional<vtpm::daemon::Detacher> detacher;
    try
    {
        if (options.daemonize)
        {
            detacher.emplace();
        }
        vtpm::daemon::setupLogging(options.log);
        vtpm::daemon::Daemon daemon(options);
        const vtpm::daemon::PidFile pidFile(options.pid);
        if (!options.runas.empty())
        {
            vtpm::daemon::dropPrivileges(options.runas, options.tpmstate->dir);
        }
        daemon.startTpm();
        if (detacher)
        {
            detacher->ready();
        }
        return daemon.run();
    }
    catch (const std::exception& e)
    {
        spdlog::critical("{}", e.what());
        if (options.log && !(options.log->file.empty() && options.log->fd < 0))
        {
            std::fprintf(stderr, "vtpmd: %s\n", e.what()); // the log may not be where one looks
        }
        if (detacher)
        {
            detacher->failed(e.what());
        }
        return EXIT_FAILURE;
    }
}

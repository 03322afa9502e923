// vtpmctl start and exec: run an instance's vtpmd, detached (start) or in place (exec).

#include "tools/vtpmctl/commands.hpp"
#include "tools/vtpmctl/daemon_launcher.hpp"
#include "tools/vtpmctl/daemon_process.hpp"
#include "tools/vtpmctl/exit_codes.hpp"
#include "tools/vtpmctl/instance_access.hpp"
#include "tools/vtpmctl/instance_lock.hpp"
#include "tools/vtpmctl/systemd_host.hpp"
#include "tools/vtpmctl/vtpmd_command.hpp"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <vector>

#include <unistd.h>

namespace vtpm::tools
{

namespace
{

void refuseIfRunning(const InstancePaths& paths)
{
    const PidProbe probe = probePid(paths);
    if (probe.state == PidState::Alive)
    {
        throw CommandError(ExitCode::Busy, paths.name + " is already running (pid " +
                                               std::to_string(probe.pid) + "); 'vtpmctl stop " +
                                               paths.name + "' stops it");
    }
    if (probe.state != PidState::NoPidFile)
    {
        removeStaleRuntimeFiles(paths); // left behind by a vtpmd that crashed or was killed
    }
}

} // namespace

void startInstance(const GlobalOptions& global, const StartOptions& options)
{
    const auto timeout = timeoutFrom(options.timeoutSeconds);
    requireValidName(options.name);
    if (options.create)
    {
        const InstancePaths paths = instancePaths(resolveLocations(global.root), options.name);
        std::error_code ec;
        if (!fs::exists(paths.configFile, ec))
        {
            CreateOptions defaults;
            defaults.name = options.name;
            defaults.reportOnStderr = true;
            createInstance(global, defaults);
        }
    }
    const Instance instance = openInstance(global, options.name);
    const InstancePaths& paths = instance.paths;
    if (systemdManages(instance.where, options.noSystemd))
    {
        refuseIfRunning(paths);
        runSystemctl("start", options.name);
        std::printf("%s\n", qemuArgs(instance.config, paths).c_str());
        return;
    }
    requireSocketPathsFit(paths);
    ensureRuntimeDir(instance.where, paths);
    const InstanceLock lock(paths);
    refuseIfRunning(paths);
    const auto argv = vtpmdArgv(vtpmdPath(global.vtpmd), instance.config, paths);
    const LaunchResult launched = launchUntilReady(argv, paths.logFile, timeout);
    std::fprintf(stderr, "vtpmctl: %s started (pid %d, ready after %.1f ms)\n",
                 options.name.c_str(), static_cast<int>(launched.pid),
                 static_cast<double>(launched.elapsed.count()) / 1000.0);
    std::printf("%s\n", qemuArgs(instance.config, paths).c_str());
}

void execInstance(const GlobalOptions& global, const std::string& name)
{
    requireValidName(name);
    // Under systemd the unit's own directories are authoritative (see serviceInstancePaths).
    std::optional<InstancePaths> service = (global.root || std::getenv("VTPM_ROOT") != nullptr)
                                               ? std::nullopt
                                               : serviceInstancePaths(name);
    const Locations where = resolveLocations(global.root);
    const InstancePaths paths = service ? *service : instancePaths(where, name);
    std::error_code ec;
    if (!fs::exists(paths.configFile, ec))
    {
        throw CommandError(ExitCode::NotFound,
                           "no instance " + name + " (no " + paths.configFile.string() +
                               "); create it with 'vtpmctl create " + name + "'");
    }
    const InstanceConfig config = loadConfig(paths.configFile);
    requireSocketPathsFit(paths);
    if (!service)
    {
        ensureRuntimeDir(where, paths);
    }
    std::vector<std::string> argv = vtpmdArgv(vtpmdPath(global.vtpmd), config, paths);
    std::vector<char*> argp;
    for (std::string& a : argv)
    {
        argp.push_back(a.data());
    }
    argp.push_back(nullptr);
    std::fflush(stdout);
    ::execv(argp[0], argp.data());
    throw CommandError(ExitCode::Failed, "cannot execute " + argv[0] + ": " + std::strerror(errno) +
                                             "; pass --vtpmd PATH or set VTPMD");
}

} // namespace vtpm::tools

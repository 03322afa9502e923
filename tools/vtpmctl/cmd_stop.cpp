// vtpmctl stop and destroy.

#include "tools/vtpmctl/commands.hpp"
#include "tools/vtpmctl/daemon_process.hpp"
#include "tools/vtpmctl/daemon_stopper.hpp"
#include "tools/vtpmctl/exit_codes.hpp"
#include "tools/vtpmctl/instance_lock.hpp"
#include "tools/vtpmctl/instance_paths.hpp"
#include "tools/vtpmctl/status_query.hpp"
#include "tools/vtpmctl/systemd_host.hpp"

#include <cstdio>

namespace vtpm::tools
{

namespace
{

constexpr std::chrono::milliseconds kStopStatusTimeout{1000};

bool flag(const std::optional<nlohmann::json>& report, const char* key)
{
    if (!report)
    {
        return false;
    }
    const auto it = report->find(key);
    return it != report->end() && it->is_boolean() && it->get<bool>();
}

// Stops a live vtpmd; false if it was not running. Called with the instance lock held.
bool stopRunning(const Locations& where, const InstancePaths& paths, const StopOptions& options)
{
    const PidProbe probe = probePid(paths);
    if (probe.state != PidState::Alive)
    {
        if (probe.state != PidState::NoPidFile)
        {
            removeStaleRuntimeFiles(paths);
        }
        return false;
    }
    // The health report tells whether a VM is attached and whether the single control
    // connection is taken; a daemon that does not answer gets the signal ladder.
    const auto report = queryStatus({paths.statusSocket}, kStopStatusTimeout).front();
    if (flag(report, "vmAttached") && !options.force)
    {
        throw CommandError(ExitCode::VmAttached,
                           "a VM is attached to " + paths.name + " (vtpmd pid " +
                               std::to_string(probe.pid) +
                               "); shut the VM down first, or pass --force (the VM loses its "
                               "TPM)");
    }
    const auto timeout =
        std::chrono::milliseconds(static_cast<std::int64_t>(options.timeoutSeconds * 1000.0));
    if (systemdManages(where, options.noSystemd))
    {
        runSystemctl("stop", paths.name);
        if (probePid(paths).state != PidState::Alive)
        {
            std::printf("%s stopped (systemctl)\n", paths.name.c_str());
            return true;
        }
        // Not the unit's process: it was started with --no-systemd; stop it directly.
    }
    const StopOutcome outcome =
        stopDaemon(probe.pid, paths, timeout, flag(report, "controlConnected"));
    removeStaleRuntimeFiles(paths);
    std::printf("%s stopped (pid %d, %s, %lld ms)\n", paths.name.c_str(),
                static_cast<int>(probe.pid), std::string(stopStepName(outcome.step)).c_str(),
                static_cast<long long>(outcome.elapsed.count()));
    return true;
}

void requireExists(const InstancePaths& paths)
{
    std::error_code ec;
    if (!fs::exists(paths.stateDir, ec) && !fs::exists(paths.runDir, ec))
    {
        throw CommandError(ExitCode::NotFound, "no instance " + paths.name + " (neither " +
                                                   paths.stateDir.string() + " nor " +
                                                   paths.runDir.string() +
                                                   " exists); 'vtpmctl list' shows what exists");
    }
}

} // namespace

void stopInstance(const GlobalOptions& global, const StopOptions& options)
{
    requireValidName(options.name);
    if (!(options.timeoutSeconds > 0 && options.timeoutSeconds <= 86400))
    {
        throw CommandError(ExitCode::Usage, "--timeout must be between 0 and 86400 seconds");
    }
    const Locations where = resolveLocations(global.root);
    const InstancePaths paths = instancePaths(where, options.name);
    requireExists(paths);
    std::error_code ec;
    if (!fs::exists(paths.runDir, ec))
    {
        std::printf("%s is not running\n", options.name.c_str());
        return;
    }
    const InstanceLock lock(paths);
    if (!stopRunning(where, paths, options))
    {
        std::printf("%s is not running\n", options.name.c_str());
    }
}

void destroyInstance(const GlobalOptions& global, const StopOptions& options)
{
    requireValidName(options.name);
    const Locations where = resolveLocations(global.root);
    const InstancePaths paths = instancePaths(where, options.name);
    requireExists(paths);
    std::error_code ec;
    if (fs::exists(paths.runDir, ec))
    {
        const InstanceLock lock(paths);
        const PidProbe probe = probePid(paths);
        if (probe.state == PidState::Alive && !options.force)
        {
            throw CommandError(ExitCode::Busy, options.name + " is running (pid " +
                                                   std::to_string(probe.pid) +
                                                   "); stop it with 'vtpmctl stop " + options.name +
                                                   "' or pass --force");
        }
        (void)stopRunning(where, paths, options);
        fs::remove_all(paths.runDir, ec);
    }
    fs::remove_all(paths.stateDir, ec);
    if (ec)
    {
        throw CommandError(ExitCode::Failed, "cannot remove " + paths.stateDir.string() + ": " +
                                                 ec.message() + "; remove it by hand");
    }
    std::printf("destroyed %s\n", options.name.c_str());
}

} // namespace vtpm::tools

#include "daemon/health_report.hpp"

#include "vtpmd_config.hpp"

#include <nlohmann/json.hpp>

#include <unistd.h>

namespace vtpm::daemon
{

namespace
{

double secondsSinceEpoch(std::chrono::system_clock::time_point t)
{
    return std::chrono::duration<double>(t.time_since_epoch()).count();
}

} // namespace

std::string toJson(const HealthReport& r)
{
    const auto now = std::chrono::system_clock::now();
    nlohmann::json j = {
        {"program", "vtpmd"},
        {"version", VTPMD_VERSION},
        {"pid", ::getpid()},
        {"tpm", r.tpmVersion},
        {"tpmRunning", r.tpmRunning},
        {"controlConnected", r.controlConnected},
        {"vmAttached", r.dataConnected},
        {"stateDir", r.stateDir.string()},
        {"stateLocked", r.stateLocked},
        {"startedAt", secondsSinceEpoch(r.startedAt)},
        {"uptimeSeconds", std::chrono::duration<double>(now - r.startedAt).count()},
        {"commandsServed", r.commandsServed},
        {"controlCommands", r.controlCommands},
        {"badFrames", r.badFrames},
        {"storageErrors", r.storageErrors},
        {"bufferSize", r.bufferSize},
        {"locality", r.locality},
    };
    if (r.commandsServed > 0)
    {
        j["lastCommand"] = {{"code", r.lastCommandCode},
                            {"name", r.lastCommandName},
                            {"time", secondsSinceEpoch(r.lastCommandTime)}};
    }
    else
    {
        j["lastCommand"] = nullptr;
    }
    return j.dump() + "\n";
}

} // namespace vtpm::daemon

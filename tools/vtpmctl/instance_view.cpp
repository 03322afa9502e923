#include "tools/vtpmctl/instance_view.hpp"

#include "tools/vtpmctl/daemon_process.hpp"
#include "tools/vtpmctl/exit_codes.hpp"
#include "tools/vtpmctl/status_query.hpp"

#include <algorithm>
#include <set>

namespace vtpm::tools
{

namespace
{

void collectNames(const fs::path& root, std::set<std::string>& names)
{
    std::error_code ec;
    for (fs::directory_iterator it(root, ec), end; !ec && it != end; it.increment(ec))
    {
        std::string name = it->path().filename().string();
        if (nameProblem(name).empty() && it->is_directory(ec))
        {
            names.insert(std::move(name));
        }
    }
}

std::string startHint(const std::string& name)
{
    return "; run 'vtpmctl start " + name + "' to start it again";
}

} // namespace

std::string_view runStateName(RunState state) noexcept
{
    switch (state)
    {
    case RunState::Running:
        return "running";
    case RunState::Stopped:
        return "stopped";
    case RunState::Failed:
        return "failed";
    case RunState::NotCreated:
        return "not-created";
    }
    return "";
}

std::vector<std::string> instanceNames(const Locations& where)
{
    std::set<std::string> names;
    collectNames(where.stateRoot, names);
    collectNames(where.runRoot, names);
    return {names.begin(), names.end()};
}

std::vector<InstanceView> inspectInstances(const Locations& where,
                                           const std::vector<std::string>& names)
{
    std::vector<InstanceView> views;
    views.reserve(names.size());
    std::vector<fs::path> sockets;
    std::vector<std::size_t> asked;
    for (const std::string& name : names)
    {
        InstanceView v;
        v.paths = instancePaths(where, name);
        std::error_code ec;
        if (fs::exists(v.paths.configFile, ec))
        {
            try
            {
                v.config = loadConfig(v.paths.configFile);
            }
            catch (const CommandError& e)
            {
                v.reason = e.what();
            }
        }
        else
        {
            v.state = RunState::NotCreated;
            v.reason = "no " + v.paths.configFile.string() + "; create it with 'vtpmctl create " +
                       name + "'";
        }
        const PidProbe probe = probePid(v.paths);
        v.pid = probe.pid;
        switch (probe.state)
        {
        case PidState::NoPidFile:
            break;
        case PidState::Alive:
            sockets.push_back(v.paths.statusSocket);
            asked.push_back(views.size());
            break;
        case PidState::Gone:
            v.state = RunState::Failed;
            v.reason = "vtpmd (pid " + std::to_string(probe.pid) +
                       ") ended without cleaning up (crash or SIGKILL); see " +
                       v.paths.logFile.string() + startHint(name);
            break;
        case PidState::Foreign:
            v.state = RunState::Failed;
            v.reason = "pid " + std::to_string(probe.pid) + " from " + v.paths.pidFile.string() +
                       " is another program now, vtpmd is gone" + startHint(name);
            break;
        }
        views.push_back(std::move(v));
    }
    auto reports = queryStatus(sockets, kStatusTimeout);
    for (std::size_t i = 0; i < asked.size(); ++i)
    {
        InstanceView& v = views[asked[i]];
        if (reports[i])
        {
            v.health = std::move(reports[i]);
            v.state = RunState::Running;
        }
        else
        {
            v.state = RunState::Failed;
            v.reason = "vtpmd (pid " + std::to_string(v.pid) + ") does not answer on " +
                       v.paths.statusSocket.string() +
                       " (stopped, hung or overloaded); 'vtpmctl stop " + v.paths.name +
                       "' ends it";
        }
    }
    return views;
}

bool healthFlag(const InstanceView& view, const char* key)
{
    if (!view.health)
    {
        return false;
    }
    const auto it = view.health->find(key);
    return it != view.health->end() && it->is_boolean() && it->get<bool>();
}

nlohmann::json toJson(const InstanceView& v)
{
    const bool running = v.state == RunState::Running;
    nlohmann::json j = {
        {"name", v.paths.name},
        {"state", runStateName(v.state)},
        {"tpm", v.config ? nlohmann::json(v.config->tpm) : nlohmann::json(nullptr)},
        {"device", v.config ? nlohmann::json(v.config->device) : nlohmann::json(nullptr)},
        {"encrypted", v.config && (v.config->keyFile || v.config->passphraseFile)},
        {"pid", v.pid > 0 && v.state != RunState::Stopped ? nlohmann::json(v.pid)
                                                          : nlohmann::json(nullptr)},
        {"uptimeSeconds", running ? v.health->value("uptimeSeconds", nlohmann::json(nullptr))
                                  : nlohmann::json(nullptr)},
        {"vmAttached", healthFlag(v, "vmAttached")},
        {"tpmRunning", healthFlag(v, "tpmRunning")},
        {"commandsServed",
         running ? v.health->value("commandsServed", nlohmann::json(0)) : nlohmann::json(nullptr)},
        {"lastCommand", running ? v.health->value("lastCommand", nlohmann::json(nullptr))
                                : nlohmann::json(nullptr)},
        {"ctrlSocket", v.paths.ctrlSocket.string()},
        {"statusSocket", v.paths.statusSocket.string()},
        {"stateDir", v.paths.stateDir.string()},
        {"runtimeDir", v.paths.runDir.string()},
        {"reason", v.reason.empty() ? nlohmann::json(nullptr) : nlohmann::json(v.reason)},
        {"health", v.health ? *v.health : nlohmann::json(nullptr)},
    };
    return j;
}

} // namespace vtpm::tools

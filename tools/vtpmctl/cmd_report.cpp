// vtpmctl list, status and qemu-args: read-only views of instances.

#include "tools/vtpmctl/commands.hpp"
#include "tools/vtpmctl/exit_codes.hpp"
#include "tools/vtpmctl/instance_access.hpp"
#include "tools/vtpmctl/instance_view.hpp"
#include "tools/vtpmctl/vtpmd_command.hpp"

#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>

namespace vtpm::tools
{

namespace
{

std::string formatDuration(double seconds)
{
    const auto s = static_cast<long long>(seconds);
    char text[32];
    if (s < 60)
    {
        std::snprintf(text, sizeof(text), "%llds", s);
    }
    else if (s < 3600)
    {
        std::snprintf(text, sizeof(text), "%lldm%02llds", s / 60, s % 60);
    }
    else if (s < 86400)
    {
        std::snprintf(text, sizeof(text), "%lldh%02lldm", s / 3600, (s % 3600) / 60);
    }
    else
    {
        std::snprintf(text, sizeof(text), "%lldd%02lldh", s / 86400, (s % 86400) / 3600);
    }
    return text;
}

double nowSeconds()
{
    return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

std::string lastCommandText(const InstanceView& v)
{
    if (!v.health)
    {
        return "-";
    }
    const auto it = v.health->find("lastCommand");
    if (it == v.health->end() || !it->is_object())
    {
        return "-";
    }
    const std::string name = it->value("name", std::string("?"));
    const double age = std::max(0.0, nowSeconds() - it->value("time", 0.0));
    return name + " " + formatDuration(age) + " ago";
}

using Row = std::array<std::string, 9>;

Row rowOf(const InstanceView& v)
{
    const bool running = v.state == RunState::Running;
    const bool showPid = v.pid > 0 && v.state != RunState::Stopped;
    return {
        v.paths.name,
        v.config ? v.config->tpm : "-",
        std::string(runStateName(v.state)),
        showPid ? std::to_string(v.pid) : "-",
        running ? formatDuration(v.health->value("uptimeSeconds", 0.0)) : "-",
        running ? (healthFlag(v, "vmAttached") ? "yes" : "no") : "-",
        running ? std::to_string(v.health->value("commandsServed", std::uint64_t{0})) : "-",
        lastCommandText(v),
        v.paths.ctrlSocket.string(),
    };
}

void printTable(const std::vector<InstanceView>& views)
{
    std::vector<Row> rows{{"NAME", "TPM", "STATE", "PID", "UPTIME", "VM ATTACHED",
                           "COMMANDS SERVED", "LAST COMMAND", "SOCKET"}};
    for (const InstanceView& v : views)
    {
        rows.push_back(rowOf(v));
    }
    std::array<std::size_t, 9> width{};
    for (const Row& r : rows)
    {
        for (std::size_t i = 0; i < r.size(); ++i)
        {
            width[i] = std::max(width[i], r[i].size());
        }
    }
    std::string out;
    for (const Row& r : rows)
    {
        for (std::size_t i = 0; i < r.size(); ++i)
        {
            out += r[i];
            if (i + 1 < r.size())
            {
                out.append(width[i] - r[i].size() + 2, ' ');
            }
        }
        out += '\n';
    }
    std::fputs(out.c_str(), stdout);
}

} // namespace

void listInstances(const GlobalOptions& global, bool json)
{
    const Locations where = resolveLocations(global.root);
    const std::vector<InstanceView> views = inspectInstances(where, instanceNames(where));
    if (json)
    {
        nlohmann::json all = nlohmann::json::array();
        for (const InstanceView& v : views)
        {
            all.push_back(toJson(v));
        }
        std::printf("%s\n", all.dump(2).c_str());
        return;
    }
    printTable(views);
}

void showStatus(const GlobalOptions& global, const std::string& name, bool json)
{
    requireValidName(name);
    const Locations where = resolveLocations(global.root);
    const InstanceView v = inspectInstances(where, {name}).front();
    std::error_code ec;
    const bool exists = fs::exists(v.paths.stateDir, ec) || fs::exists(v.paths.runDir, ec);
    if (json)
    {
        std::printf("%s\n", toJson(v).dump(2).c_str());
    }
    else
    {
        const Row r = rowOf(v);
        std::printf("name:            %s\n"
                    "state:           %s\n"
                    "tpm:             %s\n"
                    "pid:             %s\n"
                    "uptime:          %s\n"
                    "vm attached:     %s\n"
                    "tpm initialised: %s\n"
                    "commands served: %s\n"
                    "last command:    %s\n"
                    "control socket:  %s\n"
                    "state dir:       %s\n",
                    r[0].c_str(), r[2].c_str(), r[1].c_str(), r[3].c_str(), r[4].c_str(),
                    r[5].c_str(), v.health ? (healthFlag(v, "tpmRunning") ? "yes" : "no") : "-",
                    r[6].c_str(), r[7].c_str(), r[8].c_str(), v.paths.stateDir.c_str());
        if (v.health)
        {
            std::printf("errors:          %llu bad frames, %llu storage errors\n",
                        static_cast<unsigned long long>(v.health->value("badFrames", 0ULL)),
                        static_cast<unsigned long long>(v.health->value("storageErrors", 0ULL)));
        }
        if (!v.reason.empty())
        {
            std::printf("note:            %s\n", v.reason.c_str());
        }
    }
    if (!exists)
    {
        throw CommandError(ExitCode::NotFound, "");
    }
}

void printQemuArgs(const GlobalOptions& global, const std::string& name)
{
    const Instance instance = openInstance(global, name);
    std::printf("%s\n", qemuArgs(instance.config, instance.paths).c_str());
}

} // namespace vtpm::tools

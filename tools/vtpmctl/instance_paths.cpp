#include "tools/vtpmctl/instance_paths.hpp"

#include "tools/vtpmctl/exit_codes.hpp"

#include <cstdlib>

#include <sys/un.h>
#include <unistd.h>

namespace vtpm::tools
{

namespace
{

bool isNameChar(char c) noexcept
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-';
}

std::optional<fs::path> envPath(const char* variable)
{
    const char* value = std::getenv(variable);
    if (value == nullptr || *value == '\0')
    {
        return std::nullopt;
    }
    return fs::path(value);
}

InstancePaths pathsIn(std::string_view name, const fs::path& stateDir, const fs::path& runDir)
{
    return InstancePaths{
        .name = std::string(name),
        .stateDir = stateDir,
        .tpmDir = stateDir / "tpm",
        .configFile = stateDir / "instance.json",
        .logFile = stateDir / "vtpmd.log",
        .runDir = runDir,
        .ctrlSocket = runDir / "ctrl.sock",
        .statusSocket = runDir / "status.sock",
        .pidFile = runDir / "vtpmd.pid",
        .lockFile = runDir / ".vtpmctl.lock",
    };
}

} // namespace

std::string nameProblem(std::string_view name)
{
    if (name.empty())
    {
        return "the instance name is empty";
    }
    if (name.size() > kMaxNameLength)
    {
        return "the instance name has " + std::to_string(name.size()) + " characters, at most " +
               std::to_string(kMaxNameLength) + " are allowed";
    }
    const char first = name.front();
    if (first == '-' || first == '.' || first == '_')
    {
        return "the instance name must start with a letter or digit, not '" +
               std::string(1, first) + "'";
    }
    for (const char c : name)
    {
        if (!isNameChar(c))
        {
            const std::string shown = (c >= 0x20 && c < 0x7f) ? std::string(1, c) : "?";
            return "the instance name contains '" + shown +
                   "'; only letters, digits, '_', '.' and '-' are allowed";
        }
    }
    return {};
}

void requireValidName(std::string_view name)
{
    const std::string problem = nameProblem(name);
    if (!problem.empty())
    {
        throw CommandError(ExitCode::Usage,
                           "invalid instance name '" + std::string(name) + "': " + problem +
                               " (pattern [A-Za-z0-9][A-Za-z0-9_.-]{0,63}); pick another name");
    }
}

Locations resolveLocations(const std::optional<fs::path>& rootOption)
{
    std::optional<fs::path> root = rootOption ? rootOption : envPath("VTPM_ROOT");
    if (root)
    {
        const fs::path base = fs::absolute(*root).lexically_normal();
        return Locations{.stateRoot = base / "lib", .runRoot = base / "run", .relocated = true};
    }
    if (::geteuid() == 0)
    {
        return Locations{.stateRoot = "/var/lib/vtpm", .runRoot = "/run/vtpm", .system = true};
    }
    fs::path dataHome;
    if (auto xdg = envPath("XDG_DATA_HOME"))
    {
        dataHome = *xdg;
    }
    else if (auto home = envPath("HOME"))
    {
        dataHome = *home / ".local" / "share";
    }
    else
    {
        throw CommandError(ExitCode::Failed,
                           "neither XDG_DATA_HOME nor HOME is set, so there is no place for "
                           "instances; set one of them, VTPM_ROOT, or pass --root DIR");
    }
    const fs::path runtime =
        envPath("XDG_RUNTIME_DIR")
            .value_or(fs::path("/tmp") / ("vtpm-" + std::to_string(::geteuid())));
    const bool fallback = !envPath("XDG_RUNTIME_DIR");
    return Locations{.stateRoot = dataHome / "vtpm",
                     .runRoot = fallback ? runtime : runtime / "vtpm"};
}

InstancePaths instancePaths(const Locations& where, std::string_view name)
{
    return pathsIn(name, where.stateRoot / name, where.runRoot / name);
}

std::optional<InstancePaths> serviceInstancePaths(std::string_view name)
{
    const auto state = envPath("STATE_DIRECTORY");
    const auto runtime = envPath("RUNTIME_DIRECTORY");
    if (!state || !runtime || state->native().find(':') != std::string::npos ||
        runtime->native().find(':') != std::string::npos)
    {
        return std::nullopt;
    }
    return pathsIn(name, *state, *runtime);
}

void requireSocketPathsFit(const InstancePaths& paths)
{
    constexpr std::size_t kMax = sizeof(sockaddr_un::sun_path) - 1;
    for (const fs::path* p : {&paths.ctrlSocket, &paths.statusSocket})
    {
        if (p->native().size() > kMax)
        {
            throw CommandError(ExitCode::Failed,
                               "socket path " + p->string() + " is longer than " +
                                   std::to_string(kMax) +
                                   " bytes; use a shorter --root or instance name");
        }
    }
}

} // namespace vtpm::tools

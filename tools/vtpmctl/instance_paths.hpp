#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

// Where instances live (doc/instance-layout.md "Locations"): a state root holding one
// directory per instance (config, TPM state, log) and a runtime root holding its sockets and
// pid file. The systemd unit uses the same layout, so both agree on every path.
namespace vtpm::tools
{

namespace fs = std::filesystem;

inline constexpr std::size_t kMaxNameLength = 64;

// Empty if `name` is a valid instance name, else a sentence saying why it is not.
// Valid: [A-Za-z0-9][A-Za-z0-9_.-]{0,63}, so no '/', no "..", no leading '-' or '.'.
std::string nameProblem(std::string_view name);

// Throws CommandError(Usage) for an invalid name.
void requireValidName(std::string_view name);

struct Locations
{
    fs::path stateRoot;
    fs::path runRoot;
    bool relocated = false; // --root or VTPM_ROOT
    bool system = false;    // /var/lib/vtpm + /run/vtpm (root user)
};

// --root wins, then $VTPM_ROOT, then the system or per-user (XDG) locations.
Locations resolveLocations(const std::optional<fs::path>& rootOption);

struct InstancePaths
{
    std::string name;
    fs::path stateDir;
    fs::path tpmDir;
    fs::path configFile;
    fs::path logFile;
    fs::path runDir;
    fs::path ctrlSocket;
    fs::path statusSocket;
    fs::path pidFile;
    fs::path lockFile; // serialises vtpmctl start/stop/destroy of one instance
};

InstancePaths instancePaths(const Locations& where, std::string_view name);

// Under systemd (StateDirectory=vtpm/%i, RuntimeDirectory=vtpm/%i) the unit's own
// $STATE_DIRECTORY/$RUNTIME_DIRECTORY name the instance directories exactly; `vtpmctl exec`
// prefers them so the unit works whatever user it runs as. nullopt if either is unset.
std::optional<InstancePaths> serviceInstancePaths(std::string_view name);

// Throws CommandError(Failed) if a socket path does not fit sockaddr_un.
void requireSocketPathsFit(const InstancePaths& paths);

} // namespace vtpm::tools

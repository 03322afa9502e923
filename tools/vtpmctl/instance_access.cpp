#include "tools/vtpmctl/instance_access.hpp"

#include "tools/vtpmctl/exit_codes.hpp"

namespace vtpm::tools
{

Instance openInstance(const GlobalOptions& global, const std::string& name)
{
    requireValidName(name);
    Locations where = resolveLocations(global.root);
    InstancePaths paths = instancePaths(where, name);
    std::error_code ec;
    if (!fs::exists(paths.configFile, ec))
    {
        throw CommandError(ExitCode::NotFound, "no instance " + name + " (no " +
                                                   paths.configFile.string() +
                                                   "); create it with 'vtpmctl create " + name +
                                                   "', or check --root / VTPM_ROOT");
    }
    InstanceConfig config = loadConfig(paths.configFile);
    return Instance{
        .where = std::move(where), .paths = std::move(paths), .config = std::move(config)};
}

std::chrono::milliseconds timeoutFrom(double seconds)
{
    if (!(seconds > 0 && seconds <= 86400))
    {
        throw CommandError(ExitCode::Usage, "--timeout must be between 0 and 86400 seconds");
    }
    return std::chrono::milliseconds(static_cast<std::int64_t>(seconds * 1000.0));
}

} // namespace vtpm::tools

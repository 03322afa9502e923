#include "tools/vtpmctl/vtpmd_command.hpp"

#include <cstdlib>

#ifndef VTPMCTL_DEFAULT_VTPMD
#error "tools/meson.build passes -DVTPMCTL_DEFAULT_VTPMD=<bindir>/vtpmd"
#endif

namespace vtpm::tools
{

fs::path vtpmdPath(const std::optional<fs::path>& option)
{
    if (option)
    {
        return *option;
    }
    const char* env = std::getenv("VTPMD");
    if (env != nullptr && *env != '\0')
    {
        return env;
    }
    return VTPMCTL_DEFAULT_VTPMD;
}

std::vector<std::string> vtpmdArgv(const fs::path& vtpmd, const InstanceConfig& config,
                                   const InstancePaths& paths)
{
    std::vector<std::string> argv{vtpmd.string(), "socket"};
    if (config.tpm2())
    {
        argv.emplace_back("--tpm2");
    }
    argv.insert(
        argv.end(),
        {"--ctrl", "type=unixio,path=" + paths.ctrlSocket.string() + ",mode=" + config.socketMode,
         "--status", "path=" + paths.statusSocket.string(), "--tpmstate",
         "dir=" + paths.tpmDir.string() + ",mode=0600", "--pid", "file=" + paths.pidFile.string(),
         "--log", "file=" + paths.logFile.string() + ",level=1"});
    if (config.keyFile)
    {
        argv.insert(argv.end(),
                    {"--key", "file=" + config.keyFile->string() + ",mode=aes-256-cbc"});
    }
    else if (config.passphraseFile)
    {
        argv.insert(argv.end(),
                    {"--key", "pwdfile=" + config.passphraseFile->string() + ",mode=aes-256-cbc"});
    }
    return argv;
}

std::string qemuArgs(const InstanceConfig& config, const InstancePaths& paths)
{
    return "-chardev socket,id=chrtpm,path=" + paths.ctrlSocket.string() +
           " -tpmdev emulator,id=tpm0,chardev=chrtpm -device tpm-" + config.device + ",tpmdev=tpm0";
}

} // namespace vtpm::tools

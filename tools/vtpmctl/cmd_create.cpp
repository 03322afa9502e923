// vtpmctl create: a new instance directory with its instance.json.

#include "tools/vtpmctl/commands.hpp"
#include "tools/vtpmctl/exit_codes.hpp"
#include "tools/vtpmctl/instance_config.hpp"
#include "tools/vtpmctl/instance_lock.hpp"
#include "tools/vtpmctl/instance_paths.hpp"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <fstream>

#include <unistd.h>

namespace vtpm::tools
{

namespace
{

// A readable regular file, returned as an absolute path (vtpmd may run in another directory).
fs::path requireReadableFile(const fs::path& file, const char* option)
{
    std::error_code ec;
    const fs::path absolute = fs::absolute(file, ec).lexically_normal();
    if (ec || !fs::is_regular_file(absolute, ec) || ::access(absolute.c_str(), R_OK) != 0)
    {
        throw CommandError(ExitCode::Usage, std::string(option) + " " + file.string() +
                                                " is not a readable file; create it first "
                                                "(mode 0600) or fix its path");
    }
    return absolute;
}

std::string readSmallFile(const fs::path& file)
{
    std::ifstream in(file, std::ios::binary);
    std::string text(4096, '\0');
    in.read(text.data(), static_cast<std::streamsize>(text.size()));
    text.resize(static_cast<std::size_t>(std::max<std::streamsize>(0, in.gcount())));
    return text;
}

// vtpmd reads --key file= as 64 hex digits (AES-256, swtpm's format=hex).
void requireHexKey(const fs::path& file)
{
    std::string text = readSmallFile(file);
    while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back())) != 0)
    {
        text.pop_back();
    }
    const bool hex =
        std::all_of(text.begin(), text.end(),
                    [](char c) { return std::isxdigit(static_cast<unsigned char>(c)) != 0; });
    if (text.size() != 64 || !hex)
    {
        throw CommandError(ExitCode::Usage,
                           "--key-file " + file.string() +
                               " must hold an AES-256 key as 64 hex digits; make one with "
                               "'head -c 32 /dev/urandom | od -An -tx1 | tr -d \" \\n\" > FILE'");
    }
}

} // namespace

void createInstance(const GlobalOptions& global, const CreateOptions& options)
{
    requireValidName(options.name);
    if (options.tpm == "1.2" && options.device == "crb")
    {
        throw CommandError(
            ExitCode::Usage,
            "QEMU's tpm-crb device needs a TPM 2.0; use --device tis with --tpm 1.2");
    }
    if (const std::string problem = socketModeProblem(options.socketMode); !problem.empty())
    {
        throw CommandError(ExitCode::Usage, "--socket-mode: " + problem);
    }
    InstanceConfig config;
    config.name = options.name;
    config.tpm = options.tpm;
    config.device = options.device;
    config.socketMode = options.socketMode;
    if (options.keyFile)
    {
        config.keyFile = requireReadableFile(*options.keyFile, "--key-file");
        requireHexKey(*config.keyFile);
    }
    if (options.passphraseFile)
    {
        config.passphraseFile = requireReadableFile(*options.passphraseFile, "--passphrase-file");
        if (readSmallFile(*config.passphraseFile).empty())
        {
            throw CommandError(ExitCode::Usage, "--passphrase-file " +
                                                    config.passphraseFile->string() +
                                                    " is empty; write the passphrase into it");
        }
    }
    config.created = std::chrono::duration_cast<std::chrono::seconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();

    const Locations where = resolveLocations(global.root);
    const InstancePaths paths = instancePaths(where, options.name);
    requireSocketPathsFit(paths);
    std::error_code ec;
    if (fs::exists(paths.configFile, ec))
    {
        throw CommandError(ExitCode::Busy, "instance " + options.name + " already exists in " +
                                               paths.stateDir.string() +
                                               "; pick another name or 'vtpmctl destroy " +
                                               options.name + "' first");
    }
    if (!fs::exists(where.stateRoot, ec))
    {
        fs::create_directories(where.stateRoot.parent_path(), ec);
        (void)makeDir(where.stateRoot, where.system ? 0755U : 0700U);
    }
    (void)makeDir(paths.stateDir, 0700U);
    (void)makeDir(paths.tpmDir, 0700U);
    saveConfig(paths.configFile, config, true);
    std::fprintf(options.reportOnStderr ? stderr : stdout, "%screated %s (TPM %s, %s) in %s\n",
                 options.reportOnStderr ? "vtpmctl: " : "", options.name.c_str(),
                 config.tpm.c_str(), config.device.c_str(), paths.stateDir.c_str());
}

} // namespace vtpm::tools

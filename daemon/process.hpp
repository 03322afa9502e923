#pragma once

#include "daemon/options.hpp"

#include <filesystem>
#include <optional>
#include <string>

// Process-level chores of a daemon started by libvirt or an operator: the pid file, detaching
// with exact readiness, and dropping root.
namespace vtpm::daemon
{

// Writes the pid to --pid file=|fd= and removes the file again on destruction.
class PidFile
{
public:
    explicit PidFile(const std::optional<PidOptions>& options);
    ~PidFile();
    PidFile(const PidFile&) = delete;
    PidFile& operator=(const PidFile&) = delete;

private:
    std::filesystem::path path_;
};

// --daemon: forks at once; the parent stays until the child reports ready (exit 0) or failed
// (prints the child's error, exit 1), so "vtpmd --daemon" returning 0 means it serves.
class Detacher
{
public:
    Detacher();
    ~Detacher();
    Detacher(const Detacher&) = delete;
    Detacher& operator=(const Detacher&) = delete;

    void ready();
    void failed(const std::string& message);

private:
    int fd_ = -1; // write end of the readiness pipe, child side
};

// --runas USER: switch uid, gid and supplementary groups; throws if any step fails.
void dropPrivileges(const std::string& user, const std::filesystem::path& stateDir);

} // namespace vtpm::daemon

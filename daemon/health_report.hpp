#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>

// A snapshot of one instance's health, served on the --status socket and read by vtpmctl.
// Built from counters the daemon keeps anyway; producing it never touches the TPM.
namespace vtpm::daemon
{

struct HealthReport
{
    std::string tpmVersion;
    bool tpmRunning = false;
    bool controlConnected = false;
    bool dataConnected = false; // a VM (or another data client) is attached
    std::filesystem::path stateDir;
    bool stateLocked = false;
    std::chrono::system_clock::time_point startedAt;
    std::uint64_t commandsServed = 0;
    std::uint64_t controlCommands = 0;
    std::uint32_t lastCommandCode = 0;
    std::string lastCommandName;
    std::chrono::system_clock::time_point lastCommandTime; // epoch if none yet
    std::uint64_t badFrames = 0;
    std::uint64_t storageErrors = 0;
    std::uint32_t bufferSize = 0;
    unsigned locality = 0;
};

// One line of JSON, newline-terminated.
std::string toJson(const HealthReport& report);

} // namespace vtpm::daemon

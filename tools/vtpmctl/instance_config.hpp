#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

// An instance's instance.json (doc/instance-layout.md): what vtpmd is started with. Written
// once by `vtpmctl create`, read by every other command and by `vtpmctl exec` under systemd.
namespace vtpm::tools
{

struct InstanceConfig
{
    std::string name;
    std::string tpm = "2.0";                             // "2.0" | "1.2"
    std::string device = "tis";                          // "tis" | "crb": the QEMU frontend
    std::optional<std::filesystem::path> keyFile;        // 64 hex digits, AES-256 state key
    std::optional<std::filesystem::path> passphraseFile; // key derived by vtpmd (pbkdf2)
    std::string socketMode = "0600";                     // octal mode of ctrl.sock
    std::int64_t created = 0;                            // unix time

    [[nodiscard]] bool tpm2() const noexcept { return tpm == "2.0"; }
};

// Throws CommandError(Failed) naming the file on unreadable or malformed JSON.
InstanceConfig loadConfig(const std::filesystem::path& file);

// Writes atomically (temporary file, fsync, rename) with mode 0600. With `exclusive` the file
// must not exist yet (link instead of rename), so two concurrent creates cannot both succeed.
void saveConfig(const std::filesystem::path& file, const InstanceConfig& config, bool exclusive);

// Empty if `mode` is an octal socket mode vtpmctl accepts (0NNN, owner read+write), else why not.
std::string socketModeProblem(const std::string& mode);

} // namespace vtpm::tools

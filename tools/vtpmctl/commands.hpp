#pragma once

#include <filesystem>
#include <optional>
#include <string>

// The vtpmctl subcommands. Each returns normally on success and throws CommandError (carrying
// the documented exit code) otherwise; cli.cpp maps the command line onto these.
namespace vtpm::tools
{

struct GlobalOptions
{
    std::optional<std::filesystem::path> root;  // --root DIR (else $VTPM_ROOT, system, XDG)
    std::optional<std::filesystem::path> vtpmd; // --vtpmd PATH (else $VTPMD, installed)
};

struct CreateOptions
{
    std::string name;
    std::string tpm = "2.0";
    std::optional<std::filesystem::path> keyFile;
    std::optional<std::filesystem::path> passphraseFile;
    std::string device = "tis";
    std::string socketMode = "0600";
    bool reportOnStderr = false; // `start --create`: stdout carries only the QEMU arguments
};

struct StartOptions
{
    std::string name;
    bool create = false;
    double timeoutSeconds = 10;
    bool noSystemd = false;
};

struct StopOptions
{
    std::string name;
    double timeoutSeconds = 10;
    bool force = false;
    bool noSystemd = false;
};

struct CtrlOptions
{
    std::string name;
    std::string operation; // init|stop|shutdown|caps|info|save|load
    std::string blobType;  // permanent|volatile|savestate (save, load)
    std::filesystem::path file;
    double timeoutSeconds = 5;
};

void createInstance(const GlobalOptions& global, const CreateOptions& options);
void startInstance(const GlobalOptions& global, const StartOptions& options);
void stopInstance(const GlobalOptions& global, const StopOptions& options);
void destroyInstance(const GlobalOptions& global, const StopOptions& options);
[[noreturn]] void execInstance(const GlobalOptions& global, const std::string& name);
void listInstances(const GlobalOptions& global, bool json);
void showStatus(const GlobalOptions& global, const std::string& name, bool json);
void printQemuArgs(const GlobalOptions& global, const std::string& name);
void runCtrl(const GlobalOptions& global, const CtrlOptions& options);

} // namespace vtpm::tools

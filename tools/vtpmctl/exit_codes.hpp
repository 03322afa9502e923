#pragma once

#include <stdexcept>
#include <string>

// vtpmctl's documented exit codes (doc/vtpmctl.md) and the error that carries one to main().
// Every command either returns normally (exit 0) or throws CommandError; the message is
// printed as is, so it must say what went wrong and what the operator can do next.
namespace vtpm::tools
{

enum class ExitCode : int
{
    Ok = 0,
    Failed = 1,     // the operation was tried and failed
    Usage = 2,      // bad arguments or instance name
    NotFound = 3,   // no such instance
    Busy = 4,       // already running, being started, or the control channel is held
    VmAttached = 5, // a VM is attached and --force was not given
    NotRunning = 6, // the operation needs a running vtpmd
};

class CommandError : public std::runtime_error
{
public:
    CommandError(ExitCode code, const std::string& message) :
        std::runtime_error(message), code_(code)
    {
    }

    [[nodiscard]] ExitCode code() const noexcept { return code_; }

private:
    ExitCode code_;
};

} // namespace vtpm::tools

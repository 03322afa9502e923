#pragma once

#include "state/unique_fd.hpp"

#include <string>

#include <sys/types.h>

// The receiving end of the sd_notify protocol: an abstract-namespace datagram socket (nothing
// on disk to clean up) whose name goes into the child's $NOTIFY_SOCKET. SO_PASSCRED makes the
// kernel attach the sender's pid, so messages from other processes are ignored.
namespace vtpm::tools
{

class NotifySocket
{
public:
    NotifySocket(); // throws std::system_error

    [[nodiscard]] int fd() const noexcept { return fd_.get(); }
    // The value for $NOTIFY_SOCKET ("@vtpmctl/...").
    [[nodiscard]] const std::string& address() const noexcept { return address_; }

    // Reads every queued datagram; true if one from `sender` carried READY=1.
    [[nodiscard]] bool receiveReady(pid_t sender);

private:
    state::UniqueFd fd_;
    std::string address_;
};

} // namespace vtpm::tools

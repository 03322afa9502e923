#pragma once

#include "protocol/byte_io.hpp"
#include "state/unique_fd.hpp"

#include <cstddef>
#include <cstdint>
#include <span>

// Single non-blocking system calls on a connection's descriptor. Sessions wait for readiness
// with Asio (async_wait) and then make exactly one of these calls, so a command costs one
// epoll_wait, one read and one write: no speculative read that fails with EAGAIN first.
namespace vtpm::daemon
{

enum class IoStatus
{
    Done,       // `bytes` were transferred (> 0)
    WouldBlock, // nothing now; wait for readiness
    Eof,        // the peer closed its end
    Error,      // `error` holds errno
};

struct IoResult
{
    IoStatus status = IoStatus::Error;
    std::size_t bytes = 0;
    int error = 0;
};

IoResult readSome(int fd, std::span<std::uint8_t> buffer) noexcept;
IoResult writeSome(int fd, protocol::ByteView data) noexcept;
// Like readSome, but also collects a descriptor passed with SCM_RIGHTS (CMD_SET_DATAFD). Any
// further descriptors in the same message are closed.
IoResult receiveWithFd(int fd, std::span<std::uint8_t> buffer, state::UniqueFd& passed) noexcept;

} // namespace vtpm::daemon

#pragma once

#include "protocol/byte_io.hpp"

#include <chrono>
#include <cstddef>
#include <string>

// Blocking-with-a-deadline helpers over raw descriptors. vtpmctl talks to daemons that may be
// stopped, busy or gone, so every wait in the tool is bounded by one of these deadlines.
namespace vtpm::tools
{

using Clock = std::chrono::steady_clock;
using Deadline = Clock::time_point;

inline Deadline deadlineIn(std::chrono::milliseconds d)
{
    return Clock::now() + d;
}

// Milliseconds left until the deadline as a poll(2) timeout (0 once it has passed).
int pollTimeout(Deadline deadline) noexcept;

enum class IoResult
{
    Ok,
    Timeout,
    Closed, // the peer closed the connection (EOF) or refused it
    Error,
};

// Waits until fd is readable (or hung up); false on timeout or poll error.
bool waitReadable(int fd, Deadline deadline) noexcept;

// Writes all bytes to a non-blocking descriptor.
IoResult writeAll(int fd, protocol::ByteView bytes, Deadline deadline) noexcept;

// Reads exactly n bytes from a non-blocking descriptor, appending them to out.
IoResult readExact(int fd, std::size_t n, protocol::Bytes& out, Deadline deadline);

// Reads until EOF (at most `limit` bytes), appending to out.
IoResult readToEof(int fd, std::string& out, std::size_t limit, Deadline deadline);

// Sets O_NONBLOCK; false on failure.
bool setNonBlocking(int fd) noexcept;

} // namespace vtpm::tools

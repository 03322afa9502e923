#include "tools/vtpmctl/deadline_io.hpp"

#include <algorithm>
#include <cerrno>
#include <limits>

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

namespace vtpm::tools
{

int pollTimeout(Deadline deadline) noexcept
{
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
    return static_cast<int>(std::clamp<decltype(left)>(left, 0, std::numeric_limits<int>::max()));
}

namespace
{

// poll(2) on one descriptor, restarted on EINTR; false on timeout or error.
bool waitFor(int fd, short events, Deadline deadline) noexcept
{
    for (;;)
    {
        pollfd p{.fd = fd, .events = events, .revents = 0};
        const int n = ::poll(&p, 1, pollTimeout(deadline));
        if (n > 0)
        {
            return true;
        }
        if (n == 0 || errno != EINTR)
        {
            return false;
        }
    }
}

} // namespace

bool waitReadable(int fd, Deadline deadline) noexcept
{
    return waitFor(fd, POLLIN, deadline);
}

IoResult writeAll(int fd, protocol::ByteView bytes, Deadline deadline) noexcept
{
    while (!bytes.empty())
    {
        const ssize_t n = ::write(fd, bytes.data(), bytes.size());
        if (n > 0)
        {
            bytes = bytes.subspan(static_cast<std::size_t>(n));
            continue;
        }
        if (n < 0 && errno == EINTR)
        {
            continue;
        }
        if (n < 0 && errno == EAGAIN)
        {
            if (!waitFor(fd, POLLOUT, deadline))
            {
                return IoResult::Timeout;
            }
            continue;
        }
        return (n < 0 && (errno == EPIPE || errno == ECONNRESET)) ? IoResult::Closed
                                                                  : IoResult::Error;
    }
    return IoResult::Ok;
}

IoResult readExact(int fd, std::size_t n, protocol::Bytes& out, Deadline deadline)
{
    const std::size_t start = out.size();
    out.resize(start + n);
    std::size_t have = 0;
    while (have < n)
    {
        const ssize_t got = ::read(fd, out.data() + start + have, n - have);
        if (got > 0)
        {
            have += static_cast<std::size_t>(got);
            continue;
        }
        if (got == 0 || (got < 0 && errno == ECONNRESET))
        {
            out.resize(start + have);
            return IoResult::Closed;
        }
        if (errno == EINTR)
        {
            continue;
        }
        const IoResult failure = errno != EAGAIN               ? IoResult::Error
                                 : !waitReadable(fd, deadline) ? IoResult::Timeout
                                                               : IoResult::Ok;
        if (failure != IoResult::Ok)
        {
            out.resize(start + have);
            return failure;
        }
    }
    return IoResult::Ok;
}

IoResult readToEof(int fd, std::string& out, std::size_t limit, Deadline deadline)
{
    char buffer[4096];
    while (out.size() < limit)
    {
        const ssize_t got = ::read(fd, buffer, sizeof(buffer));
        if (got > 0)
        {
            out.append(buffer, std::min(static_cast<std::size_t>(got), limit - out.size()));
            continue;
        }
        if (got == 0)
        {
            return IoResult::Ok;
        }
        if (errno == EINTR)
        {
            continue;
        }
        if (errno != EAGAIN)
        {
            return IoResult::Error;
        }
        if (!waitReadable(fd, deadline))
        {
            return IoResult::Timeout;
        }
    }
    return IoResult::Ok;
}

bool setNonBlocking(int fd) noexcept
{
    const int flags = ::fcntl(fd, F_GETFL);
    return flags >= 0 && ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0;
}

} // namespace vtpm::tools

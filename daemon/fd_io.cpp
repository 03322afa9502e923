#include "daemon/fd_io.hpp"

#include <array>
#include <cerrno>
#include <cstring>

#include <sys/socket.h>
#include <unistd.h>

namespace vtpm::daemon
{

namespace
{

IoResult classify(ssize_t n) noexcept
{
    if (n > 0)
    {
        return {.status = IoStatus::Done, .bytes = static_cast<std::size_t>(n)};
    }
    if (n == 0)
    {
        return {.status = IoStatus::Eof};
    }
    if (errno == EAGAIN || errno == EINTR) // EWOULDBLOCK == EAGAIN on Linux
    {
        return {.status = IoStatus::WouldBlock};
    }
    return {.status = IoStatus::Error, .error = errno};
}

} // namespace

IoResult readSome(int fd, std::span<std::uint8_t> buffer) noexcept
{
    return classify(::read(fd, buffer.data(), buffer.size()));
}

IoResult writeSome(int fd, protocol::ByteView data) noexcept
{
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n == 0 && !data.empty())
    {
        return {.status = IoStatus::WouldBlock};
    }
    return classify(n);
}

IoResult receiveWithFd(int fd, std::span<std::uint8_t> buffer, state::UniqueFd& passed) noexcept
{
    constexpr std::size_t kMaxFds = 4; // room to notice (and close) surplus descriptors
    alignas(cmsghdr) std::array<char, CMSG_SPACE(sizeof(int) * kMaxFds)> control{};
    iovec iov{.iov_base = buffer.data(), .iov_len = buffer.size()};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.data();
    msg.msg_controllen = control.size();
    const ssize_t n = ::recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
    if (n >= 0)
    {
        for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c))
        {
            if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            {
                continue;
            }
            const std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (std::size_t i = 0; i < count; ++i)
            {
                int received = -1;
                std::memcpy(&received, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
                if (!passed.valid())
                {
                    passed.reset(received);
                }
                else
                {
                    ::close(received);
                }
            }
        }
    }
    return classify(n);
}

} // namespace vtpm::daemon

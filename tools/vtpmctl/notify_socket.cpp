#include "tools/vtpmctl/notify_socket.hpp"

#include <array>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <optional>
#include <string_view>
#include <system_error>

#include <sys/random.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

namespace vtpm::tools
{

namespace
{

[[noreturn]] void throwErrno(const char* what)
{
    throw std::system_error(errno, std::generic_category(), what);
}

std::string randomHex()
{
    std::array<unsigned char, 8> bytes{};
    if (::getrandom(bytes.data(), bytes.size(), 0) != static_cast<ssize_t>(bytes.size()))
    {
        throwErrno("getrandom");
    }
    static constexpr char kDigits[] = "0123456789abcdef";
    std::string hex;
    for (const unsigned char b : bytes)
    {
        hex += kDigits[b >> 4U];
        hex += kDigits[b & 0xfU];
    }
    return hex;
}

bool hasReadyLine(std::string_view message)
{
    while (!message.empty())
    {
        const std::size_t end = message.find('\n');
        if (message.substr(0, end) == "READY=1")
        {
            return true;
        }
        message.remove_prefix(end == std::string_view::npos ? message.size() : end + 1);
    }
    return false;
}

} // namespace

NotifySocket::NotifySocket() :
    fd_(::socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)),
    address_("@vtpmctl/" + std::to_string(::getpid()) + "/" + randomHex())
{
    if (!fd_)
    {
        throwErrno("notify socket");
    }
    const int on = 1;
    if (::setsockopt(fd_.get(), SOL_SOCKET, SO_PASSCRED, &on, sizeof(on)) != 0)
    {
        throwErrno("SO_PASSCRED");
    }
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    // Abstract namespace: sun_path starts with NUL, the name is not NUL-terminated.
    std::memcpy(addr.sun_path + 1, address_.data() + 1, address_.size() - 1);
    const auto length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + address_.size());
    // NOLINTNEXTLINE(cppcoreguidelines-pro-type-reinterpret-cast): the sockets API
    if (::bind(fd_.get(), reinterpret_cast<const sockaddr*>(&addr), length) != 0)
    {
        throwErrno("bind notify socket");
    }
}

bool NotifySocket::receiveReady(pid_t sender)
{
    bool ready = false;
    for (;;)
    {
        std::array<char, 4096> buffer{};
        alignas(cmsghdr) std::array<char, CMSG_SPACE(sizeof(ucred))> control{};
        iovec iov{.iov_base = buffer.data(), .iov_len = buffer.size()};
        msghdr msg{};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.data();
        msg.msg_controllen = control.size();
        const ssize_t n = ::recvmsg(fd_.get(), &msg, MSG_CMSG_CLOEXEC);
        if (n < 0)
        {
            if (errno == EINTR)
            {
                continue;
            }
            return ready; // EAGAIN: queue drained
        }
        std::optional<pid_t> from;
        for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c))
        {
            if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS &&
                c->cmsg_len == CMSG_LEN(sizeof(ucred)))
            {
                ucred cred{};
                std::memcpy(&cred, CMSG_DATA(c), sizeof(cred));
                from = cred.pid;
            }
        }
        if (from == sender &&
            hasReadyLine(std::string_view(buffer.data(), static_cast<std::size_t>(n))))
        {
            ready = true;
        }
    }
}

} // namespace vtpm::tools

#include "daemon/service_notify.hpp"

#include <cstddef>
#include <cstdlib>
#include <cstring>

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

namespace vtpm::daemon
{

bool notifyService(std::string_view state) noexcept
{
    const char* path = std::getenv("NOTIFY_SOCKET"); // NOLINT(concurrency-mt-unsafe): one thread
    if (path == nullptr || path[0] == '\0')
    {
        return true;
    }
    const std::size_t length = std::strlen(path);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    if ((path[0] != '/' && path[0] != '@') || length >= sizeof(address.sun_path))
    {
        return false;
    }
    std::memcpy(address.sun_path, path, length);
    if (path[0] == '@')
    {
        address.sun_path[0] = '\0'; // abstract namespace
    }
    const int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
    {
        return false;
    }
    const auto addressLength =
        static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + length);
    const ssize_t sent =
        ::sendto(fd, state.data(), state.size(), MSG_NOSIGNAL,
                 reinterpret_cast<const sockaddr*>(&address), addressLength); // NOLINT
    ::close(fd);
    return sent == static_cast<ssize_t>(state.size());
}

} // namespace vtpm::daemon

#include "tools/vtpmctl/unix_connect.hpp"

#include <cerrno>
#include <cstring>

#include <sys/socket.h>
#include <sys/un.h>

namespace vtpm::tools
{

ConnectResult connectUnix(const fs::path& path, state::UniqueFd& out)
{
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.native().size() >= sizeof(addr.sun_path))
    {
        return ConnectResult::Error;
    }
    std::memcpy(addr.sun_path, path.c_str(), path.native().size());
    state::UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd)
    {
        return ConnectResult::Error;
    }
    // NOLINTNEXTLINE(cppcoreguidelines-pro-type-reinterpret-cast): the sockets API
    if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0)
    {
        switch (errno)
        {
        case ENOENT:
        case ECONNREFUSED:
            return ConnectResult::Refused;
        case EAGAIN:
            return ConnectResult::Busy;
        default:
            return ConnectResult::Error;
        }
    }
    out = std::move(fd);
    return ConnectResult::Connected;
}

} // namespace vtpm::tools

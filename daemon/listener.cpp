#include "daemon/listener.hpp"

#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstring>
#include <system_error>

#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

namespace vtpm::daemon
{

namespace
{

[[noreturn]] void throwErrno(const std::string& what)
{
    throw std::system_error(errno, std::generic_category(), what);
}

constexpr int kBacklog = 1;

} // namespace

state::UniqueFd listenUnix(const std::filesystem::path& path, mode_t mode,
                           std::optional<uid_t> uid, std::optional<gid_t> gid)
{
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    const std::string& p = path.native();
    if (p.size() >= sizeof(addr.sun_path))
    {
        throw std::runtime_error("UNIX socket path too long: " + p);
    }
    std::memcpy(addr.sun_path, p.c_str(), p.size() + 1);

    // Only a stale socket may be replaced; refusing anything else keeps a typo in the path from
    // deleting a user's file.
    struct stat st{};
    if (::lstat(p.c_str(), &st) == 0)
    {
        if (!S_ISSOCK(st.st_mode))
        {
            throw std::runtime_error(p + " exists and is not a socket");
        }
        if (::unlink(p.c_str()) != 0)
        {
            throwErrno("cannot remove stale socket " + p);
        }
    }
    state::UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd.valid())
    {
        throwErrno("socket(AF_UNIX)");
    }
    // Bind under a tight umask so the socket is never reachable with wider permissions than
    // asked for, even for the moment before chmod.
    const mode_t oldMask = ::umask(0177);
    const int bound = ::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), // NOLINT
                             sizeof(addr));
    const int bindErrno = errno;
    ::umask(oldMask);
    if (bound != 0)
    {
        errno = bindErrno;
        throwErrno("cannot bind UNIX socket " + p);
    }
    if (::chmod(p.c_str(), mode) != 0)
    {
        throwErrno("cannot chmod " + p);
    }
    if ((uid || gid) && ::chown(p.c_str(), uid.value_or(static_cast<uid_t>(-1)),
                                gid.value_or(static_cast<gid_t>(-1))) != 0)
    {
        throwErrno("cannot chown " + p);
    }
    return fd;
}

state::UniqueFd listenTcp(const std::string& address, std::uint16_t port,
                          const std::string& ifname)
{
    const bool v6 = address.find(':') != std::string::npos;
    sockaddr_storage storage{};
    socklen_t length = 0;
    if (v6)
    {
        sockaddr_in6 a{};
        a.sin6_family = AF_INET6;
        a.sin6_port = htons(port);
        if (::inet_pton(AF_INET6, address.c_str(), &a.sin6_addr) != 1)
        {
            throw std::runtime_error("invalid IPv6 address: " + address);
        }
        if (!ifname.empty())
        {
            a.sin6_scope_id = ::if_nametoindex(ifname.c_str());
            if (a.sin6_scope_id == 0)
            {
                throwErrno("unknown interface " + ifname);
            }
        }
        else if (IN6_IS_ADDR_LINKLOCAL(&a.sin6_addr))
        {
            throw std::runtime_error("link-local address " + address + " needs ifname=");
        }
        std::memcpy(&storage, &a, sizeof(a));
        length = sizeof(a);
    }
    else
    {
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_port = htons(port);
        if (::inet_pton(AF_INET, address.c_str(), &a.sin_addr) != 1)
        {
            throw std::runtime_error("invalid IPv4 address: " + address);
        }
        std::memcpy(&storage, &a, sizeof(a));
        length = sizeof(a);
    }
    state::UniqueFd fd(
        ::socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd.valid())
    {
        throwErrno("socket(AF_INET)");
    }
    const int one = 1;
    if (::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0)
    {
        throwErrno("setsockopt(SO_REUSEADDR)");
    }
    const std::string where = address + " port " + std::to_string(port);
    if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&storage), length) != 0) // NOLINT
    {
        throwErrno("cannot bind TCP " + where);
    }
    return fd;
}

void checkSocketFd(int fd, bool mustListen, const char* what)
{
    int type = 0;
    socklen_t len = sizeof(type);
    if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0)
    {
        throw std::system_error(errno, std::generic_category(),
                                fmt::format("{} fd {} is not a socket", what, fd));
    }
    if (type != SOCK_STREAM)
    {
        throw std::runtime_error(fmt::format("{} fd {} is not a stream socket", what, fd));
    }
    int listening = 0;
    len = sizeof(listening);
    if (::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) == 0 &&
        (listening != 0) != mustListen)
    {
        throw std::runtime_error(fmt::format("{} fd {} must be a {} socket", what, fd,
                                             mustListen ? "listening" : "connected"));
    }
}

Listener::Listener(boost::asio::io_context& io, state::UniqueFd fd, std::string name,
                   std::filesystem::path unlinkPath, OnClient onClient) :
    stream_(io),
    name_(std::move(name)),
    unlinkPath_(std::move(unlinkPath)),
    onClient_(std::move(onClient))
{
    stream_.assign(fd.release());
    boost::system::error_code ec;
    stream_.non_blocking(true, ec);
}

Listener::~Listener()
{
    close();
}

void Listener::listen()
{
    int listening = 0;
    socklen_t len = sizeof(listening);
    if (::getsockopt(stream_.native_handle(), SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) == 0 &&
        listening != 0)
    {
        return;
    }
    if (::listen(stream_.native_handle(), kBacklog) != 0)
    {
        throwErrno(name_ + ": cannot listen");
    }
}

void Listener::arm()
{
    if (armed_ || !stream_.is_open())
    {
        return;
    }
    armed_ = true;
    // The listener outlives io.run() (the daemon owns it), so a bare `this` is safe here.
    stream_.async_wait(boost::asio::posix::stream_descriptor::wait_read,
                       [this](const boost::system::error_code& ec) { onReadable(ec); });
}

void Listener::onReadable(const boost::system::error_code& ec)
{
    armed_ = false;
    if (ec)
    {
        return;
    }
    state::UniqueFd client(::accept4(stream_.native_handle(), nullptr, nullptr,
                                     SOCK_CLOEXEC | SOCK_NONBLOCK));
    if (!client.valid())
    {
        if (errno != EAGAIN && errno != ECONNABORTED && errno != EINTR)
        {
            spdlog::error("{}: accept failed: {}", name_, std::strerror(errno));
        }
        arm();
        return;
    }
    spdlog::debug("{}: client connected", name_);
    onClient_(std::move(client));
}

void Listener::close()
{
    if (!stream_.is_open())
    {
        return;
    }
    boost::system::error_code ignored;
    stream_.close(ignored);
    if (!unlinkPath_.empty())
    {
        std::error_code ec;
        std::filesystem::remove(unlinkPath_, ec);
    }
}

} // namespace vtpm::daemon

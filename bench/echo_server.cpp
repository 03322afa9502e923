#include "bench/echo_server.hpp"

#include <fmt/format.h>

#include <array>
#include <cerrno>
#include <cstring>

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

namespace vtpm::bench
{

EchoServer::EchoServer(Transport transport) : transport_(transport)
{
    UniqueFd& listener = listener_;
    UniqueFd connected;
    if (transport == Transport::DataFd)
    {
        int pair[2] = {-1, -1};
        if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0)
        {
            throw BenchError(fmt::format("socketpair: {}", std::strerror(errno)));
        }
        clientEnd_.reset(pair[0]);
        connected.reset(pair[1]);
    }
    else if (transport == Transport::Unix)
    {
        listener.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        const std::string path = (dir_.path() / "echo.sock").string();
        std::memcpy(addr.sun_path, path.c_str(), std::min(path.size() + 1, sizeof(addr.sun_path)));
        if (!listener ||
            ::bind(listener.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0 ||
            ::listen(listener.get(), 1) != 0)
        {
            throw BenchError(fmt::format("echo server: {}", std::strerror(errno)));
        }
    }
    else
    {
        listener.reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof(addr);
        if (!listener ||
            ::bind(listener.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0 ||
            ::listen(listener.get(), 1) != 0 ||
            ::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&addr), &len) != 0)
        {
            throw BenchError(fmt::format("echo server: {}", std::strerror(errno)));
        }
        port_ = ntohs(addr.sin_port);
    }
    thread_ = std::jthread(&EchoServer::serve, this, std::move(connected));
}

EchoServer::~EchoServer()
{
    clientEnd_.reset();
    if (listener_)
    {
        ::shutdown(listener_.get(), SHUT_RDWR); // wakes an accept() that never got a client
    }
    if (thread_.joinable())
    {
        thread_.join(); // ends at EOF from the client, which the caller closed first
    }
}

UniqueFd EchoServer::connect()
{
    switch (transport_)
    {
    case Transport::DataFd:
        return std::move(clientEnd_);
    case Transport::Unix:
        return connectUnixRetry((dir_.path() / "echo.sock").string(), 5.0);
    case Transport::Tcp:
        return connectTcp(port_, 5.0);
    }
    return UniqueFd{};
}

void EchoServer::serve(UniqueFd connected)
{
    if (listener_)
    {
        connected.reset(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
        if (!connected)
        {
            return;
        }
    }
    std::array<std::uint8_t, kResponseBufferSize> buffer{};
    for (;;)
    {
        const ssize_t n = ::read(connected.get(), buffer.data(), buffer.size());
        if (n < 0 && errno == EINTR)
        {
            continue;
        }
        if (n <= 0)
        {
            return;
        }
        try
        {
            writeAll(connected.get(), ByteView(buffer.data(), static_cast<std::size_t>(n)));
        }
        catch (const BenchError&)
        {
            return;
        }
    }
}

} // namespace vtpm::bench

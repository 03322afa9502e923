#include "bench/channel.hpp"

#include "protocol/tpm_frame.hpp"

#include <fmt/format.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

namespace vtpm::bench
{

using protocol::CtrlCode;

namespace
{

std::string errnoText(int err)
{
    return std::strerror(err);
}

sockaddr_un unixAddress(const std::string& path)
{
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.size() >= sizeof(addr.sun_path))
    {
        throw BenchError(fmt::format("UNIX socket path too long: {}", path));
    }
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    return addr;
}

} // namespace

void writeAll(int fd, ByteView bytes)
{
    while (!bytes.empty())
    {
        const ssize_t n = ::write(fd, bytes.data(), bytes.size());
        if (n < 0 && errno == EINTR)
        {
            continue;
        }
        if (n <= 0)
        {
            throw BenchError(fmt::format("write: {}", n < 0 ? errnoText(errno) : "no progress"));
        }
        bytes = bytes.subspan(static_cast<std::size_t>(n));
    }
}

void readExact(int fd, std::span<std::uint8_t> out)
{
    std::size_t have = 0;
    while (have < out.size())
    {
        const ssize_t n = ::read(fd, out.data() + have, out.size() - have);
        if (n < 0 && errno == EINTR)
        {
            continue;
        }
        if (n <= 0)
        {
            throw BenchError(fmt::format("read: {}", n < 0 ? errnoText(errno) : "peer closed"));
        }
        have += static_cast<std::size_t>(n);
    }
}

ByteView SocketChannel::transact(ByteView command)
{
    writeAll(fd_.get(), command);
    std::size_t have = 0;
    std::size_t needed = protocol::kTpmHeaderSize;
    while (have < needed)
    {
        const ssize_t n = ::read(fd_.get(), buffer_.data() + have, buffer_.size() - have);
        if (n < 0 && errno == EINTR)
        {
            continue;
        }
        if (n <= 0)
        {
            throw BenchError(
                fmt::format("data channel read: {}",
                            n < 0 ? errnoText(errno) : "daemon closed the connection"));
        }
        have += static_cast<std::size_t>(n);
        if (have >= protocol::kTpmHeaderSize)
        {
            const auto header = protocol::parseTpmHeader(ByteView(buffer_.data(), have));
            needed = header ? header->size : 0;
            if (needed < protocol::kTpmHeaderSize || needed > buffer_.size())
            {
                throw BenchError(fmt::format("response size field {} is impossible", needed));
            }
        }
    }
    if (have != needed)
    {
        throw BenchError(
            fmt::format("{} surplus bytes after a {}-byte response", have - needed, needed));
    }
    return {buffer_.data(), have};
}

void CtrlClient::sendAll(ByteView bytes)
{
    writeAll(fd_.get(), bytes);
}

std::uint32_t CtrlClient::readReply(std::span<std::uint8_t> reply, const char* what)
{
    readExact(fd_.get(), reply.first(protocol::kResultSize));
    const auto result = protocol::parseResult(reply.first(protocol::kResultSize));
    if (!result)
    {
        throw BenchError(fmt::format("{}: short reply", what));
    }
    if (*result != protocol::rc::kSuccess)
    {
        throw BenchError(fmt::format("{}: result {}", what, hex(*result)));
    }
    readExact(fd_.get(), reply.subspan(protocol::kResultSize));
    return *result;
}

std::uint32_t CtrlClient::getCapability()
{
    sendAll(protocol::encodeRequest(CtrlCode::GetCapability));
    std::array<std::uint8_t, protocol::kCapabilityReplySize> reply{};
    readReply(reply, "CMD_GET_CAPABILITY");
    const auto parsed = protocol::parseCapabilityReply(reply);
    if (!parsed)
    {
        throw BenchError("CMD_GET_CAPABILITY: malformed reply");
    }
    return parsed->caps;
}

void CtrlClient::init(std::uint32_t flags)
{
    sendAll(protocol::encodeRequest(protocol::InitRequest{.flags = flags}));
    std::array<std::uint8_t, protocol::kResultSize> reply{};
    readReply(reply, "CMD_INIT");
}

UniqueFd CtrlClient::setDataFd()
{
    int pair[2] = {-1, -1};
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0)
    {
        throw BenchError(fmt::format("socketpair: {}", errnoText(errno)));
    }
    UniqueFd mine(pair[0]);
    UniqueFd theirs(pair[1]);
    const Bytes request = protocol::encodeRequest(CtrlCode::SetDataFd);
    iovec iov{.iov_base = const_cast<std::uint8_t*>(request.data()), .iov_len = request.size()};
    alignas(cmsghdr) std::array<char, CMSG_SPACE(sizeof(int))> control{};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.data();
    msg.msg_controllen = control.size();
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    const int passed = theirs.get();
    std::memcpy(CMSG_DATA(c), &passed, sizeof(int));
    ssize_t n = 0;
    do
    {
        n = ::sendmsg(fd_.get(), &msg, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    if (n != static_cast<ssize_t>(request.size()))
    {
        throw BenchError(fmt::format("CMD_SET_DATAFD: sendmsg: {}", errnoText(errno)));
    }
    std::array<std::uint8_t, protocol::kResultSize> reply{};
    readReply(reply, "CMD_SET_DATAFD");
    return mine; // `theirs` is closed here: the daemon holds its own copy now
}

void CtrlClient::shutdown()
{
    sendAll(protocol::encodeRequest(CtrlCode::Shutdown));
    std::array<std::uint8_t, protocol::kResultSize> reply{};
    readReply(reply, "CMD_SHUTDOWN");
}

UniqueFd connectUnix(const std::string& path)
{
    const sockaddr_un addr = unixAddress(path);
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd)
    {
        throw BenchError(fmt::format("socket: {}", errnoText(errno)));
    }
    if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0)
    {
        return UniqueFd{};
    }
    return fd;
}

UniqueFd connectUnixRetry(const std::string& path, double timeoutSeconds)
{
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::duration<double>(timeoutSeconds);
    while (std::chrono::steady_clock::now() < deadline)
    {
        if (UniqueFd fd = connectUnix(path))
        {
            return fd;
        }
        std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
    return UniqueFd{};
}

UniqueFd connectTcp(std::uint16_t port, double timeoutSeconds)
{
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::duration<double>(timeoutSeconds);
    while (std::chrono::steady_clock::now() < deadline)
    {
        UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        if (!fd)
        {
            throw BenchError(fmt::format("socket: {}", errnoText(errno)));
        }
        if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0)
        {
            const int one = 1;
            (void)::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
            return fd;
        }
        std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    return UniqueFd{};
}

std::uint16_t freeTcpPort()
{
    UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    if (!fd || ::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0 ||
        ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&addr), &len) != 0)
    {
        throw BenchError(fmt::format("cannot find a free TCP port: {}", errnoText(errno)));
    }
    return ntohs(addr.sin_port);
}

} // namespace vtpm::bench

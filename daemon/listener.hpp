#pragma once

#include "state/unique_fd.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>

#include <filesystem>
#include <functional>
#include <optional>
#include <string>

#include <sys/types.h>

// Listening sockets for --ctrl and --server. A listener accepts one client and is re-armed by
// its owner only once that client is gone: swtpm serves one client per channel at a time.
namespace vtpm::daemon
{

// Creates a UNIX socket bound at `path` (an existing socket file there is replaced) and applies
// mode/owner. It listens only once Listener::listen() runs, so nobody can connect to a daemon
// that may still fail to start. Throws std::system_error naming the path.
state::UniqueFd listenUnix(const std::filesystem::path& path, mode_t mode,
                           std::optional<uid_t> uid, std::optional<gid_t> gid);
// Creates a bound TCP socket (listening starts with Listener::listen()); an address with ':' is
// IPv6 (`ifname` scopes link-local).
state::UniqueFd listenTcp(const std::string& address, std::uint16_t port,
                          const std::string& ifname);
// Checks that an inherited descriptor is an open stream socket (listening or not, as asked).
void checkSocketFd(int fd, bool mustListen, const char* what);

class Listener
{
public:
    using OnClient = std::function<void(state::UniqueFd)>;

    // `unlinkPath` is removed when the listener closes (a socket we created by path).
    Listener(boost::asio::io_context& io, state::UniqueFd fd, std::string name,
             std::filesystem::path unlinkPath, OnClient onClient);
    Listener(const Listener&) = delete;
    Listener& operator=(const Listener&) = delete;
    ~Listener();

    // Starts accepting connections (backlog 1); a no-op for inherited listening sockets.
    void listen();
    void arm();
    void close();

private:
    void onReadable(const boost::system::error_code& ec);

    boost::asio::posix::stream_descriptor stream_;
    std::string name_;
    std::filesystem::path unlinkPath_;
    OnClient onClient_;
    bool armed_ = false;
};

} // namespace vtpm::daemon

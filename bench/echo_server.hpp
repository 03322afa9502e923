#pragma once

#include "bench/daemon_process.hpp"

#include <thread>

// The transport half of "the limit": a trivial server thread that writes back every byte it
// reads (blocking read + write), reached over the same transport as a daemon. A command sent
// to it comes back as a frame of the same size, so SocketChannel can time the round trip.
namespace vtpm::bench
{

class EchoServer
{
public:
    explicit EchoServer(Transport transport);
    ~EchoServer();
    EchoServer(const EchoServer&) = delete;
    EchoServer& operator=(const EchoServer&) = delete;

    // The client end; call once. Closing it ends the server thread.
    UniqueFd connect();

private:
    void serve(UniqueFd connected);

    Transport transport_;
    TempDir dir_;
    std::uint16_t port_ = 0;
    UniqueFd listener_;  // UNIX/TCP listening socket
    UniqueFd clientEnd_; // socketpair end handed out by connect()
    std::jthread thread_;
};

} // namespace vtpm::bench

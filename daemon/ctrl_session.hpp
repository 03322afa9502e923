#pragma once

#include "daemon/control_handler.hpp"
#include "protocol/byte_io.hpp"
#include "state/unique_fd.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <functional>
#include <memory>

// One control-channel connection. Messages carry no length, so each one is what arrives in the
// first read, completed up to the size its command needs (protocol.md §2.4); the client waits
// for each reply before it sends the next request (lock-step), as QEMU and swtpm_ioctl do.
namespace vtpm::daemon
{

class CtrlSession : public std::enable_shared_from_this<CtrlSession>
{
public:
    // An incomplete message is dropped with the connection after this long without progress.
    static constexpr std::chrono::milliseconds kMessageTimeout{500};

    CtrlSession(boost::asio::io_context& io, state::UniqueFd fd, ControlHandler& handler,
                std::function<void()> onClosed, std::function<void()> onExitRequest);
    CtrlSession(const CtrlSession&) = delete;
    CtrlSession& operator=(const CtrlSession&) = delete;
    ~CtrlSession();

    void start();
    void close();

private:
    void waitReadable();
    void onReadable(const boost::system::error_code& ec);
    void readNow();
    void onMessage();
    bool send();
    void onWritable(const boost::system::error_code& ec);
    void afterReply();
    void armDeadline();
    void cancelDeadline();

    boost::asio::posix::stream_descriptor stream_;
    boost::asio::steady_timer deadline_;
    ControlHandler& handler_;
    std::function<void()> onClosed_;
    std::function<void()> onExitRequest_;

    protocol::Bytes in_;
    std::size_t have_ = 0;
    state::UniqueFd passedFd_;
    protocol::Bytes reply_;
    std::size_t replyWritten_ = 0;
    bool exitAfterReply_ = false;
    bool deadlineArmed_ = false;
    bool closed_ = false;
};

} // namespace vtpm::daemon

#pragma once

#include "daemon/data_handler.hpp"
#include "protocol/tpm_frame.hpp"
#include "state/unique_fd.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/generic/stream_protocol.hpp>
#include <boost/asio/steady_timer.hpp>

#include <array>
#include <chrono>
#include <functional>
#include <memory>

// One data-channel connection (a --server client, a --fd stream or a CMD_SET_DATAFD socket):
// splits the byte stream into TPM commands by their size fields, runs each to completion and
// writes its response. Lives as long as an I/O operation holds a shared_ptr to it.
namespace vtpm::daemon
{

class DataSession : public std::enable_shared_from_this<DataSession>
{
public:
    // A command that has started must be complete within this time; an idle peer is fine.
    static constexpr std::chrono::seconds kFrameTimeout{5};
    // An oversized frame up to this size is read and discarded so the stream stays in sync;
    // a larger one is answered and the connection closed.
    static constexpr std::size_t kMaxDiscard = 1024 * 1024;

    DataSession(boost::asio::io_context& io, state::UniqueFd fd, DataHandler& handler,
                protocol::TpmVersion version, bool disconnectAfterResponse,
                std::function<void()> onClosed);
    DataSession(const DataSession&) = delete;
    DataSession& operator=(const DataSession&) = delete;
    ~DataSession();

    void start();
    // Ends the connection; the owner's onClosed runs once.
    void close();

private:
    static constexpr std::size_t kCapacity =
        protocol::kMaxTpmBufferSize + protocol::kSendCommandPrefixSize;

    void waitReadable();
    void onRead(const boost::system::error_code& ec, std::size_t n);
    void drive();
    // True if the response went out at once; false if a wait for writability is pending.
    bool send(protocol::ByteView response);
    void onWritable(const boost::system::error_code& ec);
    void afterResponse();
    void consume(std::size_t n) noexcept;
    void armDeadline();
    void cancelDeadline();

    // A socket object (not a plain descriptor) because Asio 1.74 re-arms epoll for every
    // async_wait, while a socket read that drained the buffer waits for the next edge without
    // any extra system call: a command costs epoll_wait, read and write, as in swtpm.
    boost::asio::generic::stream_protocol::socket socket_;
    boost::asio::steady_timer deadline_;
    DataHandler& handler_;
    protocol::TpmVersion version_;
    bool disconnectAfterResponse_;
    std::function<void()> onClosed_;

    std::array<std::uint8_t, kCapacity> in_{};
    std::size_t have_ = 0;
    std::size_t discard_ = 0;  // bytes of an oversized frame still to be thrown away
    protocol::ByteView out_;   // the part of the response not yet written
    bool closeAfterWrite_ = false;
    bool deadlineArmed_ = false;
    bool closed_ = false;
};

} // namespace vtpm::daemon

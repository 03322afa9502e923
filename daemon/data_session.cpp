#include "daemon/data_session.hpp"

#include "daemon/fd_io.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>

#include <sys/socket.h>

namespace vtpm::daemon
{

namespace
{

int socketFamily(int fd) noexcept
{
    sockaddr_storage address{};
    socklen_t length = sizeof(address);
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) // NOLINT
    {
        return AF_UNIX;
    }
    return address.ss_family;
}

} // namespace

using protocol::ByteView;
using protocol::FrameStatus;

DataSession::DataSession(boost::asio::io_context& io, state::UniqueFd fd, DataHandler& handler,
                         protocol::TpmVersion version, bool disconnectAfterResponse,
                         std::function<void()> onClosed) :
    socket_(io),
    deadline_(io),
    handler_(handler),
    version_(version),
    disconnectAfterResponse_(disconnectAfterResponse),
    onClosed_(std::move(onClosed))
{
    boost::system::error_code ec;
    socket_.assign(boost::asio::generic::stream_protocol(socketFamily(fd.get()), SOCK_STREAM),
                   fd.get(), ec);
    if (ec)
    {
        spdlog::error("data: cannot use descriptor {}: {}", fd.get(), ec.message());
        closed_ = true;
        return; // fd closes with its UniqueFd; start() then does nothing
    }
    (void)fd.release();
    socket_.non_blocking(true, ec);
}

DataSession::~DataSession()
{
    onClosed_ = nullptr; // the owner may be going away too; it learns nothing from here
    close();
}

void DataSession::start()
{
    if (!closed_)
    {
        waitReadable();
    }
}

void DataSession::close()
{
    if (closed_)
    {
        return;
    }
    closed_ = true;
    boost::system::error_code ignored;
    deadline_.cancel();
    socket_.close(ignored);
    if (onClosed_)
    {
        auto onClosed = std::move(onClosed_);
        onClosed();
    }
}

void DataSession::waitReadable()
{
    socket_.async_read_some(boost::asio::buffer(in_.data() + have_, in_.size() - have_),
                            std::bind_front(&DataSession::onRead, shared_from_this()));
}

void DataSession::onRead(const boost::system::error_code& ec, std::size_t n)
{
    if (ec == boost::asio::error::eof)
    {
        spdlog::debug("data: peer closed the connection");
        close();
        return;
    }
    if (ec)
    {
        if (ec != boost::asio::error::operation_aborted)
        {
            spdlog::warn("data: read failed: {}", ec.message());
        }
        close();
        return;
    }
    have_ += n;
    drive();
}

void DataSession::drive()
{
    while (!closed_)
    {
        if (discard_ > 0)
        {
            const std::size_t n = std::min(discard_, have_);
            consume(n);
            discard_ -= n;
            if (discard_ > 0)
            {
                armDeadline();
                waitReadable();
                return;
            }
            cancelDeadline();
            if (!send(handler_.sizeError()))
            {
                return;
            }
            continue;
        }
        const auto probe = protocol::probeFrame(ByteView(in_.data(), have_), version_,
                                                protocol::kMaxTpmBufferSize);
        switch (probe.status)
        {
        case FrameStatus::NeedMore:
            if (have_ == 0)
            {
                cancelDeadline();
            }
            else
            {
                armDeadline();
            }
            waitReadable();
            return;
        case FrameStatus::Invalid:
            spdlog::warn("data: frame with an impossible size field; closing the connection");
            closeAfterWrite_ = true;
            have_ = 0;
            if (send(handler_.sizeError()))
            {
                close();
            }
            return;
        case FrameStatus::Oversized:
            spdlog::warn("data: {}-byte command exceeds the {}-byte buffer", probe.needed,
                         protocol::kMaxTpmBufferSize);
            if (probe.needed > kMaxDiscard)
            {
                closeAfterWrite_ = true;
                have_ = 0;
                if (send(handler_.sizeError()))
                {
                    close();
                }
                return;
            }
            discard_ = probe.needed;
            continue;
        case FrameStatus::Complete:
        {
            cancelDeadline();
            const ByteView response =
                handler_.execute(std::span(in_.data(), probe.needed), probe.prefixSize);
            consume(probe.needed);
            if (!send(response))
            {
                return;
            }
            if (disconnectAfterResponse_)
            {
                close();
                return;
            }
            continue;
        }
        }
    }
}

bool DataSession::send(ByteView response)
{
    out_ = response;
    while (!out_.empty())
    {
        const IoResult r = writeSome(socket_.native_handle(), out_);
        if (r.status == IoStatus::Done)
        {
            out_ = out_.subspan(r.bytes);
            continue;
        }
        if (r.status == IoStatus::WouldBlock)
        {
            socket_.async_wait(boost::asio::socket_base::wait_write,
                               std::bind_front(&DataSession::onWritable, shared_from_this()));
            return false;
        }
        spdlog::warn("data: write failed: {}", std::strerror(r.error));
        close();
        return false;
    }
    return true;
}

void DataSession::onWritable(const boost::system::error_code& ec)
{
    if (ec)
    {
        close();
        return;
    }
    if (send(out_))
    {
        afterResponse();
    }
}

void DataSession::afterResponse()
{
    if (closeAfterWrite_ || disconnectAfterResponse_)
    {
        close();
        return;
    }
    drive();
}

void DataSession::consume(std::size_t n) noexcept
{
    if (n >= have_)
    {
        have_ = 0;
        return;
    }
    std::memmove(in_.data(), in_.data() + n, have_ - n);
    have_ -= n;
}

void DataSession::armDeadline()
{
    if (deadlineArmed_)
    {
        return;
    }
    deadlineArmed_ = true;
    deadline_.expires_after(kFrameTimeout);
    deadline_.async_wait(
        [weak = weak_from_this()](const boost::system::error_code& ec)
        {
            auto self = weak.lock();
            if (!self || ec == boost::asio::error::operation_aborted || !self->deadlineArmed_)
            {
                return;
            }
            spdlog::warn("data: incomplete command not finished within {} s; closing",
                         kFrameTimeout.count());
            self->close();
        });
}

void DataSession::cancelDeadline()
{
    if (deadlineArmed_)
    {
        deadlineArmed_ = false;
        deadline_.cancel();
    }
}

} // namespace vtpm::daemon

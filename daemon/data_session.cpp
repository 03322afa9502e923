#include "daemon/data_session.hpp"

#include "daemon/fd_io.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>

namespace vtpm::daemon
{

using protocol::ByteView;
using protocol::FrameStatus;

DataSession::DataSession(boost::asio::io_context& io, state::UniqueFd fd, DataHandler& handler,
                         protocol::TpmVersion version, bool disconnectAfterResponse,
                         std::function<void()> onClosed) :
    stream_(io),
    deadline_(io),
    handler_(handler),
    version_(version),
    disconnectAfterResponse_(disconnectAfterResponse),
    onClosed_(std::move(onClosed))
{
    stream_.assign(fd.release());
    boost::system::error_code ec;
    stream_.non_blocking(true, ec);
}

DataSession::~DataSession()
{
    onClosed_ = nullptr; // the owner may be going away too; it learns nothing from here
    close();
}

void DataSession::start()
{
    waitReadable();
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
    stream_.close(ignored);
    if (onClosed_)
    {
        auto onClosed = std::move(onClosed_);
        onClosed();
    }
}

void DataSession::waitReadable()
{
    if (mayHaveMore_)
    {
        readNow(); // an edge-triggered reactor will not report bytes we left in the socket
        return;
    }
    stream_.async_wait(boost::asio::posix::stream_descriptor::wait_read,
                       std::bind_front(&DataSession::onReadable, shared_from_this()));
}

void DataSession::onReadable(const boost::system::error_code& ec)
{
    if (ec)
    {
        close();
        return;
    }
    readNow();
}

void DataSession::readNow()
{
    const std::span<std::uint8_t> space = std::span(in_).subspan(have_);
    const IoResult r = readSome(stream_.native_handle(), space);
    switch (r.status)
    {
    case IoStatus::Done:
        have_ += r.bytes;
        mayHaveMore_ = r.bytes == space.size();
        drive();
        return;
    case IoStatus::WouldBlock:
        mayHaveMore_ = false;
        waitReadable();
        return;
    case IoStatus::Eof:
        spdlog::debug("data: peer closed the connection");
        close();
        return;
    case IoStatus::Error:
        spdlog::warn("data: read failed: {}", std::strerror(r.error));
        close();
        return;
    }
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
        const IoResult r = writeSome(stream_.native_handle(), out_);
        if (r.status == IoStatus::Done)
        {
            out_ = out_.subspan(r.bytes);
            continue;
        }
        if (r.status == IoStatus::WouldBlock)
        {
            stream_.async_wait(boost::asio::posix::stream_descriptor::wait_write,
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
    // Readiness reported while we waited to write was not waited for, so look now.
    mayHaveMore_ = true;
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

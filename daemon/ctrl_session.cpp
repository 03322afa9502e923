#include "daemon/ctrl_session.hpp"

#include "daemon/fd_io.hpp"
#include "protocol/ctrl_messages.hpp"

#include <spdlog/spdlog.h>

#include <cstring>

namespace vtpm::daemon
{

using protocol::ByteView;
namespace rc = protocol::rc;

CtrlSession::CtrlSession(boost::asio::io_context& io, state::UniqueFd fd, ControlHandler& handler,
                         std::function<void()> onClosed, std::function<void()> onExitRequest) :
    stream_(io),
    deadline_(io),
    handler_(handler),
    onClosed_(std::move(onClosed)),
    onExitRequest_(std::move(onExitRequest)),
    in_(protocol::kMaxCtrlMessage)
{
    stream_.assign(fd.release());
    boost::system::error_code ec;
    stream_.non_blocking(true, ec);
}

CtrlSession::~CtrlSession()
{
    onClosed_ = nullptr;
    close();
}

void CtrlSession::start()
{
    waitReadable();
}

void CtrlSession::close()
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

void CtrlSession::waitReadable()
{
    stream_.async_wait(boost::asio::posix::stream_descriptor::wait_read,
                       std::bind_front(&CtrlSession::onReadable, shared_from_this()));
}

void CtrlSession::onReadable(const boost::system::error_code& ec)
{
    if (ec)
    {
        close();
        return;
    }
    readNow();
}

void CtrlSession::readNow()
{
    IoResult r;
    if (have_ == 0)
    {
        // The first read of a message takes whatever the client wrote at once (and the
        // descriptor of CMD_SET_DATAFD, which must arrive with it).
        in_.resize(protocol::kMaxCtrlMessage);
        r = receiveWithFd(stream_.native_handle(), in_, passedFd_);
    }
    else
    {
        // Continuations read no further than the message needs, so nothing of a following
        // request is swallowed.
        const std::size_t needed = protocol::ctrlMessageNeeded(ByteView(in_.data(), have_));
        r = readSome(stream_.native_handle(), std::span(in_).subspan(have_, needed - have_));
    }
    switch (r.status)
    {
    case IoStatus::Done:
        have_ += r.bytes;
        break;
    case IoStatus::WouldBlock:
        waitReadable();
        return;
    case IoStatus::Eof:
        if (have_ != 0)
        {
            spdlog::warn("control: client closed the connection mid-message");
        }
        close();
        return;
    case IoStatus::Error:
        spdlog::warn("control: receive failed: {}", std::strerror(r.error));
        close();
        return;
    }
    if (have_ < protocol::kCtrlCodeSize)
    {
        armDeadline();
        waitReadable();
        return;
    }
    const std::size_t needed = protocol::ctrlMessageNeeded(ByteView(in_.data(), have_));
    if (needed > protocol::kCtrlCodeSize + 12 + protocol::kMaxStateBlobSize)
    {
        // Refused before reading the body; the client cannot be resynchronised, so the
        // connection ends after the reply instead of parsing blob bytes as commands.
        spdlog::warn("control: {}-byte message exceeds the limit", needed);
        reply_ = protocol::encodeResult(rc::kFail);
        exitAfterReply_ = false;
        replyWritten_ = 0;
        have_ = 0;
        if (send())
        {
            close();
        }
        return;
    }
    if (have_ < needed)
    {
        if (in_.size() < needed)
        {
            in_.resize(needed);
        }
        cancelDeadline(); // progress: the deadline restarts
        armDeadline();
        waitReadable();
        return;
    }
    cancelDeadline();
    onMessage();
}

void CtrlSession::onMessage()
{
    CtrlOutcome outcome = handler_.handle(ByteView(in_.data(), have_), std::move(passedFd_));
    passedFd_ = state::UniqueFd();
    have_ = 0;
    if (in_.size() > protocol::kMaxCtrlMessage)
    {
        in_.resize(protocol::kMaxCtrlMessage);
        in_.shrink_to_fit(); // don't keep a state blob's worth of memory per connection
    }
    reply_ = std::move(outcome.reply);
    replyWritten_ = 0;
    exitAfterReply_ = outcome.exitAfterReply;
    if (send())
    {
        afterReply();
    }
}

bool CtrlSession::send()
{
    while (replyWritten_ < reply_.size())
    {
        const IoResult r =
            writeSome(stream_.native_handle(), ByteView(reply_).subspan(replyWritten_));
        if (r.status == IoStatus::Done)
        {
            replyWritten_ += r.bytes;
            continue;
        }
        if (r.status == IoStatus::WouldBlock)
        {
            stream_.async_wait(boost::asio::posix::stream_descriptor::wait_write,
                               std::bind_front(&CtrlSession::onWritable, shared_from_this()));
            return false;
        }
        spdlog::warn("control: write failed: {}", std::strerror(r.error));
        if (exitAfterReply_ && onExitRequest_)
        {
            onExitRequest_();
        }
        close();
        return false;
    }
    return true;
}

void CtrlSession::onWritable(const boost::system::error_code& ec)
{
    if (ec)
    {
        close();
        return;
    }
    if (send())
    {
        afterReply();
    }
}

void CtrlSession::afterReply()
{
    if (exitAfterReply_)
    {
        if (onExitRequest_)
        {
            onExitRequest_();
        }
        return;
    }
    readNow(); // lock-step client: the next request may already be here
}

void CtrlSession::armDeadline()
{
    if (deadlineArmed_)
    {
        return;
    }
    deadlineArmed_ = true;
    deadline_.expires_after(kMessageTimeout);
    deadline_.async_wait(
        [weak = weak_from_this()](const boost::system::error_code& ec)
        {
            auto self = weak.lock();
            if (!self || ec == boost::asio::error::operation_aborted || !self->deadlineArmed_)
            {
                return;
            }
            spdlog::warn("control: incomplete message not finished within {} ms; closing",
                         kMessageTimeout.count());
            self->close();
        });
}

void CtrlSession::cancelDeadline()
{
    if (deadlineArmed_)
    {
        deadlineArmed_ = false;
        deadline_.cancel();
    }
}

} // namespace vtpm::daemon

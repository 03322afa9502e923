#include "tools/vtpmctl/ctrl_client.hpp"

#include "state/unique_fd.hpp"
#include "tools/vtpmctl/deadline_io.hpp"
#include "tools/vtpmctl/unix_connect.hpp"

namespace vtpm::tools
{

namespace
{

using protocol::CtrlCode;

constexpr std::uint32_t kMaxVariablePart = 16U * 1024U * 1024U;

CtrlReply without(CtrlOutcome outcome)
{
    CtrlReply reply;
    reply.outcome = outcome;
    return reply;
}

CtrlOutcome outcomeOf(IoResult io) noexcept
{
    return io == IoResult::Timeout ? CtrlOutcome::Busy : CtrlOutcome::Failed;
}

// Offset of the u32 that announces the bytes following the fixed reply header, if any.
std::optional<std::size_t> variableLengthOffset(CtrlCode code) noexcept
{
    switch (code)
    {
    case CtrlCode::GetStateBlob:
        return 12; // result, state_flags, totallength, length
    case CtrlCode::GetInfo:
        return 8; // result, totallength, length
    default:
        return std::nullopt;
    }
}

} // namespace

CtrlReply ctrlRequest(const fs::path& socket, CtrlCode code, protocol::ByteView request,
                      std::chrono::milliseconds timeout)
{
    const Deadline deadline = deadlineIn(timeout);
    state::UniqueFd fd;
    switch (connectUnix(socket, fd))
    {
    case ConnectResult::Connected:
        break;
    case ConnectResult::Refused:
        return without(CtrlOutcome::NoDaemon);
    case ConnectResult::Busy:
        return without(CtrlOutcome::Busy);
    case ConnectResult::Error:
        return without(CtrlOutcome::Failed);
    }
    if (const IoResult io = writeAll(fd.get(), request, deadline); io != IoResult::Ok)
    {
        return without(outcomeOf(io));
    }
    CtrlReply reply;
    if (const IoResult io = readExact(fd.get(), protocol::kResultSize, reply.bytes, deadline);
        io != IoResult::Ok)
    {
        return without(outcomeOf(io));
    }
    reply.result = protocol::parseResult(reply.bytes).value_or(protocol::rc::kFail);
    reply.outcome = CtrlOutcome::Replied;
    if (reply.result != protocol::rc::kSuccess)
    {
        return reply; // error replies are the 4-byte result only (§2.4)
    }
    const std::size_t header = protocol::replyHeaderSize(code);
    IoResult io = readExact(fd.get(), header - protocol::kResultSize, reply.bytes, deadline);
    if (const auto offset = variableLengthOffset(code); io == IoResult::Ok && offset)
    {
        protocol::ByteReader in(protocol::ByteView(reply.bytes).subspan(*offset));
        const auto length = in.read<std::uint32_t>();
        io = length > kMaxVariablePart ? IoResult::Error
                                       : readExact(fd.get(), length, reply.bytes, deadline);
    }
    if (io != IoResult::Ok)
    {
        return without(outcomeOf(io));
    }
    return reply;
}

} // namespace vtpm::tools

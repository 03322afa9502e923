#include "protocol/ctrl_messages.hpp"

#include <array>
#include <limits>

namespace vtpm::protocol
{

namespace
{

constexpr std::array<std::string_view, kLastCtrlCode + 1> kCtrlNames = {
    "CMD_UNKNOWN",
    "CMD_GET_CAPABILITY",
    "CMD_INIT",
    "CMD_SHUTDOWN",
    "CMD_GET_TPMESTABLISHED",
    "CMD_SET_LOCALITY",
    "CMD_HASH_START",
    "CMD_HASH_DATA",
    "CMD_HASH_END",
    "CMD_CANCEL_TPM_CMD",
    "CMD_STORE_VOLATILE",
    "CMD_RESET_TPMESTABLISHED",
    "CMD_GET_STATEBLOB",
    "CMD_SET_STATEBLOB",
    "CMD_STOP",
    "CMD_GET_CONFIG",
    "CMD_SET_DATAFD",
    "CMD_SET_BUFFERSIZE",
    "CMD_GET_INFO",
    "CMD_LOCK_STORAGE",
};

Bytes codeOnly(CtrlCode code, std::size_t payloadReserve = 0)
{
    ByteWriter out(kCtrlCodeSize + payloadReserve);
    out.write(static_cast<std::uint32_t>(code));
    return std::move(out).take();
}

ByteWriter startRequest(CtrlCode code, std::size_t payload)
{
    ByteWriter out(kCtrlCodeSize + payload);
    out.write(static_cast<std::uint32_t>(code));
    return out;
}

} // namespace

std::optional<CtrlCode> ctrlCodeFromWire(std::uint32_t code) noexcept
{
    if (code < kFirstCtrlCode || code > kLastCtrlCode)
    {
        return std::nullopt;
    }
    return static_cast<CtrlCode>(code);
}

std::string_view ctrlCodeName(std::uint32_t code) noexcept
{
    return code <= kLastCtrlCode ? kCtrlNames[code] : kCtrlNames[0];
}

PayloadSpec payloadSpec(CtrlCode code) noexcept
{
    using R = PayloadRule;
    switch (code)
    {
    case CtrlCode::GetCapability:
    case CtrlCode::SetDataFd:
        return {.rule = R::AtLeast, .size = 0};
    case CtrlCode::Init:
        return {.rule = R::Exact, .size = 4};
    case CtrlCode::Shutdown:
    case CtrlCode::Stop:
    case CtrlCode::GetConfig:
        return {.rule = R::Exact, .size = 0};
    case CtrlCode::GetTpmEstablished:
    case CtrlCode::HashStart:
    case CtrlCode::HashEnd:
    case CtrlCode::CancelTpmCmd:
    case CtrlCode::StoreVolatile:
        return {.rule = R::Exact, .size = 0, .needsRunning = true};
    case CtrlCode::SetLocality:
        return {.rule = R::AtLeast, .size = 1};
    case CtrlCode::ResetTpmEstablished:
        return {.rule = R::AtLeast, .size = 1, .needsRunning = true};
    case CtrlCode::HashData:
        return {.rule = R::AtLeast, .size = 4, .needsRunning = true, .lengthPrefixed = true,
                .lengthOffset = 0};
    case CtrlCode::GetStateBlob:
        return {.rule = R::AtLeast, .size = 12, .needsRunning = true};
    case CtrlCode::SetStateBlob:
        return {.rule = R::AtLeast, .size = 12, .needsStopped = true, .lengthPrefixed = true,
                .lengthOffset = 8};
    case CtrlCode::SetBufferSize:
    case CtrlCode::LockStorage:
        return {.rule = R::AtLeast, .size = 4};
    case CtrlCode::GetInfo:
        return {.rule = R::AtLeast, .size = 16};
    }
    return {};
}

std::size_t ctrlMessageNeeded(ByteView received) noexcept
{
    ByteReader in(received);
    const auto code = ctrlCodeFromWire(in.read<std::uint32_t>());
    if (!in.ok() || !code)
    {
        return kCtrlCodeSize;
    }
    // The minimum sizes swtpm waits for before it acts (§2.4 step 2); the payload of the other
    // fixed-size commands is expected in the same write as the code.
    switch (*code)
    {
    case CtrlCode::Init:
        return kCtrlCodeSize + 4;
    case CtrlCode::SetLocality:
    case CtrlCode::ResetTpmEstablished:
        return kCtrlCodeSize + 1;
    case CtrlCode::GetStateBlob:
        return kCtrlCodeSize + 12;
    case CtrlCode::HashData:
    case CtrlCode::SetStateBlob:
    {
        const PayloadSpec spec = payloadSpec(*code);
        const std::size_t header = kCtrlCodeSize + spec.size;
        if (received.size() < header)
        {
            return header;
        }
        ByteReader len(received.subspan(kCtrlCodeSize + spec.lengthOffset));
        return header + len.read<std::uint32_t>();
    }
    default:
        return kCtrlCodeSize;
    }
}

bool isEmptyPayload(ByteView payload) noexcept
{
    return payload.empty();
}

std::optional<InitRequest> parseInitRequest(ByteView payload) noexcept
{
    if (payload.size() != 4)
    {
        return std::nullopt;
    }
    ByteReader in(payload);
    return InitRequest{.flags = in.read<std::uint32_t>()};
}

std::optional<LocalityRequest> parseLocalityRequest(ByteView payload) noexcept
{
    if (payload.empty())
    {
        return std::nullopt;
    }
    return LocalityRequest{.locality = payload[0]};
}

std::optional<HashDataRequest> parseHashDataRequest(ByteView payload) noexcept
{
    ByteReader in(payload);
    const auto length = in.read<std::uint32_t>();
    if (!in.ok() || in.remaining() != length) // more bytes than announced is an error too
    {
        return std::nullopt;
    }
    return HashDataRequest{.data = in.rest()};
}

std::optional<GetStateBlobRequest> parseGetStateBlobRequest(ByteView payload) noexcept
{
    ByteReader in(payload);
    const GetStateBlobRequest r{.stateFlags = in.read<std::uint32_t>(),
                                .type = in.read<std::uint32_t>(),
                                .offset = in.read<std::uint32_t>()};
    return in.ok() ? std::optional(r) : std::nullopt;
}

std::optional<SetStateBlobRequest> parseSetStateBlobRequest(ByteView payload) noexcept
{
    ByteReader in(payload);
    const auto flags = in.read<std::uint32_t>();
    const auto type = in.read<std::uint32_t>();
    const auto length = in.read<std::uint32_t>();
    if (!in.ok() || in.remaining() != length)
    {
        return std::nullopt;
    }
    return SetStateBlobRequest{.stateFlags = flags, .type = type, .blob = in.rest()};
}

std::optional<SetBufferSizeRequest> parseSetBufferSizeRequest(ByteView payload) noexcept
{
    ByteReader in(payload);
    const SetBufferSizeRequest r{.bufferSize = in.read<std::uint32_t>()};
    return in.ok() ? std::optional(r) : std::nullopt;
}

std::optional<GetInfoRequest> parseGetInfoRequest(ByteView payload) noexcept
{
    ByteReader in(payload);
    const GetInfoRequest r{.flags = in.read<std::uint64_t>(), .offset = in.read<std::uint32_t>()};
    in.skip(4); // pad
    return in.ok() ? std::optional(r) : std::nullopt;
}

std::optional<LockStorageRequest> parseLockStorageRequest(ByteView payload) noexcept
{
    ByteReader in(payload);
    const LockStorageRequest r{.retries = in.read<std::uint32_t>()};
    return in.ok() ? std::optional(r) : std::nullopt;
}

Bytes encodeRequest(CtrlCode code)
{
    return codeOnly(code);
}

Bytes encodeRequest(const InitRequest& r)
{
    return std::move(startRequest(CtrlCode::Init, 4).write(r.flags)).take();
}

Bytes encodeRequest(CtrlCode code, const LocalityRequest& r)
{
    return std::move(startRequest(code, 4).write(r.locality).zeros(3)).take();
}

Bytes encodeRequest(const HashDataRequest& r)
{
    ByteWriter out = startRequest(CtrlCode::HashData, 4 + r.data.size());
    out.write(static_cast<std::uint32_t>(r.data.size())).write(r.data);
    return std::move(out).take();
}

Bytes encodeRequest(const GetStateBlobRequest& r)
{
    ByteWriter out = startRequest(CtrlCode::GetStateBlob, 12);
    out.write(r.stateFlags).write(r.type).write(r.offset);
    return std::move(out).take();
}

Bytes encodeRequest(const SetStateBlobRequest& r)
{
    ByteWriter out = startRequest(CtrlCode::SetStateBlob, 12 + r.blob.size());
    out.write(r.stateFlags).write(r.type).write(static_cast<std::uint32_t>(r.blob.size()));
    out.write(r.blob);
    return std::move(out).take();
}

Bytes encodeRequest(const SetBufferSizeRequest& r)
{
    return std::move(startRequest(CtrlCode::SetBufferSize, 4).write(r.bufferSize)).take();
}

Bytes encodeRequest(const GetInfoRequest& r)
{
    ByteWriter out = startRequest(CtrlCode::GetInfo, 16);
    out.write(r.flags).write(r.offset).write(std::uint32_t{0});
    return std::move(out).take();
}

Bytes encodeRequest(const LockStorageRequest& r)
{
    return std::move(startRequest(CtrlCode::LockStorage, 4).write(r.retries)).take();
}

Bytes encodeResult(TpmResult result)
{
    ByteWriter out(kResultSize);
    out.write(result);
    return std::move(out).take();
}

Bytes encodeReply(const CapabilityReply& r)
{
    // Up to swtpm 0.7 this was one u64 mask; a zero result word keeps both readings equal.
    ByteWriter out(kCapabilityReplySize);
    out.write(rc::kSuccess).write(r.caps);
    return std::move(out).take();
}

Bytes encodeReply(const EstablishedReply& r)
{
    ByteWriter out(kEstablishedReplySize);
    out.write(r.result).write(static_cast<std::uint8_t>(r.established ? 1 : 0)).zeros(3);
    return std::move(out).take();
}

Bytes encodeReply(const StateBlobReply& r)
{
    const bool withData = r.result == rc::kSuccess;
    ByteWriter out(kStateBlobReplyHeaderSize + (withData ? r.data.size() : 0));
    out.write(r.result).write(r.stateFlags).write(r.totalLength);
    out.write(static_cast<std::uint32_t>(withData ? r.data.size() : 0));
    if (withData)
    {
        out.write(r.data);
    }
    return std::move(out).take();
}

Bytes encodeReply(const ConfigReply& r)
{
    ByteWriter out(kConfigReplySize);
    out.write(rc::kSuccess).write(r.flags);
    return std::move(out).take();
}

Bytes encodeReply(const BufferSizeReply& r)
{
    ByteWriter out(kBufferSizeReplySize);
    out.write(rc::kSuccess).write(r.bufferSize).write(r.minSize).write(r.maxSize);
    return std::move(out).take();
}

Bytes encodeReply(const InfoReply& r)
{
    ByteWriter out(kInfoReplyHeaderSize + r.chunk.size());
    out.write(rc::kSuccess).write(r.totalLength);
    out.write(static_cast<std::uint32_t>(r.chunk.size())).write(r.chunk);
    return std::move(out).take();
}

std::optional<TpmResult> parseResult(ByteView reply) noexcept
{
    ByteReader in(reply);
    const auto result = in.read<std::uint32_t>();
    return in.ok() ? std::optional(result) : std::nullopt;
}

namespace
{

// Reads the leading result word and insists it is success and the size is exact.
bool successOfSize(ByteReader& in, std::size_t total, std::size_t actual) noexcept
{
    return actual == total && in.read<std::uint32_t>() == rc::kSuccess && in.ok();
}

} // namespace

std::optional<CapabilityReply> parseCapabilityReply(ByteView reply) noexcept
{
    ByteReader in(reply);
    if (!successOfSize(in, kCapabilityReplySize, reply.size()))
    {
        return std::nullopt;
    }
    return CapabilityReply{.caps = in.read<std::uint32_t>()};
}

std::optional<EstablishedReply> parseEstablishedReply(ByteView reply) noexcept
{
    if (reply.size() != kEstablishedReplySize)
    {
        return std::nullopt;
    }
    ByteReader in(reply);
    const EstablishedReply r{.result = in.read<std::uint32_t>(),
                             .established = in.read<std::uint8_t>() != 0};
    return r;
}

std::optional<StateBlobReply> parseStateBlobReply(ByteView reply) noexcept
{
    ByteReader in(reply);
    StateBlobReply r{.result = in.read<std::uint32_t>(),
                     .stateFlags = in.read<std::uint32_t>(),
                     .totalLength = in.read<std::uint32_t>(),
                     .data = {}};
    const auto length = in.read<std::uint32_t>();
    if (!in.ok() || in.remaining() != (r.result == rc::kSuccess ? length : 0))
    {
        return std::nullopt;
    }
    r.data = in.rest();
    return r;
}

std::optional<ConfigReply> parseConfigReply(ByteView reply) noexcept
{
    ByteReader in(reply);
    if (!successOfSize(in, kConfigReplySize, reply.size()))
    {
        return std::nullopt;
    }
    return ConfigReply{.flags = in.read<std::uint32_t>()};
}

std::optional<BufferSizeReply> parseBufferSizeReply(ByteView reply) noexcept
{
    ByteReader in(reply);
    if (!successOfSize(in, kBufferSizeReplySize, reply.size()))
    {
        return std::nullopt;
    }
    return BufferSizeReply{.bufferSize = in.read<std::uint32_t>(),
                           .minSize = in.read<std::uint32_t>(),
                           .maxSize = in.read<std::uint32_t>()};
}

std::optional<InfoReply> parseInfoReply(ByteView reply) noexcept
{
    ByteReader in(reply);
    if (in.read<std::uint32_t>() != rc::kSuccess)
    {
        return std::nullopt;
    }
    const auto total = in.read<std::uint32_t>();
    const auto length = in.read<std::uint32_t>();
    if (!in.ok() || in.remaining() != length)
    {
        return std::nullopt;
    }
    return InfoReply{.totalLength = total, .chunk = in.rest()};
}

std::size_t replyHeaderSize(CtrlCode code) noexcept
{
    switch (code)
    {
    case CtrlCode::GetCapability:
        return kCapabilityReplySize;
    case CtrlCode::GetTpmEstablished:
        return kEstablishedReplySize;
    case CtrlCode::GetStateBlob:
        return kStateBlobReplyHeaderSize;
    case CtrlCode::GetConfig:
        return kConfigReplySize;
    case CtrlCode::SetBufferSize:
        return kBufferSizeReplySize;
    case CtrlCode::GetInfo:
        return kInfoReplyHeaderSize;
    default:
        return kResultSize;
    }
}

} // namespace vtpm::protocol

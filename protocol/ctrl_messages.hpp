#pragma once

#include "protocol/byte_io.hpp"
#include "protocol/result_codes.hpp"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

// The control channel of QEMU's TPM-emulator protocol (protocol.md §2.4, §3, §5): a request is a
// u32 command code plus a command-specific payload, a reply is the command's response struct
// without the code. No length prefix exists, so sizes below are part of the protocol. All
// integers big-endian. Both directions are encoded and parsed here: the daemon parses requests
// and encodes replies, clients (vtpmctl, vtpm-bench, tests) do the opposite.
namespace vtpm::protocol
{

enum class CtrlCode : std::uint32_t
{
    GetCapability = 0x01,
    Init = 0x02,
    Shutdown = 0x03,
    GetTpmEstablished = 0x04,
    SetLocality = 0x05,
    HashStart = 0x06,
    HashData = 0x07,
    HashEnd = 0x08,
    CancelTpmCmd = 0x09,
    StoreVolatile = 0x0a,
    ResetTpmEstablished = 0x0b,
    GetStateBlob = 0x0c,
    SetStateBlob = 0x0d,
    Stop = 0x0e,
    GetConfig = 0x0f,
    SetDataFd = 0x10,
    SetBufferSize = 0x11,
    GetInfo = 0x12,
    LockStorage = 0x13,
};

inline constexpr std::uint32_t kFirstCtrlCode = 0x01;
inline constexpr std::uint32_t kLastCtrlCode = 0x13;
inline constexpr std::size_t kCtrlCodeSize = 4;

// Wire value to command; nullopt for codes the protocol does not define.
std::optional<CtrlCode> ctrlCodeFromWire(std::uint32_t code) noexcept;
// "CMD_INIT" etc.; "CMD_UNKNOWN" for anything else.
std::string_view ctrlCodeName(std::uint32_t code) noexcept;

// PTM_CAP_* bits of the GET_CAPABILITY mask (§5.1).
namespace cap
{
inline constexpr std::uint32_t kInit = 1U << 0;
inline constexpr std::uint32_t kShutdown = 1U << 1;
inline constexpr std::uint32_t kGetTpmEstablished = 1U << 2;
inline constexpr std::uint32_t kSetLocality = 1U << 3;
inline constexpr std::uint32_t kHashing = 1U << 4;
inline constexpr std::uint32_t kCancelTpmCmd = 1U << 5;
inline constexpr std::uint32_t kStoreVolatile = 1U << 6;
inline constexpr std::uint32_t kResetTpmEstablished = 1U << 7;
inline constexpr std::uint32_t kGetStateBlob = 1U << 8;
inline constexpr std::uint32_t kSetStateBlob = 1U << 9;
inline constexpr std::uint32_t kStop = 1U << 10;
inline constexpr std::uint32_t kGetConfig = 1U << 11;
inline constexpr std::uint32_t kSetDataFd = 1U << 12;
inline constexpr std::uint32_t kSetBufferSize = 1U << 13;
inline constexpr std::uint32_t kGetInfo = 1U << 14;
inline constexpr std::uint32_t kSendCommandHeader = 1U << 15;
inline constexpr std::uint32_t kLockStorage = 1U << 16;
} // namespace cap

// CMD_INIT flags (PTM_INIT_FLAG_*).
namespace initflag
{
inline constexpr std::uint32_t kDeleteVolatile = 0x1;
}

// CMD_GET_CONFIG flags (PTM_CONFIG_FLAG_*).
namespace configflag
{
inline constexpr std::uint32_t kFileKey = 0x1;
inline constexpr std::uint32_t kMigrationKey = 0x2;
} // namespace configflag

// Largest fixed request body (ptm_hdata: u32 length + 4096 data bytes) plus the code: what a
// daemon reads at most for one message apart from state blob and hash data continuations.
inline constexpr std::size_t kHashDataChunk = 4096;
inline constexpr std::size_t kMaxCtrlMessage = kCtrlCodeSize + 4 + kHashDataChunk;
// SET_STATEBLOB blobs above this are refused (swtpm HEAD uses the same cap).
inline constexpr std::size_t kMaxStateBlobSize = 512 * 1024;
// GET_INFO returns the JSON string in chunks of at most this many bytes.
inline constexpr std::size_t kGetInfoChunk = 3072;

// How the payload length of each request is judged (§3.1, §12 item 4).
enum class PayloadRule
{
    Exact,   // exactly `size` bytes
    AtLeast, // `size` bytes or more; extra bytes are ignored
};

struct PayloadSpec
{
    PayloadRule rule = PayloadRule::Exact;
    std::size_t size = 0;
    bool needsRunning = false;    // TPM_BAD_ORDINAL if not running, checked before the size
    bool needsStopped = false;    // TPM_BAD_ORDINAL if running (SET_STATEBLOB)
    bool lengthPrefixed = false;  // HASH_DATA / SET_STATEBLOB: a length field announces a body
    std::size_t lengthOffset = 0; // offset of that u32 length within the payload
};

PayloadSpec payloadSpec(CtrlCode code) noexcept;

// Total message bytes (code included) the daemon must have before it can act on a message
// whose first bytes are `received` (at least the 4-byte code). For length-prefixed commands
// this includes the announced body, so the caller can keep reading until it has them.
std::size_t ctrlMessageNeeded(ByteView received) noexcept;

// ---- Requests -------------------------------------------------------------------------------

struct InitRequest
{
    std::uint32_t flags = 0;
};
struct LocalityRequest // CMD_SET_LOCALITY and CMD_RESET_TPMESTABLISHED
{
    std::uint8_t locality = 0;
};
struct HashDataRequest
{
    ByteView data; // borrowed from the received message
};
struct GetStateBlobRequest
{
    std::uint32_t stateFlags = 0;
    std::uint32_t type = 0;
    std::uint32_t offset = 0;
};
struct SetStateBlobRequest
{
    std::uint32_t stateFlags = 0;
    std::uint32_t type = 0;
    ByteView blob; // borrowed; its length is the header's length field
};
struct SetBufferSizeRequest
{
    std::uint32_t bufferSize = 0; // 0 = query only
};
struct GetInfoRequest
{
    std::uint64_t flags = 0;
    std::uint32_t offset = 0;
};
struct LockStorageRequest
{
    std::uint32_t retries = 0;
};

// Parsers take the payload after the code and apply the §3 size rules; nullopt means the reply
// is TPM_BAD_PARAMETER.
std::optional<InitRequest> parseInitRequest(ByteView payload) noexcept;
std::optional<LocalityRequest> parseLocalityRequest(ByteView payload) noexcept;
std::optional<HashDataRequest> parseHashDataRequest(ByteView payload) noexcept;
std::optional<GetStateBlobRequest> parseGetStateBlobRequest(ByteView payload) noexcept;
std::optional<SetStateBlobRequest> parseSetStateBlobRequest(ByteView payload) noexcept;
std::optional<SetBufferSizeRequest> parseSetBufferSizeRequest(ByteView payload) noexcept;
std::optional<GetInfoRequest> parseGetInfoRequest(ByteView payload) noexcept;
std::optional<LockStorageRequest> parseLockStorageRequest(ByteView payload) noexcept;
// For the commands without payload.
bool isEmptyPayload(ByteView payload) noexcept;

// Encoders produce the complete request (code included), as QEMU and swtpm_ioctl send them.
Bytes encodeRequest(CtrlCode code); // commands without payload
Bytes encodeRequest(const InitRequest& r);
Bytes encodeRequest(CtrlCode code, const LocalityRequest& r); // 4-byte union, as QEMU sends
Bytes encodeRequest(const HashDataRequest& r);
Bytes encodeRequest(const GetStateBlobRequest& r);
Bytes encodeRequest(const SetStateBlobRequest& r);
Bytes encodeRequest(const SetBufferSizeRequest& r);
Bytes encodeRequest(const GetInfoRequest& r);
Bytes encodeRequest(const LockStorageRequest& r);

// ---- Replies --------------------------------------------------------------------------------

inline constexpr std::size_t kResultSize = 4;
inline constexpr std::size_t kCapabilityReplySize = 8;
inline constexpr std::size_t kEstablishedReplySize = 8;
inline constexpr std::size_t kStateBlobReplyHeaderSize = 16;
inline constexpr std::size_t kConfigReplySize = 8;
inline constexpr std::size_t kBufferSizeReplySize = 16;
inline constexpr std::size_t kInfoReplyHeaderSize = 12;

struct CapabilityReply
{
    std::uint32_t caps = 0;
};
struct EstablishedReply
{
    TpmResult result = rc::kSuccess;
    bool established = false;
};
struct StateBlobReply
{
    TpmResult result = rc::kSuccess;
    std::uint32_t stateFlags = 0;
    std::uint32_t totalLength = 0; // bytes from the requested offset to the end
    ByteView data;                 // borrowed; length == data.size()
};
struct ConfigReply
{
    std::uint32_t flags = 0;
};
struct BufferSizeReply
{
    std::uint32_t bufferSize = 0;
    std::uint32_t minSize = 0;
    std::uint32_t maxSize = 0;
};
struct InfoReply
{
    std::uint32_t totalLength = 0; // strlen(json) + 1
    ByteView chunk;                // borrowed
};

// Every error reply, and the reply of commands that only return a result, is 4 bytes (§2.4).
Bytes encodeResult(TpmResult result);
Bytes encodeReply(const CapabilityReply& r);
Bytes encodeReply(const EstablishedReply& r);
// Always carries the 16-byte header; data follows only when result is success.
Bytes encodeReply(const StateBlobReply& r);
Bytes encodeReply(const ConfigReply& r);
Bytes encodeReply(const BufferSizeReply& r);
Bytes encodeReply(const InfoReply& r);

// Client side. Each parser accepts exactly the success layout; a 4-byte error reply yields
// nullopt from these and its code from parseResult.
std::optional<TpmResult> parseResult(ByteView reply) noexcept;
std::optional<CapabilityReply> parseCapabilityReply(ByteView reply) noexcept;
std::optional<EstablishedReply> parseEstablishedReply(ByteView reply) noexcept;
std::optional<StateBlobReply> parseStateBlobReply(ByteView reply) noexcept;
std::optional<ConfigReply> parseConfigReply(ByteView reply) noexcept;
std::optional<BufferSizeReply> parseBufferSizeReply(ByteView reply) noexcept;
std::optional<InfoReply> parseInfoReply(ByteView reply) noexcept;

// Size of the success reply of a command with a fixed reply (4, 8 or 16), or of the fixed
// header of a variable one (GET_STATEBLOB 16, GET_INFO 12): what a client reads first.
std::size_t replyHeaderSize(CtrlCode code) noexcept;

} // namespace vtpm::protocol

#pragma once

#include "protocol/byte_io.hpp"
#include "protocol/result_codes.hpp"
#include "protocol/tpm_version.hpp"

#include <cstddef>
#include <cstdint>
#include <optional>

// TPM command/response frames on the data channel (protocol.md §2.3): a 10-byte big-endian
// header {tag u16, size u32, code u32} where size counts the whole frame. Pure functions, no I/O.
namespace vtpm::protocol
{

inline constexpr std::size_t kTpmHeaderSize = 10;
// libtpms' largest I/O buffer (TPMPROP_TPM_BUFFER_MAX); SET_BUFFERSIZE can only shrink it.
inline constexpr std::size_t kMaxTpmBufferSize = 4096;
// The TCG/MS-simulator "send command" prefix {u32 8, u8 locality, u32 length} (§2.3.2).
inline constexpr std::size_t kSendCommandPrefixSize = 9;
inline constexpr std::uint32_t kSendCommandCode = 8;

namespace tag
{
inline constexpr std::uint16_t kTpm2NoSessions = 0x8001;
inline constexpr std::uint16_t kTpm2Sessions = 0x8002;
inline constexpr std::uint16_t kTpm12RquCommand = 0x00c1;
inline constexpr std::uint16_t kTpm12RquAuth1 = 0x00c2;
inline constexpr std::uint16_t kTpm12RquAuth2 = 0x00c3;
inline constexpr std::uint16_t kTpm12RspCommand = 0x00c4;
} // namespace tag

namespace cc
{
inline constexpr std::uint32_t kTpm2Startup = 0x144;
inline constexpr std::uint32_t kTpm2Shutdown = 0x145;
inline constexpr std::uint32_t kTpm2ReadClock = 0x181;
inline constexpr std::uint32_t kTpm12Startup = 0x99;
inline constexpr std::uint32_t kTpm12GetTicks = 0xf1;
// vTPM-proxy vendor ordinal "set locality", identical for both families (§2.3.3).
inline constexpr std::uint32_t kSetLocality = 0x20001000;
} // namespace cc

struct TpmHeader
{
    std::uint16_t tag = 0;
    std::uint32_t size = 0;
    std::uint32_t code = 0; // ordinal in a request, return code in a response
};

// Reads the header fields; nullopt only when fewer than 10 bytes are given. The size field is
// not judged here: framing (probeFrame) decides what an out-of-range size means.
std::optional<TpmHeader> parseTpmHeader(ByteView bytes) noexcept;

void writeTpmHeader(ByteWriter& out, const TpmHeader& header);

// A complete 10-byte response carrying only a return code, tagged for the TPM family so a
// client that only looks at the tag (QEMU's version probe) learns which TPM it talks to.
Bytes errorResponse(TpmVersion version, TpmResult code);

// What the daemon answers when the TPM is not running (§2.3.1).
inline Bytes notRunningResponse(TpmVersion version)
{
    return errorResponse(version, version == TpmVersion::Tpm2 ? rc::kTpm2Failure : rc::kFail);
}

// Size error for a frame larger than the buffer or with an impossible size field.
inline Bytes commandSizeResponse(TpmVersion version)
{
    return errorResponse(version,
                         version == TpmVersion::Tpm2 ? rc::kTpm2CommandSize : rc::kBadParamSize);
}

// Framing of a byte stream into commands. The daemon reads whatever is available and asks
// this function how the bytes received so far split into a frame.
enum class FrameStatus
{
    NeedMore,  // `needed` total bytes are required before the frame can be judged or is complete
    Complete,  // a frame of `needed` bytes (prefix included) is at the start of the buffer
    Oversized, // the size field exceeds the limit; `needed` is what the peer announced
    Invalid,   // the size field is below the header size: the stream cannot be resynchronised
};

struct FrameProbe
{
    FrameStatus status = FrameStatus::NeedMore;
    std::size_t needed = kTpmHeaderSize; // total frame bytes, prefix included
    std::size_t prefixSize = 0;          // kSendCommandPrefixSize if the TCG prefix is present
};

// maxCommandSize is the TPM's current buffer size; the TCG prefix is recognised for TPM 2 only.
FrameProbe probeFrame(ByteView received, TpmVersion version, std::size_t maxCommandSize) noexcept;

// Locality byte of a TCG send-command prefix (the caller knows one is present).
std::uint8_t sendCommandLocality(ByteView frame) noexcept;

// Frames a response for a client that used the TCG prefix: u32 length, response, u32 zero.
Bytes wrapSendCommandResponse(ByteView response);

// Pre-marshalled commands the daemon sends on its own behalf (§8.1, §8.5).
Bytes tpm2StartupCommand(std::uint16_t startupType);
Bytes tpm2ShutdownCommand(std::uint16_t shutdownType);
Bytes tpm12StartupCommand(std::uint16_t startupType);

inline constexpr std::uint16_t kTpm2SuClear = 0;
inline constexpr std::uint16_t kTpm2SuState = 1;
inline constexpr std::uint16_t kTpm12StClear = 1;
inline constexpr std::uint16_t kTpm12StState = 2;
inline constexpr std::uint16_t kTpm12StDeactivated = 3;

// Name of a TPM command code for debug logs ("TPM2_GetRandom"); "" when unknown.
std::string_view tpmCommandName(TpmVersion version, std::uint32_t code) noexcept;

} // namespace vtpm::protocol

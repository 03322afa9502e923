#pragma once

#include <cstdint>
#include <string_view>

// TPM 1.2-style result codes (libtpms tpm_error.h values). swtpm's control channel uses them for
// both TPM families, so they live here, free of any libtpms include (protocol.md §4).
namespace vtpm::protocol
{

using TpmResult = std::uint32_t;

namespace rc
{
inline constexpr TpmResult kSuccess = 0x00;
inline constexpr TpmResult kBadParameter = 0x03;
inline constexpr TpmResult kFail = 0x09;
inline constexpr TpmResult kBadOrdinal = 0x0a;
inline constexpr TpmResult kKeyNotFound = 0x0d;
inline constexpr TpmResult kSize = 0x17;
inline constexpr TpmResult kBadParamSize = 0x19;
inline constexpr TpmResult kIoError = 0x1f;
inline constexpr TpmResult kEncryptError = 0x20;
inline constexpr TpmResult kDecryptError = 0x21;
inline constexpr TpmResult kInvalidPostInit = 0x26;
inline constexpr TpmResult kBadKeyProperty = 0x28;
inline constexpr TpmResult kBadDataSize = 0x2b;
inline constexpr TpmResult kBadMode = 0x2c;
inline constexpr TpmResult kBadVersion = 0x2e;
inline constexpr TpmResult kBadType = 0x34;
inline constexpr TpmResult kBadLocality = 0x3d;
inline constexpr TpmResult kRetry = 0x800; // TPM_NON_FATAL: "blob absent" for GET_STATEBLOB

// TPM 2.0 response codes the daemon generates itself on the data channel.
inline constexpr TpmResult kTpm2Initialize = 0x100;
inline constexpr TpmResult kTpm2Failure = 0x101;
inline constexpr TpmResult kTpm2Locality = 0x107;
inline constexpr TpmResult kTpm2Insufficient = 0x9a;
inline constexpr TpmResult kTpm2CommandSize = 0x142;
} // namespace rc

// Human-readable name for logs and error messages ("TPM_BAD_PARAMETER"); unknown codes give "".
std::string_view resultName(TpmResult code) noexcept;

} // namespace vtpm::protocol

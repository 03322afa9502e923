#pragma once

#include "protocol/byte_io.hpp"
#include "protocol/tpm_version.hpp"

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

// Pre-marshalled TPM 2.0 (Part 3) and TPM 1.2 (Part 3) commands for the benchmark, built once
// before a timed loop, and the checks applied to every response. Handles and sizes follow the
// TPM 2.0 Library Specification Part 2 (structures) and Part 3 (commands).
namespace vtpm::bench
{

using protocol::Bytes;
using protocol::ByteView;

// Any failure of the benchmark (transport, daemon, TPM response code): the run is invalid.
class BenchError : public std::runtime_error
{
public:
    using std::runtime_error::runtime_error;
};

namespace tpm2
{
inline constexpr std::uint32_t kRhOwner = 0x40000001;
inline constexpr std::uint32_t kRhNull = 0x40000007;
inline constexpr std::uint32_t kRsPassword = 0x40000009;
inline constexpr std::uint32_t kBenchNvIndex = 0x01500000;
inline constexpr std::uint32_t kBenchPcr = 16; // the debug PCR, extendable from locality 0
inline constexpr std::uint32_t kRcNvDefined = 0x14c;

enum class KeyType
{
    Rsa2048,
    EccP256,
};

Bytes startup();
Bytes getRandom(std::uint16_t bytes);
Bytes pcrExtendSha256(std::uint32_t pcr);
Bytes pcrReadSha256(std::uint32_t pcr);
Bytes hashSha256(std::size_t dataSize);
Bytes getCapabilityManufacturer();
Bytes nvDefineSpace(std::uint32_t index, std::uint16_t dataSize);
Bytes nvUndefineSpace(std::uint32_t index);
Bytes nvWrite(std::uint32_t index, std::uint16_t dataSize);
// Owner-hierarchy primary signing key: RSASSA-SHA256 or ECDSA-SHA256 on P-256.
Bytes createPrimarySigningKey(KeyType type);
// Signs a fixed SHA-256 digest with the key's scheme and a NULL hash-check ticket.
Bytes signDigest(std::uint32_t keyHandle);
Bytes flushContext(std::uint32_t handle);
} // namespace tpm2

namespace tpm12
{
Bytes startupClear();
Bytes getCapabilityPcrCount();
Bytes extend(std::uint32_t pcr);
} // namespace tpm12

// Response code of a complete response; throws unless the frame is self-consistent (size field
// equals the bytes received, tag fits the TPM family).
std::uint32_t responseCode(ByteView response, protocol::TpmVersion version);

// Throws BenchError naming `what` unless the response is a success.
void expectSuccess(ByteView response, protocol::TpmVersion version, std::string_view what);

// The handle a successful TPM2_CreatePrimary returned.
std::uint32_t createdHandle(ByteView response);

std::string hex(std::uint32_t value);

} // namespace vtpm::bench

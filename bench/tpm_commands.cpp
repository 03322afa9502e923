#include "bench/tpm_commands.hpp"

#include "protocol/tpm_frame.hpp"

#include <fmt/format.h>

namespace vtpm::bench
{

using protocol::ByteWriter;
using protocol::TpmVersion;

namespace
{

// TPM 2.0 Part 2 constants used below.
constexpr std::uint16_t kAlgRsa = 0x0001;
constexpr std::uint16_t kAlgSha256 = 0x000b;
constexpr std::uint16_t kAlgNull = 0x0010;
constexpr std::uint16_t kAlgRsassa = 0x0014;
constexpr std::uint16_t kAlgEcdsa = 0x0018;
constexpr std::uint16_t kAlgEcc = 0x0023;
constexpr std::uint16_t kEccNistP256 = 0x0003;
constexpr std::uint16_t kStHashcheck = 0x8024;
constexpr std::uint16_t kSha256Size = 32;
constexpr std::uint32_t kCapTpmProperties = 6;
constexpr std::uint32_t kPtManufacturer = 0x105;
// fixedTPM | fixedParent | sensitiveDataOrigin | userWithAuth | sign (Part 2 §8.3).
constexpr std::uint32_t kSigningKeyAttributes = 0x00040072;
// OWNERWRITE | AUTHWRITE | OWNERREAD | AUTHREAD | NO_DA (Part 2 §13.4).
constexpr std::uint32_t kNvAttributes = 0x02060006;

namespace cc
{
constexpr std::uint32_t kNvUndefineSpace = 0x122;
constexpr std::uint32_t kNvDefineSpace = 0x12a;
constexpr std::uint32_t kCreatePrimary = 0x131;
constexpr std::uint32_t kNvWrite = 0x137;
constexpr std::uint32_t kSign = 0x15d;
constexpr std::uint32_t kFlushContext = 0x165;
constexpr std::uint32_t kGetCapability = 0x17a;
constexpr std::uint32_t kGetRandom = 0x17b;
constexpr std::uint32_t kHash = 0x17d;
constexpr std::uint32_t kPcrRead = 0x17e;
constexpr std::uint32_t kPcrExtend = 0x182;
constexpr std::uint32_t kTpm12Extend = 0x14;
constexpr std::uint32_t kTpm12GetCapability = 0x65;
} // namespace cc

// Header with a size placeholder; finish() back-fills it once the body is written.
class CommandBuilder
{
public:
    CommandBuilder(std::uint16_t tag, std::uint32_t code) : out_(64)
    {
        protocol::writeTpmHeader(out_, {.tag = tag, .size = 0, .code = code});
    }

    CommandBuilder& u8(std::uint8_t v)
    {
        out_.write(v);
        return *this;
    }
    CommandBuilder& u16(std::uint16_t v)
    {
        out_.write(v);
        return *this;
    }
    CommandBuilder& u32(std::uint32_t v)
    {
        out_.write(v);
        return *this;
    }
    CommandBuilder& pattern(std::size_t n)
    {
        for (std::size_t i = 0; i < n; ++i)
        {
            out_.write(static_cast<std::uint8_t>(i * 7U + 1U));
        }
        return *this;
    }
    // TPM2B of n pattern bytes.
    CommandBuilder& sized(std::uint16_t n)
    {
        u16(n);
        return pattern(n);
    }
    // Authorization area with one empty password session (Part 1 §19.8.4).
    CommandBuilder& passwordAuth() { return u32(9).u32(tpm2::kRsPassword).u16(0).u8(0).u16(0); }
    CommandBuilder& bytes(ByteView b)
    {
        out_.write(b);
        return *this;
    }

    Bytes finish()
    {
        if (!out_.patch32(2, static_cast<std::uint32_t>(out_.size())))
        {
            throw BenchError("command builder: cannot patch the size field");
        }
        return std::move(out_).take();
    }

private:
    ByteWriter out_;
};

Bytes signingPublicArea(tpm2::KeyType type)
{
    ByteWriter pub(64);
    if (type == tpm2::KeyType::Rsa2048)
    {
        pub.write(kAlgRsa).write(kAlgSha256).write(kSigningKeyAttributes).write(std::uint16_t{0});
        pub.write(kAlgNull);                                    // symmetric
        pub.write(kAlgRsassa).write(kAlgSha256);                // scheme
        pub.write(std::uint16_t{2048}).write(std::uint32_t{0}); // keyBits, default exponent
        pub.write(std::uint16_t{0});                            // unique.rsa
    }
    else
    {
        pub.write(kAlgEcc).write(kAlgSha256).write(kSigningKeyAttributes).write(std::uint16_t{0});
        pub.write(kAlgNull);                                 // symmetric
        pub.write(kAlgEcdsa).write(kAlgSha256);              // scheme
        pub.write(kEccNistP256).write(kAlgNull);             // curve, kdf
        pub.write(std::uint16_t{0}).write(std::uint16_t{0}); // unique.ecc x, y
    }
    return std::move(pub).take();
}

} // namespace

namespace tpm2
{

using protocol::tag::kTpm2NoSessions;
using protocol::tag::kTpm2Sessions;

Bytes startup()
{
    return protocol::tpm2StartupCommand(protocol::kTpm2SuClear);
}

Bytes getRandom(std::uint16_t bytes)
{
    return CommandBuilder(kTpm2NoSessions, cc::kGetRandom).u16(bytes).finish();
}

Bytes pcrExtendSha256(std::uint32_t pcr)
{
    return CommandBuilder(kTpm2Sessions, cc::kPcrExtend)
        .u32(pcr)
        .passwordAuth()
        .u32(1)
        .u16(kAlgSha256)
        .pattern(kSha256Size)
        .finish();
}

Bytes pcrReadSha256(std::uint32_t pcr)
{
    std::uint8_t select[3] = {0, 0, 0};
    select[pcr / 8] = static_cast<std::uint8_t>(1U << (pcr % 8));
    return CommandBuilder(kTpm2NoSessions, cc::kPcrRead)
        .u32(1)
        .u16(kAlgSha256)
        .u8(3)
        .bytes(select)
        .finish();
}

Bytes hashSha256(std::size_t dataSize)
{
    return CommandBuilder(kTpm2NoSessions, cc::kHash)
        .sized(static_cast<std::uint16_t>(dataSize))
        .u16(kAlgSha256)
        .u32(kRhNull)
        .finish();
}

Bytes getCapabilityManufacturer()
{
    return CommandBuilder(kTpm2NoSessions, cc::kGetCapability)
        .u32(kCapTpmProperties)
        .u32(kPtManufacturer)
        .u32(1)
        .finish();
}

Bytes nvDefineSpace(std::uint32_t index, std::uint16_t dataSize)
{
    ByteWriter pub(16);
    pub.write(index).write(kAlgSha256).write(kNvAttributes).write(std::uint16_t{0}).write(dataSize);
    const Bytes nvPublic = std::move(pub).take();
    return CommandBuilder(kTpm2Sessions, cc::kNvDefineSpace)
        .u32(kRhOwner)
        .passwordAuth()
        .u16(0) // empty index auth value
        .u16(static_cast<std::uint16_t>(nvPublic.size()))
        .bytes(nvPublic)
        .finish();
}

Bytes nvUndefineSpace(std::uint32_t index)
{
    return CommandBuilder(kTpm2Sessions, cc::kNvUndefineSpace)
        .u32(kRhOwner)
        .u32(index)
        .passwordAuth()
        .finish();
}

Bytes nvWrite(std::uint32_t index, std::uint16_t dataSize)
{
    return CommandBuilder(kTpm2Sessions, cc::kNvWrite)
        .u32(index) // authorised by the index's own (empty) auth value
        .u32(index)
        .passwordAuth()
        .sized(dataSize)
        .u16(0) // offset
        .finish();
}

Bytes createPrimarySigningKey(KeyType type)
{
    const Bytes pub = signingPublicArea(type);
    return CommandBuilder(kTpm2Sessions, cc::kCreatePrimary)
        .u32(kRhOwner)
        .passwordAuth()
        .u16(4) // TPM2B_SENSITIVE_CREATE: empty userAuth and data
        .u16(0)
        .u16(0)
        .u16(static_cast<std::uint16_t>(pub.size()))
        .bytes(pub)
        .u16(0) // outsideInfo
        .u32(0) // creationPCR: no selection
        .finish();
}

Bytes signDigest(std::uint32_t keyHandle)
{
    return CommandBuilder(kTpm2Sessions, cc::kSign)
        .u32(keyHandle)
        .passwordAuth()
        .sized(kSha256Size)
        .u16(kAlgNull) // use the key's own scheme
        .u16(kStHashcheck)
        .u32(kRhNull)
        .u16(0)
        .finish();
}

Bytes flushContext(std::uint32_t handle)
{
    return CommandBuilder(kTpm2NoSessions, cc::kFlushContext).u32(handle).finish();
}

} // namespace tpm2

namespace tpm12
{

using protocol::tag::kTpm12RquCommand;

Bytes startupClear()
{
    return protocol::tpm12StartupCommand(protocol::kTpm12StClear);
}

Bytes getCapabilityPcrCount()
{
    constexpr std::uint32_t kCapProperty = 5;
    constexpr std::uint32_t kCapPropPcr = 0x101;
    return CommandBuilder(kTpm12RquCommand, cc::kTpm12GetCapability)
        .u32(kCapProperty)
        .u32(4)
        .u32(kCapPropPcr)
        .finish();
}

Bytes extend(std::uint32_t pcr)
{
    constexpr std::size_t kSha1Size = 20;
    return CommandBuilder(kTpm12RquCommand, cc::kTpm12Extend).u32(pcr).pattern(kSha1Size).finish();
}

} // namespace tpm12

std::string hex(std::uint32_t value)
{
    return fmt::format("0x{:x}", value);
}

std::uint32_t responseCode(ByteView response, TpmVersion version)
{
    const auto header = protocol::parseTpmHeader(response);
    if (!header || header->size != response.size())
    {
        throw BenchError(fmt::format("malformed {}-byte TPM response", response.size()));
    }
    const bool tagOk = version == TpmVersion::Tpm2
                           ? (header->tag == protocol::tag::kTpm2NoSessions ||
                              header->tag == protocol::tag::kTpm2Sessions)
                           : (header->tag >= protocol::tag::kTpm12RspCommand &&
                              header->tag <= protocol::tag::kTpm12RspCommand + 2);
    if (!tagOk)
    {
        throw BenchError(fmt::format("TPM response with tag 0x{:04x}", header->tag));
    }
    return header->code;
}

void expectSuccess(ByteView response, TpmVersion version, std::string_view what)
{
    const std::uint32_t code = responseCode(response, version);
    if (code != 0)
    {
        throw BenchError(fmt::format("{}: TPM response code {}", what, hex(code)));
    }
}

std::uint32_t createdHandle(ByteView response)
{
    protocol::ByteReader in(response);
    in.skip(protocol::kTpmHeaderSize);
    const auto handle = in.read<std::uint32_t>();
    if (!in.ok())
    {
        throw BenchError("CreatePrimary response without a handle");
    }
    return handle;
}

} // namespace vtpm::bench

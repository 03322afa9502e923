#include "protocol/tpm_frame.hpp"

#include <array>
#include <utility>

namespace vtpm::protocol
{

std::optional<TpmHeader> parseTpmHeader(ByteView bytes) noexcept
{
    ByteReader in(bytes);
    const TpmHeader h{.tag = in.read<std::uint16_t>(), // braced init: evaluated in order
                      .size = in.read<std::uint32_t>(),
                      .code = in.read<std::uint32_t>()};
    if (!in.ok())
    {
        return std::nullopt;
    }
    return h;
}

void writeTpmHeader(ByteWriter& out, const TpmHeader& header)
{
    out.write(header.tag).write(header.size).write(header.code);
}

Bytes errorResponse(TpmVersion version, TpmResult code)
{
    ByteWriter out(kTpmHeaderSize);
    writeTpmHeader(out, {.tag = version == TpmVersion::Tpm2 ? tag::kTpm2NoSessions
                                                            : tag::kTpm12RspCommand,
                         .size = kTpmHeaderSize,
                         .code = code});
    return std::move(out).take();
}

namespace
{

bool hasSendCommandPrefix(ByteView received, TpmVersion version) noexcept
{
    if (version != TpmVersion::Tpm2)
    {
        return false;
    }
    ByteReader in(received);
    const auto firstTag = in.read<std::uint16_t>();
    if (firstTag == tag::kTpm2NoSessions || firstTag == tag::kTpm2Sessions)
    {
        return false;
    }
    ByteReader again(received);
    return again.read<std::uint32_t>() == kSendCommandCode && again.ok();
}

} // namespace

FrameProbe probeFrame(ByteView received, TpmVersion version, std::size_t maxCommandSize) noexcept
{
    if (received.size() < kTpmHeaderSize)
    {
        return {.status = FrameStatus::NeedMore, .needed = kTpmHeaderSize};
    }
    std::size_t prefix = 0;
    if (hasSendCommandPrefix(received, version))
    {
        prefix = kSendCommandPrefixSize;
        if (received.size() < prefix + kTpmHeaderSize)
        {
            return {.status = FrameStatus::NeedMore,
                    .needed = prefix + kTpmHeaderSize,
                    .prefixSize = prefix};
        }
    }
    const auto header = parseTpmHeader(received.subspan(prefix));
    const std::size_t size = header ? header->size : 0;
    if (size < kTpmHeaderSize)
    {
        return {.status = FrameStatus::Invalid, .needed = prefix + kTpmHeaderSize,
                .prefixSize = prefix};
    }
    if (size > maxCommandSize)
    {
        return {.status = FrameStatus::Oversized, .needed = prefix + size, .prefixSize = prefix};
    }
    const std::size_t total = prefix + size;
    return {.status = received.size() >= total ? FrameStatus::Complete : FrameStatus::NeedMore,
            .needed = total,
            .prefixSize = prefix};
}

std::uint8_t sendCommandLocality(ByteView frame) noexcept
{
    ByteReader in(frame);
    in.skip(4);
    return in.read<std::uint8_t>();
}

Bytes wrapSendCommandResponse(ByteView response)
{
    ByteWriter out(response.size() + 8);
    out.write(static_cast<std::uint32_t>(response.size())).write(response).write(std::uint32_t{0});
    return std::move(out).take();
}

namespace
{

Bytes shortCommand(std::uint16_t tagValue, std::uint32_t code, std::uint16_t parameter)
{
    ByteWriter out(kTpmHeaderSize + 2);
    writeTpmHeader(out, {.tag = tagValue, .size = kTpmHeaderSize + 2, .code = code});
    out.write(parameter);
    return std::move(out).take();
}

// TPM 2.0 Part 2, table "TPM_CC": the command codes are dense from 0x11f to 0x19a.
constexpr std::uint32_t kTpm2FirstCc = 0x11f;
constexpr std::array<std::string_view, 0x19a - 0x11f + 1> kTpm2Names = {
    "TPM2_NV_UndefineSpaceSpecial", "TPM2_EvictControl", "TPM2_HierarchyControl",
    "TPM2_NV_UndefineSpace", "", "TPM2_ChangeEPS", "TPM2_ChangePPS", "TPM2_Clear",
    "TPM2_ClearControl", "TPM2_ClockSet", "TPM2_HierarchyChangeAuth", "TPM2_NV_DefineSpace",
    "TPM2_PCR_Allocate", "TPM2_PCR_SetAuthPolicy", "TPM2_PP_Commands", "TPM2_SetPrimaryPolicy",
    "TPM2_FieldUpgradeStart", "TPM2_ClockRateAdjust", "TPM2_CreatePrimary",
    "TPM2_NV_GlobalWriteLock", "TPM2_GetCommandAuditDigest", "TPM2_NV_Increment",
    "TPM2_NV_SetBits", "TPM2_NV_Extend", "TPM2_NV_Write", "TPM2_NV_WriteLock",
    "TPM2_DictionaryAttackLockReset", "TPM2_DictionaryAttackParameters", "TPM2_NV_ChangeAuth",
    "TPM2_PCR_Event", "TPM2_PCR_Reset", "TPM2_SequenceComplete", "TPM2_SetAlgorithmSet",
    "TPM2_SetCommandCodeAuditStatus", "TPM2_FieldUpgradeData", "TPM2_IncrementalSelfTest",
    "TPM2_SelfTest", "TPM2_Startup", "TPM2_Shutdown", "TPM2_StirRandom",
    "TPM2_ActivateCredential", "TPM2_Certify", "TPM2_PolicyNV", "TPM2_CertifyCreation",
    "TPM2_Duplicate", "TPM2_GetTime", "TPM2_GetSessionAuditDigest", "TPM2_NV_Read",
    "TPM2_NV_ReadLock", "TPM2_ObjectChangeAuth", "TPM2_PolicySecret", "TPM2_Rewrap",
    "TPM2_Create", "TPM2_ECDH_ZGen", "TPM2_HMAC", "TPM2_Import", "TPM2_Load", "TPM2_Quote",
    "TPM2_RSA_Decrypt", "", "TPM2_HMAC_Start", "TPM2_SequenceUpdate", "TPM2_Sign",
    "TPM2_Unseal", "", "TPM2_PolicySigned", "TPM2_ContextLoad", "TPM2_ContextSave",
    "TPM2_ECDH_KeyGen", "TPM2_EncryptDecrypt", "TPM2_FlushContext", "", "TPM2_LoadExternal",
    "TPM2_MakeCredential", "TPM2_NV_ReadPublic", "TPM2_PolicyAuthorize",
    "TPM2_PolicyAuthValue", "TPM2_PolicyCommandCode", "TPM2_PolicyCounterTimer",
    "TPM2_PolicyCpHash", "TPM2_PolicyLocality", "TPM2_PolicyNameHash", "TPM2_PolicyOR",
    "TPM2_PolicyTicket", "TPM2_ReadPublic", "TPM2_RSA_Encrypt", "", "TPM2_StartAuthSession",
    "TPM2_VerifySignature", "TPM2_ECC_Parameters", "TPM2_FirmwareRead", "TPM2_GetCapability",
    "TPM2_GetRandom", "TPM2_GetTestResult", "TPM2_Hash", "TPM2_PCR_Read", "TPM2_PolicyPCR",
    "TPM2_PolicyRestart", "TPM2_ReadClock", "TPM2_PCR_Extend", "TPM2_PCR_SetAuthValue",
    "TPM2_NV_Certify", "TPM2_EventSequenceComplete", "TPM2_HashSequenceStart",
    "TPM2_PolicyPhysicalPresence", "TPM2_PolicyDuplicationSelect", "TPM2_PolicyGetDigest",
    "TPM2_TestParms", "TPM2_Commit", "TPM2_PolicyPassword", "TPM2_ZGen_2Phase",
    "TPM2_EC_Ephemeral", "TPM2_PolicyNvWritten", "TPM2_PolicyTemplate", "TPM2_CreateLoaded",
    "TPM2_PolicyAuthorizeNV", "TPM2_EncryptDecrypt2", "TPM2_AC_GetCapability", "TPM2_AC_Send",
    "TPM2_Policy_AC_SendSelect", "TPM2_CertifyX509", "TPM2_ACT_SetTimeout",
    "TPM2_ECC_Encrypt", "TPM2_ECC_Decrypt"};

// TPM 1.2 Part 2 ordinals that firmware, TrouSerS and tpm-tools commonly send.
constexpr std::pair<std::uint32_t, std::string_view> kTpm12Names[] = {
    {0x0a, "TPM_OIAP"},
    {0x0b, "TPM_OSAP"},
    {0x0d, "TPM_TakeOwnership"},
    {0x14, "TPM_Extend"},
    {0x15, "TPM_PCRRead"},
    {0x16, "TPM_Quote"},
    {0x17, "TPM_Seal"},
    {0x18, "TPM_Unseal"},
    {0x1f, "TPM_CreateWrapKey"},
    {0x41, "TPM_LoadKey2"},
    {0x46, "TPM_GetRandom"},
    {0x50, "TPM_SelfTestFull"},
    {0x53, "TPM_ContinueSelfTest"},
    {0x5d, "TPM_ForceClear"},
    {0x65, "TPM_GetCapability"},
    {0x6f, "TPM_PhysicalEnable"},
    {0x72, "TPM_PhysicalSetDeactivated"},
    {0x78, "TPM_CreateEndorsementKeyPair"},
    {0x7c, "TPM_ReadPubek"},
    {0x7d, "TPM_OwnerReadPubek"},
    {0x98, "TPM_SaveState"},
    {0x99, "TPM_Startup"},
    {0xba, "TPM_FlushSpecific"},
    {0xc8, "TPM_PCR_Reset"},
    {0xcc, "TPM_NV_DefineSpace"},
    {0xcd, "TPM_NV_WriteValue"},
    {0xcf, "TPM_NV_ReadValue"},
    {0xf1, "TPM_GetTicks"},
    {0x4000000a, "TSC_PhysicalPresence"},
};

} // namespace

Bytes tpm2StartupCommand(std::uint16_t startupType)
{
    return shortCommand(tag::kTpm2NoSessions, cc::kTpm2Startup, startupType);
}

Bytes tpm2ShutdownCommand(std::uint16_t shutdownType)
{
    return shortCommand(tag::kTpm2NoSessions, cc::kTpm2Shutdown, shutdownType);
}

Bytes tpm12StartupCommand(std::uint16_t startupType)
{
    return shortCommand(tag::kTpm12RquCommand, cc::kTpm12Startup, startupType);
}

std::string_view tpmCommandName(TpmVersion version, std::uint32_t code) noexcept
{
    if (code == cc::kSetLocality)
    {
        return "SetLocality";
    }
    if (version == TpmVersion::Tpm2)
    {
        if (code >= kTpm2FirstCc && code - kTpm2FirstCc < kTpm2Names.size())
        {
            return kTpm2Names[code - kTpm2FirstCc];
        }
        return "";
    }
    for (const auto& [ordinal, name] : kTpm12Names)
    {
        if (ordinal == code)
        {
            return name;
        }
    }
    return "";
}

} // namespace vtpm::protocol

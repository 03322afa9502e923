#include "protocol/result_codes.hpp"
#include "protocol/tpm_frame.hpp"
#include "protocol/tpm_version.hpp"
#include "test/protocol/hex.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdint>

// Expectations are the byte strings of protocol.md §2.3, §8.1 and §8.5.
using namespace vtpm::protocol;
using vtpm::test::concat;
using vtpm::test::hex;
using vtpm::test::toHex;

namespace
{

constexpr TpmVersion kBoth[] = {TpmVersion::Tpm12, TpmVersion::Tpm2};

// TPM2_Startup(SU_CLEAR), 12 bytes.
Bytes tpm2Startup()
{
    return hex("80 01 00 00 00 0c 00 00 01 44 00 00");
}

// TCG send-command prefix {8, locality, length}.
Bytes prefix(std::uint8_t locality, std::uint32_t length)
{
    ByteWriter out;
    out.write(kSendCommandCode).write(locality).write(length);
    return std::move(out).take();
}

} // namespace

TEST_CASE("parseTpmHeader reads tag, size and code", "[frame]")
{
    const auto h = parseTpmHeader(hex("80 02 00 00 01 23 00 00 01 7b ff"));
    REQUIRE(h.has_value());
    CHECK(h->tag == tag::kTpm2Sessions);
    CHECK(h->size == 0x123);
    CHECK(h->code == 0x17b);
    // The size field is not judged here.
    const auto zero = parseTpmHeader(hex("00 c1 00 00 00 00 ff ff ff ff"));
    REQUIRE(zero.has_value());
    CHECK(zero->tag == tag::kTpm12RquCommand);
    CHECK(zero->size == 0);
    CHECK(zero->code == 0xffffffffU);
    CHECK_FALSE(parseTpmHeader(hex("80 01 00 00 00 0a 00 00 01")).has_value());
    CHECK_FALSE(parseTpmHeader(ByteView{}).has_value());
}

TEST_CASE("writeTpmHeader is the inverse of parseTpmHeader", "[frame]")
{
    ByteWriter out;
    writeTpmHeader(out, {.tag = 0x00c2, .size = 0x0102a0b0, .code = 0x4000000a});
    const Bytes bytes = std::move(out).take();
    CHECK(toHex(bytes) == "00 c2 01 02 a0 b0 40 00 00 0a");
    const auto h = parseTpmHeader(bytes);
    REQUIRE(h.has_value());
    CHECK(h->tag == 0x00c2);
    CHECK(h->size == 0x0102a0b0U);
    CHECK(h->code == 0x4000000aU);
}

TEST_CASE("tag and size constants", "[frame]")
{
    CHECK(kTpmHeaderSize == 10);
    CHECK(kMaxTpmBufferSize == 4096);
    CHECK(kSendCommandPrefixSize == 9);
    CHECK(kSendCommandCode == 8);
    CHECK(tag::kTpm2NoSessions == 0x8001);
    CHECK(tag::kTpm2Sessions == 0x8002);
    CHECK(tag::kTpm12RquCommand == 0x00c1);
    CHECK(tag::kTpm12RquAuth1 == 0x00c2);
    CHECK(tag::kTpm12RquAuth2 == 0x00c3);
    CHECK(tag::kTpm12RspCommand == 0x00c4);
    CHECK(cc::kSetLocality == 0x20001000U);
    CHECK(versionName(TpmVersion::Tpm2) == "2.0");
    CHECK(versionName(TpmVersion::Tpm12) == "1.2");
}

TEST_CASE("not-running responses for both families (§2.3.1)", "[frame]")
{
    CHECK(toHex(notRunningResponse(TpmVersion::Tpm2)) == "80 01 00 00 00 0a 00 00 01 01");
    CHECK(toHex(notRunningResponse(TpmVersion::Tpm12)) == "00 c4 00 00 00 0a 00 00 00 09");
}

TEST_CASE("errorResponse carries the family tag and the given code", "[frame]")
{
    CHECK(toHex(errorResponse(TpmVersion::Tpm2, rc::kTpm2Failure)) ==
          "80 01 00 00 00 0a 00 00 01 01");
    CHECK(toHex(errorResponse(TpmVersion::Tpm12, rc::kFail)) == "00 c4 00 00 00 0a 00 00 00 09");
    // In-band SetLocality answers (§2.3.3).
    CHECK(toHex(errorResponse(TpmVersion::Tpm2, rc::kTpm2Locality)) ==
          "80 01 00 00 00 0a 00 00 01 07");
    CHECK(toHex(errorResponse(TpmVersion::Tpm12, rc::kBadLocality)) ==
          "00 c4 00 00 00 0a 00 00 00 3d");
    CHECK(toHex(errorResponse(TpmVersion::Tpm2, rc::kTpm2Insufficient)) ==
          "80 01 00 00 00 0a 00 00 00 9a");
    CHECK(toHex(errorResponse(TpmVersion::Tpm2, rc::kSuccess)) == "80 01 00 00 00 0a 00 00 00 00");
    CHECK(toHex(commandSizeResponse(TpmVersion::Tpm2)) == "80 01 00 00 00 0a 00 00 01 42");
    CHECK(toHex(commandSizeResponse(TpmVersion::Tpm12)) == "00 c4 00 00 00 0a 00 00 00 19");
}

TEST_CASE("probeFrame without prefix", "[frame]")
{
    for (const TpmVersion v : kBoth)
    {
        INFO(versionName(v));
        const Bytes cmd =
            v == TpmVersion::Tpm2 ? tpm2Startup() : hex("00 c1 00 00 00 0c 00 00 00 99 00 01");
        {
            // fewer than 10 bytes
            for (std::size_t n = 0; n < kTpmHeaderSize; ++n)
            {
                const FrameProbe p = probeFrame(ByteView(cmd).first(n), v, 4096);
                CHECK(p.status == FrameStatus::NeedMore);
                CHECK(p.needed == kTpmHeaderSize);
                CHECK(p.prefixSize == 0);
            }
        }
        {
            // header only, then one byte short
            for (const std::size_t n : {std::size_t{10}, std::size_t{11}})
            {
                const FrameProbe p = probeFrame(ByteView(cmd).first(n), v, 4096);
                CHECK(p.status == FrameStatus::NeedMore);
                CHECK(p.needed == 12);
                CHECK(p.prefixSize == 0);
            }
        }
        {
            // complete, and complete with a following frame
            FrameProbe p = probeFrame(cmd, v, 4096);
            CHECK(p.status == FrameStatus::Complete);
            CHECK(p.needed == 12);
            CHECK(p.prefixSize == 0);
            p = probeFrame(concat(cmd, cmd), v, 4096);
            CHECK(p.status == FrameStatus::Complete);
            CHECK(p.needed == 12);
        }
        {
            // header-only frame (size 10) is complete
            const FrameProbe p = probeFrame(ByteView(cmd).first(6), v, 4096);
            CHECK(p.status == FrameStatus::NeedMore);
            const Bytes tiny = concat(ByteView(cmd).first(2), hex("00 00 00 0a 00 00 00 00"));
            const FrameProbe q = probeFrame(tiny, v, 4096);
            CHECK(q.status == FrameStatus::Complete);
            CHECK(q.needed == 10);
        }
        {
            // size field below the header size is invalid
            for (const char* size : {"00 00 00 00", "00 00 00 09", "00 00 00 01"})
            {
                const Bytes bad =
                    concat(concat(ByteView(cmd).first(2), hex(size)), hex("00 00 01 44"));
                const FrameProbe p = probeFrame(bad, v, 4096);
                CHECK(p.status == FrameStatus::Invalid);
                CHECK(p.needed == kTpmHeaderSize);
                CHECK(p.prefixSize == 0);
            }
        }
        {
            // size limit
            Bytes atMax = concat(ByteView(cmd).first(2), hex("00 00 10 00 00 00 01 44"));
            atMax.resize(4096);
            FrameProbe p = probeFrame(atMax, v, 4096);
            CHECK(p.status == FrameStatus::Complete);
            CHECK(p.needed == 4096);
            p = probeFrame(ByteView(atMax).first(4095), v, 4096);
            CHECK(p.status == FrameStatus::NeedMore);
            CHECK(p.needed == 4096);
            // The same frame with a smaller buffer (SET_BUFFERSIZE 3968).
            p = probeFrame(atMax, v, 3968);
            CHECK(p.status == FrameStatus::Oversized);
            CHECK(p.needed == 4096);
            const Bytes over = concat(ByteView(cmd).first(2), hex("00 00 10 01 00 00 01 44"));
            p = probeFrame(over, v, 4096);
            CHECK(p.status == FrameStatus::Oversized);
            CHECK(p.needed == 4097);
            CHECK(p.prefixSize == 0);
            const Bytes huge = concat(ByteView(cmd).first(2), hex("ff ff ff ff 00 00 01 44"));
            p = probeFrame(huge, v, 4096);
            CHECK(p.status == FrameStatus::Oversized);
            CHECK(p.needed == 0xffffffffU);
        }
    }
}

TEST_CASE("probeFrame with the TCG send-command prefix (TPM 2 only, §2.3.2)", "[frame]")
{
    const Bytes framed = concat(prefix(3, 12), tpm2Startup());
    REQUIRE(framed.size() == 21);
    SECTION("complete")
    {
        const FrameProbe p = probeFrame(framed, TpmVersion::Tpm2, 4096);
        CHECK(p.status == FrameStatus::Complete);
        CHECK(p.needed == 21);
        CHECK(p.prefixSize == kSendCommandPrefixSize);
        CHECK(sendCommandLocality(framed) == 3);
    }
    SECTION("partial: prefix seen, header incomplete")
    {
        for (std::size_t n = 10; n < 19; ++n)
        {
            INFO(n);
            const FrameProbe p = probeFrame(ByteView(framed).first(n), TpmVersion::Tpm2, 4096);
            CHECK(p.status == FrameStatus::NeedMore);
            CHECK(p.needed == 19);
            CHECK(p.prefixSize == kSendCommandPrefixSize);
        }
    }
    SECTION("partial: header in, body missing")
    {
        const FrameProbe p = probeFrame(ByteView(framed).first(19), TpmVersion::Tpm2, 4096);
        CHECK(p.status == FrameStatus::NeedMore);
        CHECK(p.needed == 21);
        CHECK(p.prefixSize == kSendCommandPrefixSize);
    }
    SECTION("fewer than 10 bytes: no prefix decision yet")
    {
        const FrameProbe p = probeFrame(ByteView(framed).first(9), TpmVersion::Tpm2, 4096);
        CHECK(p.status == FrameStatus::NeedMore);
        CHECK(p.needed == kTpmHeaderSize);
        CHECK(p.prefixSize == 0);
    }
    SECTION("the prefix's own length field is ignored")
    {
        const Bytes lying = concat(prefix(0, 0xffffffff), tpm2Startup());
        const FrameProbe p = probeFrame(lying, TpmVersion::Tpm2, 4096);
        CHECK(p.status == FrameStatus::Complete);
        CHECK(p.needed == 21);
    }
    SECTION("oversized and invalid after a prefix")
    {
        const Bytes over = concat(prefix(0, 0), hex("80 01 00 00 10 01 00 00 01 44"));
        FrameProbe p = probeFrame(over, TpmVersion::Tpm2, 4096);
        CHECK(p.status == FrameStatus::Oversized);
        CHECK(p.needed == 9 + 4097);
        CHECK(p.prefixSize == kSendCommandPrefixSize);
        const Bytes bad = concat(prefix(0, 0), hex("80 01 00 00 00 09 00 00 01 44"));
        p = probeFrame(bad, TpmVersion::Tpm2, 4096);
        CHECK(p.status == FrameStatus::Invalid);
        CHECK(p.needed == 19);
        CHECK(p.prefixSize == kSendCommandPrefixSize);
    }
    SECTION("TPM 1.2 never sees a prefix")
    {
        // Read as a plain header: tag 0x0000, size 0x00080300 -> oversized.
        const FrameProbe p = probeFrame(framed, TpmVersion::Tpm12, 4096);
        CHECK(p.prefixSize == 0);
        CHECK(p.status == FrameStatus::Oversized);
        CHECK(p.needed == 0x00080300U);
    }
    SECTION("first word 8 is required")
    {
        Bytes notPrefix = framed;
        notPrefix[3] = 9; // command 9: not TPM_SEND_COMMAND
        const FrameProbe p = probeFrame(notPrefix, TpmVersion::Tpm2, 4096);
        CHECK(p.prefixSize == 0);
        CHECK(p.status == FrameStatus::Oversized); // header size 0x00090300
    }
    SECTION("a TPM 2 tag is never a prefix")
    {
        const FrameProbe p = probeFrame(tpm2Startup(), TpmVersion::Tpm2, 4096);
        CHECK(p.prefixSize == 0);
        const Bytes sessions = hex("80 02 00 00 00 0a 00 00 00 08");
        CHECK(probeFrame(sessions, TpmVersion::Tpm2, 4096).prefixSize == 0);
    }
}

TEST_CASE("sendCommandLocality reads byte 4", "[frame]")
{
    CHECK(sendCommandLocality(prefix(0, 12)) == 0);
    CHECK(sendCommandLocality(prefix(4, 12)) == 4);
    CHECK(sendCommandLocality(prefix(0xff, 12)) == 0xff); // no range check (swtpm has none)
    CHECK(sendCommandLocality(hex("00 00 00 08")) == 0);  // too short: 0, no overread
    CHECK(sendCommandLocality(ByteView{}) == 0);
}

TEST_CASE("wrapSendCommandResponse: length prefix and zero trailer (§2.3.2)", "[frame]")
{
    Bytes response = hex("80 01 00 00 00 23 00 00 00 00");
    response.resize(35, 0xab);
    const Bytes wrapped = wrapSendCommandResponse(response);
    REQUIRE(wrapped.size() == 43);
    CHECK(toHex(ByteView(wrapped).first(4)) == "00 00 00 23");
    CHECK(std::ranges::equal(ByteView(wrapped).subspan(4, 35), response));
    CHECK(toHex(ByteView(wrapped).last(4)) == "00 00 00 00");
    CHECK(toHex(wrapSendCommandResponse(notRunningResponse(TpmVersion::Tpm2))) ==
          "00 00 00 0a 80 01 00 00 00 0a 00 00 01 01 00 00 00 00");
    CHECK(toHex(wrapSendCommandResponse(ByteView{})) == "00 00 00 00 00 00 00 00");
}

TEST_CASE("internal Startup / Shutdown commands (§8.1, §8.5)", "[frame]")
{
    CHECK(toHex(tpm2StartupCommand(kTpm2SuClear)) == "80 01 00 00 00 0c 00 00 01 44 00 00");
    CHECK(toHex(tpm2StartupCommand(kTpm2SuState)) == "80 01 00 00 00 0c 00 00 01 44 00 01");
    CHECK(toHex(tpm2ShutdownCommand(kTpm2SuState)) == "80 01 00 00 00 0c 00 00 01 45 00 01");
    CHECK(toHex(tpm2ShutdownCommand(kTpm2SuClear)) == "80 01 00 00 00 0c 00 00 01 45 00 00");
    CHECK(toHex(tpm12StartupCommand(kTpm12StClear)) == "00 c1 00 00 00 0c 00 00 00 99 00 01");
    CHECK(toHex(tpm12StartupCommand(kTpm12StState)) == "00 c1 00 00 00 0c 00 00 00 99 00 02");
    CHECK(toHex(tpm12StartupCommand(kTpm12StDeactivated)) == "00 c1 00 00 00 0c 00 00 00 99 00 03");
    // They are well-formed frames for their family.
    CHECK(probeFrame(tpm2StartupCommand(0), TpmVersion::Tpm2, 4096).status ==
          FrameStatus::Complete);
    CHECK(probeFrame(tpm12StartupCommand(1), TpmVersion::Tpm12, 4096).status ==
          FrameStatus::Complete);
    CHECK(parseTpmHeader(tpm2ShutdownCommand(1))->code == cc::kTpm2Shutdown);
    CHECK(parseTpmHeader(tpm12StartupCommand(1))->code == cc::kTpm12Startup);
}

TEST_CASE("tpmCommandName", "[frame]")
{
    using V = TpmVersion;
    CHECK(tpmCommandName(V::Tpm2, 0x11f) == "TPM2_NV_UndefineSpaceSpecial"); // first
    CHECK(tpmCommandName(V::Tpm2, 0x131) == "TPM2_CreatePrimary");
    CHECK(tpmCommandName(V::Tpm2, cc::kTpm2Startup) == "TPM2_Startup");
    CHECK(tpmCommandName(V::Tpm2, cc::kTpm2Shutdown) == "TPM2_Shutdown");
    CHECK(tpmCommandName(V::Tpm2, 0x153) == "TPM2_Create");
    CHECK(tpmCommandName(V::Tpm2, 0x165) == "TPM2_FlushContext");
    CHECK(tpmCommandName(V::Tpm2, 0x176) == "TPM2_StartAuthSession");
    CHECK(tpmCommandName(V::Tpm2, 0x17a) == "TPM2_GetCapability");
    CHECK(tpmCommandName(V::Tpm2, 0x17b) == "TPM2_GetRandom");
    CHECK(tpmCommandName(V::Tpm2, 0x17e) == "TPM2_PCR_Read");
    CHECK(tpmCommandName(V::Tpm2, cc::kTpm2ReadClock) == "TPM2_ReadClock");
    CHECK(tpmCommandName(V::Tpm2, 0x182) == "TPM2_PCR_Extend");
    CHECK(tpmCommandName(V::Tpm2, 0x191) == "TPM2_CreateLoaded");
    CHECK(tpmCommandName(V::Tpm2, 0x19a) == "TPM2_ECC_Decrypt"); // last: table is aligned
    CHECK(tpmCommandName(V::Tpm2, 0x123).empty());               // gaps in TPM_CC
    CHECK(tpmCommandName(V::Tpm2, 0x15a).empty());
    CHECK(tpmCommandName(V::Tpm2, 0x11e).empty());
    CHECK(tpmCommandName(V::Tpm2, 0x19b).empty());
    CHECK(tpmCommandName(V::Tpm2, 0).empty());
    CHECK(tpmCommandName(V::Tpm2, 0xffffffff).empty());
    CHECK(tpmCommandName(V::Tpm2, cc::kTpm12Startup).empty()); // 1.2 ordinal under TPM 2

    CHECK(tpmCommandName(V::Tpm12, cc::kTpm12Startup) == "TPM_Startup");
    CHECK(tpmCommandName(V::Tpm12, cc::kTpm12GetTicks) == "TPM_GetTicks");
    CHECK(tpmCommandName(V::Tpm12, 0x0a) == "TPM_OIAP");
    CHECK(tpmCommandName(V::Tpm12, 0x65) == "TPM_GetCapability");
    CHECK(tpmCommandName(V::Tpm12, 0x4000000a) == "TSC_PhysicalPresence");
    CHECK(tpmCommandName(V::Tpm12, 0x01).empty());
    CHECK(tpmCommandName(V::Tpm12, cc::kTpm2Startup).empty());

    for (const TpmVersion v : kBoth)
    {
        CHECK(tpmCommandName(v, cc::kSetLocality) == "SetLocality");
    }
}

TEST_CASE("resultName", "[frame]")
{
    CHECK(resultName(rc::kSuccess) == "TPM_SUCCESS");
    CHECK(resultName(0x03) == "TPM_BAD_PARAMETER");
    CHECK(resultName(0x09) == "TPM_FAIL");
    CHECK(resultName(0x0a) == "TPM_BAD_ORDINAL");
    CHECK(resultName(0x0d) == "TPM_KEYNOTFOUND");
    CHECK(resultName(0x17) == "TPM_SIZE");
    CHECK(resultName(0x19) == "TPM_BAD_PARAM_SIZE");
    CHECK(resultName(0x1f) == "TPM_IOERROR");
    CHECK(resultName(0x20) == "TPM_ENCRYPT_ERROR");
    CHECK(resultName(0x21) == "TPM_DECRYPT_ERROR");
    CHECK(resultName(0x26) == "TPM_INVALID_POSTINIT");
    CHECK(resultName(0x28) == "TPM_BAD_KEY_PROPERTY");
    CHECK(resultName(0x2b) == "TPM_BAD_DATASIZE");
    CHECK(resultName(0x2c) == "TPM_BAD_MODE");
    CHECK(resultName(0x2e) == "TPM_BAD_VERSION");
    CHECK(resultName(0x34) == "TPM_BAD_TYPE");
    CHECK(resultName(0x3d) == "TPM_BAD_LOCALITY");
    CHECK(resultName(0x800) == "TPM_RETRY");
    CHECK(resultName(0x100) == "TPM_RC_INITIALIZE");
    CHECK(resultName(0x101) == "TPM_RC_FAILURE");
    CHECK(resultName(0x107) == "TPM_RC_LOCALITY");
    CHECK(resultName(0x9a) == "TPM_RC_INSUFFICIENT");
    CHECK(resultName(0x142) == "TPM_RC_COMMAND_SIZE");
    CHECK(resultName(0x01).empty());
    CHECK(resultName(0x801).empty());
    CHECK(resultName(0xffffffff).empty());
}

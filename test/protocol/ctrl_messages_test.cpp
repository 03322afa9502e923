#include "protocol/blob_type.hpp"
#include "protocol/ctrl_messages.hpp"
#include "test/protocol/hex.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <numeric>
#include <string_view>
#include <vector>

// Every expectation below is written from protocol.md (§2.4, §3, §4, §5), not derived from
// the implementation: byte strings are the wire images, spec rows are the §3.1 table.
using namespace vtpm::protocol;
using vtpm::test::concat;
using vtpm::test::hex;
using vtpm::test::toBytes;
using vtpm::test::toHex;

namespace
{

std::uint32_t wire(CtrlCode c)
{
    return static_cast<std::uint32_t>(c);
}

// One row of protocol.md §3.1 plus §2.4 step 2 ("needed" before acting).
struct SpecRow
{
    CtrlCode code;
    std::string_view name;
    PayloadRule rule;
    std::size_t size;
    bool needsRunning;
    bool needsStopped;
    std::size_t needed;    // ctrlMessageNeeded() for the bare code (§2.4 step 2)
    std::size_t replySize; // success reply, or its fixed header
};

constexpr PayloadRule kExact = PayloadRule::Exact;
constexpr PayloadRule kAtLeast = PayloadRule::AtLeast;

// "none" without "(exact)" in §3.1 (GET_CAPABILITY, SET_DATAFD): swtpm does not check it.
constexpr std::array<SpecRow, 19> kSpec = {{
    {CtrlCode::GetCapability, "CMD_GET_CAPABILITY", kAtLeast, 0, false, false, 4, 8},
    {CtrlCode::Init, "CMD_INIT", kExact, 4, false, false, 8, 4},
    {CtrlCode::Shutdown, "CMD_SHUTDOWN", kExact, 0, false, false, 4, 4},
    {CtrlCode::GetTpmEstablished, "CMD_GET_TPMESTABLISHED", kExact, 0, true, false, 4, 8},
    {CtrlCode::SetLocality, "CMD_SET_LOCALITY", kAtLeast, 1, false, false, 5, 4},
    {CtrlCode::HashStart, "CMD_HASH_START", kExact, 0, true, false, 4, 4},
    {CtrlCode::HashData, "CMD_HASH_DATA", kAtLeast, 4, true, false, 8, 4},
    {CtrlCode::HashEnd, "CMD_HASH_END", kExact, 0, true, false, 4, 4},
    {CtrlCode::CancelTpmCmd, "CMD_CANCEL_TPM_CMD", kExact, 0, true, false, 4, 4},
    {CtrlCode::StoreVolatile, "CMD_STORE_VOLATILE", kExact, 0, true, false, 4, 4},
    {CtrlCode::ResetTpmEstablished, "CMD_RESET_TPMESTABLISHED", kAtLeast, 1, true, false, 5, 4},
    {CtrlCode::GetStateBlob, "CMD_GET_STATEBLOB", kAtLeast, 12, true, false, 16, 16},
    {CtrlCode::SetStateBlob, "CMD_SET_STATEBLOB", kAtLeast, 12, false, true, 16, 4},
    {CtrlCode::Stop, "CMD_STOP", kExact, 0, false, false, 4, 4},
    {CtrlCode::GetConfig, "CMD_GET_CONFIG", kExact, 0, false, false, 4, 8},
    {CtrlCode::SetDataFd, "CMD_SET_DATAFD", kAtLeast, 0, false, false, 4, 4},
    {CtrlCode::SetBufferSize, "CMD_SET_BUFFERSIZE", kAtLeast, 4, false, false, 4, 16},
    {CtrlCode::GetInfo, "CMD_GET_INFO", kAtLeast, 16, false, false, 4, 12},
    {CtrlCode::LockStorage, "CMD_LOCK_STORAGE", kAtLeast, 4, false, false, 4, 4},
}};

// What a daemon does with a payload: the parser for the command, isEmptyPayload for the
// exact-zero commands, nothing (always accepted) for GET_CAPABILITY / SET_DATAFD.
bool payloadAccepted(CtrlCode code, ByteView payload)
{
    switch (code)
    {
    case CtrlCode::Init:
        return parseInitRequest(payload).has_value();
    case CtrlCode::SetLocality:
    case CtrlCode::ResetTpmEstablished:
        return parseLocalityRequest(payload).has_value();
    case CtrlCode::HashData:
        return parseHashDataRequest(payload).has_value();
    case CtrlCode::GetStateBlob:
        return parseGetStateBlobRequest(payload).has_value();
    case CtrlCode::SetStateBlob:
        return parseSetStateBlobRequest(payload).has_value();
    case CtrlCode::SetBufferSize:
        return parseSetBufferSizeRequest(payload).has_value();
    case CtrlCode::GetInfo:
        return parseGetInfoRequest(payload).has_value();
    case CtrlCode::LockStorage:
        return parseLockStorageRequest(payload).has_value();
    case CtrlCode::GetCapability:
    case CtrlCode::SetDataFd:
        return true;
    default:
        return isEmptyPayload(payload);
    }
}

// Garbage payload of n bytes; for length-prefixed commands the length field is made
// consistent with n so that only the fixed-part rule is exercised.
Bytes payloadOfSize(const SpecRow& row, std::size_t n)
{
    Bytes p(n);
    for (std::size_t i = 0; i < n; ++i)
    {
        p[i] = static_cast<std::uint8_t>(0xa5U ^ (i * 37U));
    }
    const std::size_t lengthOffset = row.code == CtrlCode::HashData       ? 0
                                     : row.code == CtrlCode::SetStateBlob ? 8
                                                                          : n;
    if (lengthOffset + 4 <= n)
    {
        const auto body = static_cast<std::uint32_t>(n - lengthOffset - 4);
        for (std::size_t i = 0; i < 4; ++i)
        {
            p[lengthOffset + i] = static_cast<std::uint8_t>(body >> (8U * (3 - i)));
        }
    }
    return p;
}

} // namespace

// ---- codes and names ------------------------------------------------------------------------

TEST_CASE("control code wire values, names and the spec table agree", "[ctrl]")
{
    std::uint32_t expected = 1;
    for (const SpecRow& row : kSpec)
    {
        INFO(row.name);
        CHECK(wire(row.code) == expected++);
        CHECK(ctrlCodeName(wire(row.code)) == row.name);
        REQUIRE(ctrlCodeFromWire(wire(row.code)).has_value());
        CHECK(*ctrlCodeFromWire(wire(row.code)) == row.code);
    }
    CHECK(kFirstCtrlCode == 0x01);
    CHECK(kLastCtrlCode == 0x13);
}

TEST_CASE("unknown control codes", "[ctrl]")
{
    for (const std::uint32_t code :
         {0x00U, 0x14U, 0x15U, 0x100U, 0x01000000U, 0x80000001U, 0xffffffffU})
    {
        INFO(code);
        CHECK_FALSE(ctrlCodeFromWire(code).has_value());
        CHECK(ctrlCodeName(code) == "CMD_UNKNOWN");
    }
}

TEST_CASE("capability bits match PTM_CAP_* (§5.1)", "[ctrl]")
{
    CHECK(cap::kInit == 0x00001);
    CHECK(cap::kShutdown == 0x00002);
    CHECK(cap::kGetTpmEstablished == 0x00004);
    CHECK(cap::kSetLocality == 0x00008);
    CHECK(cap::kHashing == 0x00010);
    CHECK(cap::kCancelTpmCmd == 0x00020);
    CHECK(cap::kStoreVolatile == 0x00040);
    CHECK(cap::kResetTpmEstablished == 0x00080);
    CHECK(cap::kGetStateBlob == 0x00100);
    CHECK(cap::kSetStateBlob == 0x00200);
    CHECK(cap::kStop == 0x00400);
    CHECK(cap::kGetConfig == 0x00800);
    CHECK(cap::kSetDataFd == 0x01000);
    CHECK(cap::kSetBufferSize == 0x02000);
    CHECK(cap::kGetInfo == 0x04000);
    CHECK(cap::kSendCommandHeader == 0x08000);
    CHECK(cap::kLockStorage == 0x10000);

    const std::uint32_t common =
        cap::kInit | cap::kShutdown | cap::kGetTpmEstablished | cap::kSetLocality | cap::kHashing |
        cap::kCancelTpmCmd | cap::kStoreVolatile | cap::kResetTpmEstablished | cap::kGetStateBlob |
        cap::kSetStateBlob | cap::kStop | cap::kGetConfig | cap::kSetDataFd | cap::kSetBufferSize |
        cap::kGetInfo | cap::kLockStorage;
    // The masks swtpm HEAD reports (§3.2).
    CHECK((common | cap::kSendCommandHeader) == 0x0001FFFFU);
    CHECK(common == 0x00017FFFU);
}

TEST_CASE("flag values (§3.3, §3.12, §3.14)", "[ctrl]")
{
    CHECK(initflag::kDeleteVolatile == 0x1);
    CHECK(configflag::kFileKey == 0x1);
    CHECK(configflag::kMigrationKey == 0x2);
    CHECK(stateflag::kDecrypted == 0x1);
    CHECK(stateflag::kEncrypted == 0x2);
}

TEST_CASE("message size constants (§2.4, §3.13, §3.17)", "[ctrl]")
{
    CHECK(kCtrlCodeSize == 4);
    CHECK(kMaxCtrlMessage == 4104);
    CHECK(kHashDataChunk == 4096);
    CHECK(kMaxStateBlobSize == 512U * 1024U);
    CHECK(kGetInfoChunk == 3072);
}

// ---- payload rules --------------------------------------------------------------------------

TEST_CASE("payloadSpec matches the §3.1 table", "[ctrl]")
{
    for (const SpecRow& row : kSpec)
    {
        INFO(row.name);
        const PayloadSpec spec = payloadSpec(row.code);
        CHECK(spec.rule == row.rule);
        CHECK(spec.size == row.size);
        CHECK(spec.needsRunning == row.needsRunning);
        CHECK(spec.needsStopped == row.needsStopped);
        CHECK_FALSE((spec.needsRunning && spec.needsStopped));
        const bool prefixed = row.code == CtrlCode::HashData || row.code == CtrlCode::SetStateBlob;
        CHECK(spec.lengthPrefixed == prefixed);
        if (row.code == CtrlCode::HashData)
        {
            CHECK(spec.lengthOffset == 0);
        }
        if (row.code == CtrlCode::SetStateBlob)
        {
            CHECK(spec.lengthOffset == 8);
        }
    }
}

TEST_CASE("every command's payload: short, exact, long and garbage lengths", "[ctrl]")
{
    for (const SpecRow& row : kSpec)
    {
        for (const std::size_t n : {std::size_t{0}, row.size == 0 ? 0 : row.size - 1, row.size,
                                    row.size + 1, row.size + 3, row.size + 100})
        {
            INFO(row.name << " payload " << n);
            const Bytes payload = payloadOfSize(row, n);
            const bool expected = row.rule == PayloadRule::Exact ? n == row.size : n >= row.size;
            CHECK(payloadAccepted(row.code, payload) == expected);
        }
    }
}

TEST_CASE("parseInitRequest: exactly 4 bytes", "[ctrl]")
{
    const Bytes ok = hex("00 00 00 01");
    REQUIRE(parseInitRequest(ok).has_value());
    CHECK(parseInitRequest(ok)->flags == initflag::kDeleteVolatile);
    CHECK(parseInitRequest(hex("ff ee dd cc"))->flags == 0xffeeddccU);
    CHECK_FALSE(parseInitRequest(hex("")).has_value());
    CHECK_FALSE(parseInitRequest(hex("00 00 00")).has_value());
    CHECK_FALSE(parseInitRequest(hex("00 00 00 01 00")).has_value());
    CHECK_FALSE(parseInitRequest(hex("00 00 00 01 00 00 00 00")).has_value());
}

TEST_CASE("parseLocalityRequest: at least 1 byte, QEMU sends 4", "[ctrl]")
{
    CHECK_FALSE(parseLocalityRequest(hex("")).has_value());
    CHECK(parseLocalityRequest(hex("03"))->locality == 3);
    CHECK(parseLocalityRequest(hex("04 00 00 00"))->locality == 4);
    CHECK(parseLocalityRequest(hex("ff 12 34 56 78"))->locality == 0xff); // range is not ours
}

TEST_CASE("parseHashDataRequest: length field must match the data", "[ctrl]")
{
    SECTION("exact")
    {
        const Bytes p = hex("00 00 00 03 61 62 63");
        const auto r = parseHashDataRequest(p);
        REQUIRE(r.has_value());
        CHECK(toHex(r->data) == "61 62 63");
        CHECK(r->data.data() == p.data() + 4); // borrowed
    }
    SECTION("empty data")
    {
        const auto r = parseHashDataRequest(hex("00 00 00 00"));
        REQUIRE(r.has_value());
        CHECK(r->data.empty());
    }
    SECTION("short header, short body, overlong body")
    {
        CHECK_FALSE(parseHashDataRequest(hex("")).has_value());
        CHECK_FALSE(parseHashDataRequest(hex("00 00 00")).has_value());
        CHECK_FALSE(parseHashDataRequest(hex("00 00 00 03 61 62")).has_value());
        CHECK_FALSE(parseHashDataRequest(hex("00 00 00 03 61 62 63 64")).has_value());
        CHECK_FALSE(parseHashDataRequest(hex("ff ff ff ff 61")).has_value());
    }
    SECTION("full 4096-byte chunk")
    {
        Bytes p = hex("00 00 10 00");
        p.resize(4 + kHashDataChunk, 0x5a);
        const auto r = parseHashDataRequest(p);
        REQUIRE(r.has_value());
        CHECK(r->data.size() == kHashDataChunk);
    }
}

TEST_CASE("parseGetStateBlobRequest: at least 12 bytes", "[ctrl]")
{
    const Bytes p = hex("00 00 00 01 00 00 00 02 00 00 01 00");
    const auto r = parseGetStateBlobRequest(p);
    REQUIRE(r.has_value());
    CHECK(r->stateFlags == stateflag::kDecrypted);
    CHECK(r->type == static_cast<std::uint32_t>(BlobType::Volatile));
    CHECK(r->offset == 0x100);
    const auto longer = parseGetStateBlobRequest(concat(p, hex("de ad")));
    REQUIRE(longer.has_value());
    CHECK(longer->offset == 0x100);
    CHECK_FALSE(parseGetStateBlobRequest(ByteView(p).first(11)).has_value());
    // Unknown blob types are judged by the daemon (TPM_FAIL), not by the parser.
    CHECK(parseGetStateBlobRequest(hex("00 00 00 00 00 00 00 09 00 00 00 00"))->type == 9);
}

TEST_CASE("parseSetStateBlobRequest: 12-byte header plus exactly `length` bytes", "[ctrl]")
{
    SECTION("with body")
    {
        const Bytes p = hex("00 00 00 02 00 00 00 01 00 00 00 02 01 02");
        const auto r = parseSetStateBlobRequest(p);
        REQUIRE(r.has_value());
        CHECK(r->stateFlags == stateflag::kEncrypted);
        CHECK(r->type == 1);
        CHECK(toHex(r->blob) == "01 02");
        CHECK(r->blob.data() == p.data() + 12);
    }
    SECTION("empty blob clears the injected state")
    {
        const auto r = parseSetStateBlobRequest(hex("00 00 00 00 00 00 00 03 00 00 00 00"));
        REQUIRE(r.has_value());
        CHECK(r->type == 3);
        CHECK(r->blob.empty());
    }
    SECTION("mismatches")
    {
        CHECK_FALSE(parseSetStateBlobRequest(hex("00 00 00 00 00 00 00 01 00 00 00")).has_value());
        CHECK_FALSE(
            parseSetStateBlobRequest(hex("00 00 00 00 00 00 00 01 00 00 00 02 01")).has_value());
        CHECK_FALSE(parseSetStateBlobRequest(hex("00 00 00 00 00 00 00 01 00 00 00 02 01 02 03"))
                        .has_value());
        CHECK_FALSE(parseSetStateBlobRequest(hex("00 00 00 00 00 00 00 01 ff ff ff ff 01 02 03"))
                        .has_value());
    }
}

TEST_CASE("parseSetBufferSizeRequest / parseLockStorageRequest: at least 4 bytes", "[ctrl]")
{
    CHECK(parseSetBufferSizeRequest(hex("00 00 0f 80"))->bufferSize == 3968);
    CHECK(parseSetBufferSizeRequest(hex("00 00 00 00 99"))->bufferSize == 0);
    CHECK_FALSE(parseSetBufferSizeRequest(hex("00 00 0f")).has_value());
    CHECK(parseLockStorageRequest(hex("00 00 01 2c"))->retries == 300);
    CHECK(parseLockStorageRequest(hex("00 00 01 2c 00 00 00 00"))->retries == 300);
    CHECK_FALSE(parseLockStorageRequest(hex("")).has_value());
}

TEST_CASE("parseGetInfoRequest: at least 16 bytes, pad ignored", "[ctrl]")
{
    const Bytes p = hex("00 00 00 00 00 00 00 03 00 00 00 10 ff ff ff ff");
    const auto r = parseGetInfoRequest(p);
    REQUIRE(r.has_value());
    CHECK(r->flags == 3);
    CHECK(r->offset == 0x10);
    CHECK(parseGetInfoRequest(hex("80 00 00 00 00 00 00 01 00 00 00 00 00 00 00 00"))->flags ==
          0x8000000000000001ULL);
    CHECK(parseGetInfoRequest(concat(p, hex("01")))->offset == 0x10);
    CHECK_FALSE(parseGetInfoRequest(ByteView(p).first(15)).has_value());
    CHECK_FALSE(parseGetInfoRequest(ByteView(p).first(12)).has_value());
}

TEST_CASE("isEmptyPayload", "[ctrl]")
{
    CHECK(isEmptyPayload(ByteView{}));
    CHECK_FALSE(isEmptyPayload(hex("00")));
}

// ---- request encoding -----------------------------------------------------------------------

TEST_CASE("request bytes of all 19 commands", "[ctrl]")
{
    const Bytes abc = toBytes("abc");
    const Bytes blob = hex("01 02");
    CHECK(toHex(encodeRequest(CtrlCode::GetCapability)) == "00 00 00 01");
    CHECK(toHex(encodeRequest(InitRequest{.flags = initflag::kDeleteVolatile})) ==
          "00 00 00 02 00 00 00 01");
    CHECK(toHex(encodeRequest(InitRequest{})) == "00 00 00 02 00 00 00 00");
    CHECK(toHex(encodeRequest(CtrlCode::Shutdown)) == "00 00 00 03");
    CHECK(toHex(encodeRequest(CtrlCode::GetTpmEstablished)) == "00 00 00 04");
    CHECK(toHex(encodeRequest(CtrlCode::SetLocality, LocalityRequest{.locality = 3})) ==
          "00 00 00 05 03 00 00 00");
    CHECK(toHex(encodeRequest(CtrlCode::HashStart)) == "00 00 00 06");
    CHECK(toHex(encodeRequest(HashDataRequest{.data = abc})) == "00 00 00 07 00 00 00 03 61 62 63");
    CHECK(toHex(encodeRequest(HashDataRequest{})) == "00 00 00 07 00 00 00 00");
    CHECK(toHex(encodeRequest(CtrlCode::HashEnd)) == "00 00 00 08");
    CHECK(toHex(encodeRequest(CtrlCode::CancelTpmCmd)) == "00 00 00 09");
    CHECK(toHex(encodeRequest(CtrlCode::StoreVolatile)) == "00 00 00 0a");
    CHECK(toHex(encodeRequest(CtrlCode::ResetTpmEstablished, LocalityRequest{.locality = 3})) ==
          "00 00 00 0b 03 00 00 00");
    CHECK(toHex(encodeRequest(
              GetStateBlobRequest{.stateFlags = stateflag::kDecrypted, .type = 2, .offset = 0})) ==
          "00 00 00 0c 00 00 00 01 00 00 00 02 00 00 00 00");
    CHECK(toHex(encodeRequest(
              SetStateBlobRequest{.stateFlags = stateflag::kEncrypted, .type = 1, .blob = blob})) ==
          "00 00 00 0d 00 00 00 02 00 00 00 01 00 00 00 02 01 02");
    CHECK(toHex(encodeRequest(CtrlCode::Stop)) == "00 00 00 0e");
    CHECK(toHex(encodeRequest(CtrlCode::GetConfig)) == "00 00 00 0f");
    CHECK(toHex(encodeRequest(CtrlCode::SetDataFd)) == "00 00 00 10");
    CHECK(toHex(encodeRequest(SetBufferSizeRequest{.bufferSize = 3968})) ==
          "00 00 00 11 00 00 0f 80");
    CHECK(toHex(encodeRequest(GetInfoRequest{.flags = 3, .offset = 0x10})) ==
          "00 00 00 12 00 00 00 00 00 00 00 03 00 00 00 10 00 00 00 00");
    CHECK(toHex(encodeRequest(LockStorageRequest{.retries = 300})) == "00 00 00 13 00 00 01 2c");
}

TEST_CASE("QEMU's migration-side SET_STATEBLOB header is 16 bytes (§9.3)", "[ctrl]")
{
    Bytes blob(0x1234, 0x77);
    const Bytes msg = encodeRequest(SetStateBlobRequest{.stateFlags = 0, .type = 2, .blob = blob});
    REQUIRE(msg.size() == 16 + blob.size());
    CHECK(toHex(ByteView(msg).first(16)) == "00 00 00 0d 00 00 00 00 00 00 00 02 00 00 12 34");
}

// ---- request round trips --------------------------------------------------------------------

TEST_CASE("request encode -> parse round trips", "[ctrl]")
{
    const auto payloadOf = [](const Bytes& msg)
    {
        return ByteView(msg).subspan(kCtrlCodeSize);
    };

    SECTION("payload-less commands")
    {
        for (const SpecRow& row : kSpec)
        {
            if (row.size != 0)
            {
                continue;
            }
            INFO(row.name);
            const Bytes msg = encodeRequest(row.code);
            REQUIRE(msg.size() == 4);
            CHECK(payloadAccepted(row.code, payloadOf(msg)));
            CHECK(ctrlMessageNeeded(msg) == 4);
        }
    }
    SECTION("INIT")
    {
        for (const std::uint32_t flags : {0U, 1U, 0xfffffffeU})
        {
            const Bytes msg = encodeRequest(InitRequest{.flags = flags});
            CHECK(ctrlMessageNeeded(msg) == msg.size());
            CHECK(parseInitRequest(payloadOf(msg))->flags == flags);
        }
    }
    SECTION("SET_LOCALITY / RESET_TPMESTABLISHED")
    {
        for (const CtrlCode code : {CtrlCode::SetLocality, CtrlCode::ResetTpmEstablished})
        {
            for (const std::uint8_t loc : std::initializer_list<std::uint8_t>{0, 3, 4, 5, 255})
            {
                const Bytes msg = encodeRequest(code, LocalityRequest{.locality = loc});
                CHECK(msg.size() == 8);
                CHECK(ctrlMessageNeeded(msg) == 5); // the 3 pad bytes come in the same write
                CHECK(parseLocalityRequest(payloadOf(msg))->locality == loc);
            }
        }
    }
    SECTION("HASH_DATA")
    {
        Bytes data(kHashDataChunk);
        std::iota(data.begin(), data.end(), std::uint8_t{0});
        for (const std::size_t n : {std::size_t{0}, std::size_t{1}, kHashDataChunk})
        {
            const Bytes msg = encodeRequest(HashDataRequest{.data = ByteView(data).first(n)});
            CHECK(msg.size() == 8 + n);
            CHECK(ctrlMessageNeeded(msg) == msg.size());
            const auto r = parseHashDataRequest(payloadOf(msg));
            REQUIRE(r.has_value());
            CHECK(std::ranges::equal(r->data, ByteView(data).first(n)));
        }
    }
    SECTION("GET_STATEBLOB")
    {
        const GetStateBlobRequest in{.stateFlags = 1, .type = 3, .offset = 0xfedcba98};
        const Bytes msg = encodeRequest(in);
        CHECK(ctrlMessageNeeded(msg) == msg.size());
        const auto r = parseGetStateBlobRequest(payloadOf(msg));
        REQUIRE(r.has_value());
        CHECK(r->stateFlags == in.stateFlags);
        CHECK(r->type == in.type);
        CHECK(r->offset == in.offset);
    }
    SECTION("SET_STATEBLOB")
    {
        const Bytes blob = hex("de ad be ef 00 01");
        const SetStateBlobRequest in{.stateFlags = 2, .type = 1, .blob = blob};
        const Bytes msg = encodeRequest(in);
        CHECK(ctrlMessageNeeded(msg) == msg.size());
        const auto r = parseSetStateBlobRequest(payloadOf(msg));
        REQUIRE(r.has_value());
        CHECK(r->stateFlags == in.stateFlags);
        CHECK(r->type == in.type);
        CHECK(std::ranges::equal(r->blob, blob));
    }
    SECTION("SET_BUFFERSIZE, LOCK_STORAGE, GET_INFO")
    {
        const Bytes sb = encodeRequest(SetBufferSizeRequest{.bufferSize = 0xffffffff});
        CHECK(parseSetBufferSizeRequest(payloadOf(sb))->bufferSize == 0xffffffff);
        CHECK(ctrlMessageNeeded(sb) <= sb.size());
        const Bytes ls = encodeRequest(LockStorageRequest{.retries = 0});
        CHECK(parseLockStorageRequest(payloadOf(ls))->retries == 0);
        CHECK(ctrlMessageNeeded(ls) <= ls.size());
        const Bytes gi =
            encodeRequest(GetInfoRequest{.flags = 0xff00000000000001ULL, .offset = 3072});
        const auto r = parseGetInfoRequest(payloadOf(gi));
        REQUIRE(r.has_value());
        CHECK(r->flags == 0xff00000000000001ULL);
        CHECK(r->offset == 3072);
        CHECK(ctrlMessageNeeded(gi) <= gi.size());
    }
}

// ---- ctrlMessageNeeded ----------------------------------------------------------------------

TEST_CASE("ctrlMessageNeeded for every code with only the code received (§2.4 step 2)", "[ctrl]")
{
    for (const SpecRow& row : kSpec)
    {
        INFO(row.name);
        const Bytes msg = encodeRequest(row.code); // just the 4-byte code
        CHECK(ctrlMessageNeeded(msg) == row.needed);
    }
}

TEST_CASE("ctrlMessageNeeded on truncated and unknown input", "[ctrl]")
{
    CHECK(ctrlMessageNeeded(ByteView{}) == 4);
    CHECK(ctrlMessageNeeded(hex("00")) == 4);
    CHECK(ctrlMessageNeeded(hex("00 00")) == 4);
    CHECK(ctrlMessageNeeded(hex("00 00 00")) == 4); // even a would-be CMD_HASH_DATA
    CHECK(ctrlMessageNeeded(hex("00 00 00 00")) == 4);
    CHECK(ctrlMessageNeeded(hex("00 00 00 14 00 00 00 10 00")) == 4);
    CHECK(ctrlMessageNeeded(hex("ff ff ff ff 00 00 00 10")) == 4);
    CHECK(ctrlMessageNeeded(hex("07 00 00 00 00 00 00 10")) == 4); // little-endian 7: unknown
}

TEST_CASE("ctrlMessageNeeded follows the HASH_DATA length field", "[ctrl]")
{
    CHECK(ctrlMessageNeeded(hex("00 00 00 07")) == 8);
    CHECK(ctrlMessageNeeded(hex("00 00 00 07 00 00")) == 8);
    CHECK(ctrlMessageNeeded(hex("00 00 00 07 00 00 00")) == 8);
    CHECK(ctrlMessageNeeded(hex("00 00 00 07 00 00 00 00")) == 8);
    CHECK(ctrlMessageNeeded(hex("00 00 00 07 00 00 00 03")) == 11);
    CHECK(ctrlMessageNeeded(hex("00 00 00 07 00 00 00 03 61")) == 11);
    CHECK(ctrlMessageNeeded(hex("00 00 00 07 00 00 10 00")) == 8 + 4096);
    // The announced length is reported as is; capping it is the daemon's business.
    CHECK(ctrlMessageNeeded(hex("00 00 00 07 ff ff ff ff")) == 8 + std::size_t{0xffffffff});
}

TEST_CASE("ctrlMessageNeeded follows the SET_STATEBLOB length field", "[ctrl]")
{
    CHECK(ctrlMessageNeeded(hex("00 00 00 0d")) == 16);
    CHECK(ctrlMessageNeeded(hex("00 00 00 0d 00 00 00 00 00 00 00 01")) == 16);
    CHECK(ctrlMessageNeeded(hex("00 00 00 0d 00 00 00 00 00 00 00 01 00 00 00")) == 16);
    CHECK(ctrlMessageNeeded(hex("00 00 00 0d 00 00 00 00 00 00 00 01 00 00 00 00")) == 16);
    CHECK(ctrlMessageNeeded(hex("00 00 00 0d 00 00 00 02 00 00 00 01 00 00 00 02")) == 18);
    // Flags and type words are not mistaken for the length.
    CHECK(ctrlMessageNeeded(hex("00 00 00 0d ff ff ff ff ff ff ff ff 00 00 00 05")) == 21);
    CHECK(ctrlMessageNeeded(hex("00 00 00 0d 00 00 00 00 00 00 00 01 00 08 00 00")) ==
          16 + kMaxStateBlobSize);
    CHECK(ctrlMessageNeeded(hex("00 00 00 0d 00 00 00 00 00 00 00 01 ff ff ff ff")) ==
          16 + std::size_t{0xffffffff});
}

TEST_CASE("ctrlMessageNeeded ignores payload bytes of fixed-size commands", "[ctrl]")
{
    CHECK(ctrlMessageNeeded(hex("00 00 00 02 ff ff ff ff")) == 8);
    CHECK(ctrlMessageNeeded(hex("00 00 00 05 03")) == 5);
    CHECK(ctrlMessageNeeded(hex("00 00 00 0c ff ff ff ff ff ff ff ff ff ff ff ff")) == 16);
    CHECK(ctrlMessageNeeded(hex("00 00 00 11 ff ff ff ff")) == 4);
    CHECK(ctrlMessageNeeded(hex("00 00 00 12 ff ff ff ff ff ff ff ff")) == 4);
}

// ---- replies --------------------------------------------------------------------------------

TEST_CASE("reply header sizes", "[ctrl]")
{
    for (const SpecRow& row : kSpec)
    {
        INFO(row.name);
        CHECK(replyHeaderSize(row.code) == row.replySize);
    }
}

TEST_CASE("4-byte error / result replies", "[ctrl]")
{
    CHECK(toHex(encodeResult(rc::kSuccess)) == "00 00 00 00");
    CHECK(toHex(encodeResult(rc::kBadOrdinal)) == "00 00 00 0a");
    CHECK(toHex(encodeResult(rc::kRetry)) == "00 00 08 00");
    CHECK(toHex(encodeResult(rc::kTpm2Failure)) == "00 00 01 01");

    const Bytes err = encodeResult(rc::kBadParameter);
    CHECK(parseResult(err) == rc::kBadParameter);
    CHECK(parseResult(hex("00 00 00 0a 01 02 03 04")) == rc::kBadOrdinal); // header of longer
    CHECK_FALSE(parseResult(hex("00 00 00")).has_value());
    CHECK_FALSE(parseResult(ByteView{}).has_value());

    // A 4-byte error reply never parses as a success structure.
    CHECK_FALSE(parseCapabilityReply(err).has_value());
    CHECK_FALSE(parseEstablishedReply(err).has_value());
    CHECK_FALSE(parseStateBlobReply(err).has_value());
    CHECK_FALSE(parseConfigReply(err).has_value());
    CHECK_FALSE(parseBufferSizeReply(err).has_value());
    CHECK_FALSE(parseInfoReply(err).has_value());
    // Not even a 4-byte "success".
    const Bytes ok = encodeResult(rc::kSuccess);
    CHECK_FALSE(parseCapabilityReply(ok).has_value());
    CHECK_FALSE(parseEstablishedReply(ok).has_value());
    CHECK_FALSE(parseStateBlobReply(ok).has_value());
    CHECK_FALSE(parseConfigReply(ok).has_value());
    CHECK_FALSE(parseBufferSizeReply(ok).has_value());
    CHECK_FALSE(parseInfoReply(ok).has_value());
}

TEST_CASE("GET_CAPABILITY reply (§3.2)", "[ctrl]")
{
    const Bytes bytes = encodeReply(CapabilityReply{.caps = 0x0001FFFF});
    CHECK(toHex(bytes) == "00 00 00 00 00 01 ff ff");
    REQUIRE(bytes.size() == kCapabilityReplySize);
    // Old QEMU reads the same 8 bytes as one u64 mask.
    ByteReader asU64(bytes);
    CHECK(asU64.read<std::uint64_t>() == 0x1FFFFULL);
    CHECK(toHex(encodeReply(CapabilityReply{.caps = 0x00017FFF})) == "00 00 00 00 00 01 7f ff");
    CHECK(toHex(encodeReply(CapabilityReply{.caps = 0x0000FFFF})) == "00 00 00 00 00 00 ff ff");

    CHECK(parseCapabilityReply(bytes)->caps == 0x0001FFFFU);
    CHECK_FALSE(parseCapabilityReply(ByteView(bytes).first(7)).has_value());
    CHECK_FALSE(parseCapabilityReply(concat(bytes, hex("00"))).has_value());
    CHECK_FALSE(parseCapabilityReply(hex("00 00 00 01 00 01 ff ff")).has_value());
}

TEST_CASE("GET_TPMESTABLISHED reply (§3.5)", "[ctrl]")
{
    CHECK(toHex(encodeReply(EstablishedReply{.result = 0, .established = true})) ==
          "00 00 00 00 01 00 00 00");
    CHECK(toHex(encodeReply(EstablishedReply{})) == "00 00 00 00 00 00 00 00");
    CHECK(toHex(encodeReply(EstablishedReply{.result = rc::kFail, .established = false})) ==
          "00 00 00 09 00 00 00 00");
    for (const bool bit : {false, true})
    {
        for (const TpmResult result : {rc::kSuccess, rc::kFail})
        {
            const auto r = parseEstablishedReply(
                encodeReply(EstablishedReply{.result = result, .established = bit}));
            REQUIRE(r.has_value()); // QEMU reads 8 bytes whatever the result
            CHECK(r->result == result);
            CHECK(r->established == bit);
        }
    }
    CHECK(parseEstablishedReply(hex("00 00 00 00 02 00 00 00"))->established);
    CHECK_FALSE(parseEstablishedReply(hex("00 00 00 00 01 00 00")).has_value());
    CHECK_FALSE(parseEstablishedReply(hex("00 00 00 00 01 00 00 00 00")).has_value());
}

TEST_CASE("GET_STATEBLOB reply (§3.12): 16-byte header always, data only on success", "[ctrl]")
{
    const Bytes blob = hex("aa bb cc");
    SECTION("success with data")
    {
        const Bytes bytes = encodeReply(StateBlobReply{
            .result = 0, .stateFlags = stateflag::kEncrypted, .totalLength = 3, .data = blob});
        CHECK(toHex(bytes) == "00 00 00 00 00 00 00 02 00 00 00 03 00 00 00 03 aa bb cc");
        const auto r = parseStateBlobReply(bytes);
        REQUIRE(r.has_value());
        CHECK(r->result == 0);
        CHECK(r->stateFlags == stateflag::kEncrypted);
        CHECK(r->totalLength == 3);
        CHECK(std::ranges::equal(r->data, blob));
    }
    SECTION("success, empty blob")
    {
        const Bytes bytes = encodeReply(StateBlobReply{});
        CHECK(toHex(bytes) == "00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00");
        REQUIRE(parseStateBlobReply(bytes).has_value());
        CHECK(parseStateBlobReply(bytes)->data.empty());
    }
    SECTION("blob absent: TPM_RETRY with zero lengths")
    {
        const Bytes bytes = encodeReply(StateBlobReply{.result = rc::kRetry, .data = {}});
        CHECK(toHex(bytes) == "00 00 08 00 00 00 00 00 00 00 00 00 00 00 00 00");
        const auto r = parseStateBlobReply(bytes);
        REQUIRE(r.has_value());
        CHECK(r->result == rc::kRetry);
        CHECK(r->data.empty());
    }
    SECTION("error never carries data, even if given some")
    {
        const Bytes bytes = encodeReply(
            StateBlobReply{.result = rc::kFail, .stateFlags = 0, .totalLength = 0, .data = blob});
        CHECK(toHex(bytes) == "00 00 00 09 00 00 00 00 00 00 00 00 00 00 00 00");
        CHECK(bytes.size() == kStateBlobReplyHeaderSize);
    }
    SECTION("offset > 0: totlength counts from the offset")
    {
        const Bytes bytes = encodeReply(StateBlobReply{.totalLength = 3, .data = blob});
        CHECK(toHex(ByteView(bytes).first(16)) ==
              "00 00 00 00 00 00 00 00 00 00 00 03 00 00 00 03");
    }
    SECTION("malformed replies")
    {
        CHECK_FALSE(
            parseStateBlobReply(hex("00 00 00 00 00 00 00 00 00 00 00 00 00 00 00")).has_value());
        // length says 3, 2 bytes follow / 4 bytes follow
        CHECK_FALSE(
            parseStateBlobReply(hex("00 00 00 00 00 00 00 00 00 00 00 03 00 00 00 03 aa bb"))
                .has_value());
        CHECK_FALSE(
            parseStateBlobReply(hex("00 00 00 00 00 00 00 00 00 00 00 03 00 00 00 03 aa bb cc dd"))
                .has_value());
        // error header followed by data
        CHECK_FALSE(parseStateBlobReply(hex("00 00 00 09 00 00 00 00 00 00 00 00 00 00 00 01 aa"))
                        .has_value());
    }
}

TEST_CASE("GET_CONFIG reply (§3.14)", "[ctrl]")
{
    const std::uint32_t both = configflag::kFileKey | configflag::kMigrationKey;
    const Bytes bytes = encodeReply(ConfigReply{.flags = both});
    CHECK(toHex(bytes) == "00 00 00 00 00 00 00 03");
    CHECK(parseConfigReply(bytes)->flags == both);
    CHECK(parseConfigReply(encodeReply(ConfigReply{}))->flags == 0);
    CHECK_FALSE(parseConfigReply(hex("00 00 00 00 00 00 00")).has_value());
    CHECK_FALSE(parseConfigReply(hex("00 00 00 03 00 00 00 03")).has_value());
}

TEST_CASE("SET_BUFFERSIZE reply (§3.16)", "[ctrl]")
{
    const BufferSizeReply in{.bufferSize = 3968, .minSize = 2808, .maxSize = 4096};
    const Bytes bytes = encodeReply(in);
    CHECK(toHex(bytes) == "00 00 00 00 00 00 0f 80 00 00 0a f8 00 00 10 00");
    const auto r = parseBufferSizeReply(bytes);
    REQUIRE(r.has_value());
    CHECK(r->bufferSize == in.bufferSize);
    CHECK(r->minSize == in.minSize);
    CHECK(r->maxSize == in.maxSize);
    CHECK_FALSE(parseBufferSizeReply(ByteView(bytes).first(15)).has_value());
    CHECK_FALSE(parseBufferSizeReply(concat(bytes, hex("00"))).has_value());
}

TEST_CASE("GET_INFO reply (§3.17)", "[ctrl]")
{
    const Bytes chunk = hex("7b 7d 00"); // "{}" plus the NUL
    const Bytes bytes = encodeReply(InfoReply{.totalLength = 3, .chunk = chunk});
    CHECK(toHex(bytes) == "00 00 00 00 00 00 00 03 00 00 00 03 7b 7d 00");
    const auto r = parseInfoReply(bytes);
    REQUIRE(r.has_value());
    CHECK(r->totalLength == 3);
    CHECK(std::ranges::equal(r->chunk, chunk));

    // A middle chunk of a 150-byte string.
    const Bytes part(kGetInfoChunk, 0x41);
    const Bytes big = encodeReply(InfoReply{.totalLength = 150 + 3072, .chunk = part});
    CHECK(toHex(ByteView(big).first(12)) == "00 00 00 00 00 00 0c 96 00 00 0c 00");
    REQUIRE(parseInfoReply(big).has_value());
    CHECK(parseInfoReply(big)->chunk.size() == kGetInfoChunk);

    CHECK_FALSE(parseInfoReply(hex("00 00 00 00 00 00 00 03 00 00 00 03 7b 7d")).has_value());
    CHECK_FALSE(parseInfoReply(hex("00 00 00 00 00 00 00 03 00 00 00 02 7b 7d 00")).has_value());
    CHECK_FALSE(parseInfoReply(hex("00 00 00 00 00 00 00 03 00 00 00")).has_value());
    CHECK_FALSE(parseInfoReply(hex("00 00 00 03 00 00 00 00 00 00 00 00")).has_value());
}

TEST_CASE("reply encode -> parse round trips over many values", "[ctrl]")
{
    const std::array<std::uint32_t, 6> values = {0, 1, 0x7f, 0x800, 0x80000000U, 0xffffffffU};
    for (const std::uint32_t v : values)
    {
        INFO(v);
        CHECK(parseResult(encodeResult(v)) == v);
        CHECK(parseCapabilityReply(encodeReply(CapabilityReply{.caps = v}))->caps == v);
        CHECK(parseConfigReply(encodeReply(ConfigReply{.flags = v}))->flags == v);
        const auto b = parseBufferSizeReply(
            encodeReply(BufferSizeReply{.bufferSize = v, .minSize = ~v, .maxSize = v ^ 0x55U}));
        REQUIRE(b.has_value());
        CHECK(b->bufferSize == v);
        CHECK(b->minSize == ~v);
        CHECK(b->maxSize == (v ^ 0x55U));
        const auto e =
            parseEstablishedReply(encodeReply(EstablishedReply{.result = v, .established = true}));
        REQUIRE(e.has_value());
        CHECK(e->result == v);
        const Bytes data(v % 300, 0x3c);
        const auto s = parseStateBlobReply(encodeReply(
            StateBlobReply{.result = 0, .stateFlags = v, .totalLength = ~v, .data = data}));
        REQUIRE(s.has_value());
        CHECK(s->stateFlags == v);
        CHECK(s->totalLength == ~v);
        CHECK(s->data.size() == data.size());
        const auto i = parseInfoReply(encodeReply(InfoReply{.totalLength = v, .chunk = data}));
        REQUIRE(i.has_value());
        CHECK(i->totalLength == v);
        CHECK(i->chunk.size() == data.size());
    }
}

// ---- blob types (used by GET/SET_STATEBLOB) -------------------------------------------------

TEST_CASE("blob types, names and wire values (§3.12, §6.1)", "[ctrl]")
{
    CHECK(blobTypeFromWire(1) == BlobType::Permanent);
    CHECK(blobTypeFromWire(2) == BlobType::Volatile);
    CHECK(blobTypeFromWire(3) == BlobType::SaveState);
    for (const std::uint32_t bad : {0U, 4U, 0x100U, 0xffffffffU})
    {
        CHECK_FALSE(blobTypeFromWire(bad).has_value());
    }
    CHECK(blobName(BlobType::Permanent) == "permall");
    CHECK(blobName(BlobType::Volatile) == "volatilestate");
    CHECK(blobName(BlobType::SaveState) == "savestate");
    for (const BlobType t : kAllBlobTypes)
    {
        CHECK(blobTypeFromName(blobName(t)) == t);
    }
    CHECK_FALSE(blobTypeFromName("volatile").has_value());
    CHECK_FALSE(blobTypeFromName("").has_value());
}

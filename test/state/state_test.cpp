// Codec tests for the swtpm blob container (protocol.md §7.4, §7.5).
#include "protocol/blob_type.hpp"
#include "state/stored_blob.hpp"
#include "test_util.hpp"

#include <catch2/catch.hpp>

#include <cstdint>
#include <initializer_list>
#include <vector>

namespace
{

using vtpm::protocol::Bytes;
using vtpm::protocol::ByteView;
using vtpm::protocol::ByteWriter;
namespace rc = vtpm::protocol::rc;
namespace st = vtpm::state;
using vtpm::state::test::toBytes;

Bytes bytes(std::initializer_list<int> values)
{
    Bytes out;
    for (int v : values)
    {
        out.push_back(static_cast<std::uint8_t>(v));
    }
    return out;
}

// A header with every field chosen by the test, followed by payload; totlen is patched to the
// real length unless the test passes its own.
Bytes makeBlob(std::uint8_t version, std::uint8_t minVersion, std::uint16_t hdrSize,
               std::uint16_t flags, ByteView payload, std::optional<std::uint32_t> totLen = {})
{
    ByteWriter out;
    out.write(version).write(minVersion).write(hdrSize).write(flags);
    out.write(totLen.value_or(static_cast<std::uint32_t>(10 + payload.size())));
    out.write(payload);
    return std::move(out).take();
}

Bytes tlv(std::uint16_t tag, ByteView value)
{
    ByteWriter out;
    st::appendTlv(out, tag, value);
    return std::move(out).take();
}

Bytes concat(std::initializer_list<Bytes> parts)
{
    Bytes out;
    for (const Bytes& part : parts)
    {
        out.insert(out.end(), part.begin(), part.end());
    }
    return out;
}

Bytes pattern(std::size_t n)
{
    Bytes out(n);
    for (std::size_t i = 0; i < n; ++i)
    {
        out[i] = static_cast<std::uint8_t>((i * 31U + 7U) & 0xffU);
    }
    return out;
}

} // namespace

TEST_CASE("stored blob byte layout is pinned", "[stored_blob]")
{
    const Bytes blob = st::encodeStoredBlob(toBytes("abc"));
    CHECK(blob == bytes({0x02, 0x01, 0x00, 0x0a, 0x00, 0x00, 0x00, 0x00, 0x00, 0x13, 0x00, 0x01,
                         0x00, 0x00, 0x00, 0x03, 0x61, 0x62, 0x63}));
}

TEST_CASE("stored blob round trips", "[stored_blob]")
{
    for (std::size_t size : {std::size_t{0}, std::size_t{1}, std::size_t{1299}, std::size_t{70000}})
    {
        CAPTURE(size);
        const Bytes plain = pattern(size);
        const Bytes blob = st::encodeStoredBlob(plain);
        CHECK(blob.size() == size + 16);
        const st::DecodeResult decoded = st::decodeStoredBlob(blob);
        REQUIRE(decoded.ok());
        CHECK(decoded.plaintext == plain);
    }
}

TEST_CASE("stored blob header errors carry swtpm's result codes", "[stored_blob]")
{
    const Bytes data = tlv(st::tag::kData, toBytes("xyz"));
    struct Case
    {
        const char* name;
        Bytes blob;
        vtpm::protocol::TpmResult code;
    };
    const std::vector<Case> cases = {
        {"empty", {}, rc::kBadParameter},
        {"9 bytes", bytes({2, 1, 0, 10, 0, 0, 0, 0, 0}), rc::kBadParameter},
        {"totlen too big", makeBlob(2, 1, 10, 0, data, 100), rc::kBadParameter},
        {"totlen too small", makeBlob(2, 1, 10, 0, data, 10), rc::kBadParameter},
        {"min_version 3", makeBlob(2, 3, 10, 0, data), rc::kBadVersion},
        {"min_version 255", makeBlob(9, 255, 10, 0, data), rc::kBadVersion},
        {"hdrsize 8", makeBlob(2, 1, 8, 0, data), rc::kBadDataSize},
        {"hdrsize 12", makeBlob(2, 1, 12, 0, data), rc::kBadDataSize},
        {"version 0", makeBlob(0, 0, 10, 0, data), rc::kBadVersion},
        // swtpm's check order: length, totlen, min_version, hdrsize.
        {"totlen before min_version", makeBlob(2, 3, 10, 0, data, 5), rc::kBadParameter},
        {"min_version before hdrsize", makeBlob(2, 3, 12, 0, data), rc::kBadVersion},
    };
    for (const Case& c : cases)
    {
        CAPTURE(c.name);
        const st::DecodeResult decoded = st::decodeStoredBlob(c.blob);
        REQUIRE_FALSE(decoded.ok());
        CHECK(decoded.error->code == c.code);
        CHECK_FALSE(decoded.error->message.empty());
        CHECK(decoded.plaintext.empty());
    }
}

TEST_CASE("parseBlobHeader exposes fields and payload", "[stored_blob]")
{
    const Bytes blob = makeBlob(2, 1, 10, 0x1234, toBytes("payload"));
    const st::HeaderResult parsed = st::parseBlobHeader(blob);
    REQUIRE_FALSE(parsed.error);
    CHECK(parsed.header.version == 2);
    CHECK(parsed.header.minVersion == 1);
    CHECK(parsed.header.hdrSize == 10);
    CHECK(parsed.header.flags == 0x1234);
    CHECK(parsed.header.totLen == 17);
    CHECK(Bytes(parsed.payload.begin(), parsed.payload.end()) == toBytes("payload"));
}

TEST_CASE("findTlv uses the first match and ignores order", "[tlv]")
{
    const Bytes seq = concat({tlv(3, toBytes("mac")), tlv(1, toBytes("first")),
                              tlv(1, toBytes("second")), tlv(6, toBytes("iv"))});
    const auto data = st::findTlv(seq, 1);
    REQUIRE(data);
    CHECK(Bytes(data->begin(), data->end()) == toBytes("first"));
    const auto iv = st::findTlv(seq, 6);
    REQUIRE(iv);
    CHECK(Bytes(iv->begin(), iv->end()) == toBytes("iv"));
    CHECK_FALSE(st::findTlv(seq, 2));
    CHECK_FALSE(st::findTlv({}, 1));
}

TEST_CASE("findTlv finds zero-length values", "[tlv]")
{
    const Bytes seq = concat({tlv(1, {}), tlv(2, toBytes("x"))});
    const auto data = st::findTlv(seq, 1);
    REQUIRE(data);
    CHECK(data->empty());
    CHECK(st::findTlv(seq, 2));
}

TEST_CASE("findTlv stops at an element that runs past the end", "[tlv]")
{
    SECTION("the wanted element itself is truncated")
    {
        Bytes seq = tlv(1, toBytes("abcdef"));
        seq.pop_back();
        CHECK_FALSE(st::findTlv(seq, 1));
    }
    SECTION("an earlier element overruns, hiding a later one")
    {
        // Tag 9 claims 100 bytes; the tag-1 element after it is inside that claimed range.
        const Bytes seq = concat({bytes({0, 9, 0, 0, 0, 100}), tlv(1, toBytes("abc"))});
        CHECK_FALSE(st::findTlv(seq, 1));
    }
    SECTION("a length near 2^32 does not wrap")
    {
        const Bytes seq = concat({bytes({0, 9, 0xff, 0xff, 0xff, 0xff}), tlv(1, toBytes("a"))});
        CHECK_FALSE(st::findTlv(seq, 1));
    }
    SECTION("a partial element header at the end")
    {
        const Bytes seq = concat({tlv(2, toBytes("a")), bytes({0, 1, 0})});
        CHECK_FALSE(st::findTlv(seq, 1));
        CHECK(st::findTlv(seq, 2)); // elements before the damage are still found
    }
}

TEST_CASE("appendTlv layout", "[tlv]")
{
    CHECK(tlv(0x0102, toBytes("hi")) == bytes({0x01, 0x02, 0, 0, 0, 2, 'h', 'i'}));
    CHECK(tlv(7, {}) == bytes({0, 7, 0, 0, 0, 0}));
}

TEST_CASE("stored blob payload rules without a state key", "[stored_blob]")
{
    SECTION("ENCRYPTED flag needs a key")
    {
        const Bytes payload =
            concat({tlv(st::tag::kEncryptedData, pattern(32)), tlv(st::tag::kHmac, pattern(32)),
                    tlv(st::tag::kIvecEncryptedData, pattern(16))});
        const auto decoded =
            st::decodeStoredBlob(makeBlob(2, 1, 10, st::blobflag::kEncrypted, payload));
        REQUIRE_FALSE(decoded.ok());
        CHECK(decoded.error->code == rc::kKeyNotFound);
        CHECK_THAT(decoded.error->message, Catch::Contains("state key"));
    }
    SECTION("no DATA element")
    {
        const auto decoded =
            st::decodeStoredBlob(makeBlob(2, 1, 10, 0, tlv(st::tag::kEncryptedData, pattern(8))));
        REQUIRE_FALSE(decoded.ok());
        CHECK(decoded.error->code == rc::kFail);
        CHECK_THAT(decoded.error->message, Catch::Contains("DATA"));
    }
    SECTION("header only (version 2) has no DATA element")
    {
        const auto decoded = st::decodeStoredBlob(makeBlob(2, 1, 10, 0, {}));
        REQUIRE_FALSE(decoded.ok());
        CHECK(decoded.error->code == rc::kFail);
    }
    SECTION("other elements before DATA are skipped")
    {
        const Bytes payload = concat({tlv(42, toBytes("future")), tlv(1, toBytes("state"))});
        const auto decoded = st::decodeStoredBlob(makeBlob(2, 1, 10, 0, payload));
        REQUIRE(decoded.ok());
        CHECK(decoded.plaintext == toBytes("state"));
    }
    SECTION("a newer version that v2 readers may read is read as TLVs")
    {
        const auto decoded = st::decodeStoredBlob(makeBlob(3, 2, 10, 0, tlv(1, toBytes("v3"))));
        REQUIRE(decoded.ok());
        CHECK(decoded.plaintext == toBytes("v3"));
    }
}

TEST_CASE("version 1 legacy blobs carry raw plaintext", "[stored_blob]")
{
    const Bytes raw = pattern(100);
    const auto decoded = st::decodeStoredBlob(makeBlob(1, 1, 10, 0, raw));
    REQUIRE(decoded.ok());
    CHECK(decoded.plaintext == raw);

    const auto empty = st::decodeStoredBlob(makeBlob(1, 1, 10, 0, {}));
    REQUIRE(empty.ok());
    CHECK(empty.plaintext.empty());

    const auto encrypted = st::decodeStoredBlob(makeBlob(1, 1, 10, st::blobflag::kEncrypted, raw));
    REQUIRE_FALSE(encrypted.ok());
    CHECK(encrypted.error->code == rc::kKeyNotFound);
}

TEST_CASE("migration blob byte layout is pinned", "[migration]")
{
    const st::MigrationBlob mig = st::encodeMigrationBlob(toBytes("abc"));
    CHECK(mig.stateFlags == 0);
    CHECK(mig.blob == bytes({0x02, 0x01, 0x00, 0x0a, 0x00, 0x04, 0x00, 0x00, 0x00,
                             0x19, 0x00, 0x04, 0x00, 0x00, 0x00, 0x09, // MIGRATION_DATA, 9 bytes
                             0x00, 0x01, 0x00, 0x00, 0x00, 0x03,       // DATA, 3 bytes
                             0x61, 0x62, 0x63}));
}

TEST_CASE("migration blob round trips", "[migration]")
{
    for (std::size_t size : {std::size_t{1}, std::size_t{1299}, std::size_t{9000}})
    {
        CAPTURE(size);
        const Bytes plain = pattern(size);
        const st::MigrationBlob mig = st::encodeMigrationBlob(plain);
        for (std::uint32_t flags : {0U, vtpm::protocol::stateflag::kDecrypted})
        {
            const st::MigrationDecodeResult decoded = st::decodeMigrationBlob(mig.blob, flags);
            REQUIRE(decoded.ok());
            CHECK_FALSE(decoded.empty);
            CHECK(decoded.plaintext == plain);
        }
    }
}

TEST_CASE("migration blob: empty and header-only blobs clear", "[migration]")
{
    const auto none = st::decodeMigrationBlob({}, 0);
    CHECK(none.ok());
    CHECK(none.empty);

    for (std::uint16_t flags : {std::uint16_t{0}, std::uint16_t{0x1f}})
    {
        const auto headerOnly = st::decodeMigrationBlob(makeBlob(2, 1, 10, flags, {}), 0);
        CHECK(headerOnly.ok());
        CHECK(headerOnly.empty);
        CHECK(headerOnly.plaintext.empty());
    }
}

TEST_CASE("migration blob errors", "[migration]")
{
    const Bytes good = st::encodeMigrationBlob(toBytes("abc")).blob;
    const Bytes inner = tlv(st::tag::kData, toBytes("abc"));

    SECTION("header errors")
    {
        Bytes truncated = good;
        truncated.pop_back();
        CHECK(st::decodeMigrationBlob(truncated, 0).error->code == rc::kBadParameter);
        CHECK(st::decodeMigrationBlob(bytes({2, 1, 0}), 0).error->code == rc::kBadParameter);
        CHECK(st::decodeMigrationBlob(makeBlob(2, 3, 10, 4, inner), 0).error->code ==
              rc::kBadVersion);
        CHECK(st::decodeMigrationBlob(makeBlob(2, 1, 11, 4, inner), 0).error->code ==
              rc::kBadDataSize);
        // A header-only blob with a bad header is still rejected, not treated as "clear".
        CHECK(st::decodeMigrationBlob(makeBlob(2, 1, 10, 0, {}, 11), 0).error->code ==
              rc::kBadParameter);
    }
    SECTION("migration-encrypted needs the migration key")
    {
        const Bytes payload = concat({tlv(st::tag::kEncryptedMigrationData, pattern(32)),
                                      tlv(st::tag::kHmac, pattern(32)),
                                      tlv(st::tag::kIvecEncryptedMigrationData, pattern(16))});
        const auto decoded = st::decodeMigrationBlob(
            makeBlob(2, 1, 10, st::blobflag::kMigrationEncrypted | st::blobflag::kMigrationData,
                     payload),
            vtpm::protocol::stateflag::kDecrypted);
        REQUIRE_FALSE(decoded.ok());
        CHECK(decoded.error->code == rc::kKeyNotFound);
        CHECK_THAT(decoded.error->message, Catch::Contains("migration key"));
    }
    SECTION("state-encrypted by header flag needs the state key")
    {
        const Bytes payload =
            tlv(st::tag::kMigrationData, tlv(st::tag::kEncryptedData, pattern(32)));
        const auto decoded = st::decodeMigrationBlob(
            makeBlob(2, 1, 10, st::blobflag::kEncrypted | st::blobflag::kMigrationData, payload),
            0);
        REQUIRE_FALSE(decoded.ok());
        CHECK(decoded.error->code == rc::kKeyNotFound);
        CHECK_THAT(decoded.error->message, Catch::Contains("state key"));
    }
    SECTION("state-encrypted by request flag needs the state key")
    {
        const auto decoded = st::decodeMigrationBlob(good, vtpm::protocol::stateflag::kEncrypted);
        REQUIRE_FALSE(decoded.ok());
        CHECK(decoded.error->code == rc::kKeyNotFound);
    }
    SECTION("a raw storage blob lacks the MIGRATION_DATA layer")
    {
        const auto decoded = st::decodeMigrationBlob(st::encodeStoredBlob(toBytes("abc")), 0);
        REQUIRE_FALSE(decoded.ok());
        CHECK(decoded.error->code == rc::kFail);
        CHECK_THAT(decoded.error->message, Catch::Contains("not a migration blob"));
    }
    SECTION("MIGRATION_DATA without an inner DATA element")
    {
        const Bytes payload = tlv(st::tag::kMigrationData, tlv(st::tag::kHmac, pattern(32)));
        const auto decoded =
            st::decodeMigrationBlob(makeBlob(2, 1, 10, st::blobflag::kMigrationData, payload), 0);
        REQUIRE_FALSE(decoded.ok());
        CHECK(decoded.error->code == rc::kFail);
    }
    SECTION("a truncated inner sequence")
    {
        Bytes innerCut = inner;
        innerCut.pop_back();
        const auto decoded =
            st::decodeMigrationBlob(makeBlob(2, 1, 10, st::blobflag::kMigrationData,
                                             tlv(st::tag::kMigrationData, innerCut)),
                                    0);
        REQUIRE_FALSE(decoded.ok());
        CHECK(decoded.error->code == rc::kFail);
    }
    SECTION("a migration blob is not a storage blob")
    {
        const auto decoded = st::decodeStoredBlob(good);
        REQUIRE_FALSE(decoded.ok());
        CHECK(decoded.error->code == rc::kFail);
    }
}

TEST_CASE("version 1 migration blobs are raw plaintext", "[migration]")
{
    const Bytes raw = pattern(64);
    const auto decoded = st::decodeMigrationBlob(makeBlob(1, 1, 10, 0, raw), 0);
    REQUIRE(decoded.ok());
    CHECK_FALSE(decoded.empty);
    CHECK(decoded.plaintext == raw);
}

#include "protocol/byte_io.hpp"
#include "test/protocol/hex.hpp"

#include <catch2/catch.hpp>

#include <cstdint>
#include <limits>

using namespace vtpm::protocol;
using vtpm::test::hex;
using vtpm::test::toHex;

namespace
{
constexpr std::size_t kHuge = std::numeric_limits<std::size_t>::max();
}

TEST_CASE("ByteReader reads big-endian integers of every width in sequence", "[byte_io]")
{
    const Bytes data = hex("01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f");
    ByteReader in(data);
    CHECK(in.read<std::uint8_t>() == 0x01);
    CHECK(in.read<std::uint16_t>() == 0x0203);
    CHECK(in.read<std::uint32_t>() == 0x04050607U);
    CHECK(in.read<std::uint64_t>() == 0x08090a0b0c0d0e0fULL);
    CHECK(in.ok());
    CHECK(in.remaining() == 0);
    CHECK(in.position() == 15);
}

TEST_CASE("ByteReader keeps the high bits of wide values", "[byte_io]")
{
    const Bytes data = hex("ff fe fd fc fb fa f9 f8 80 00 00 01");
    ByteReader in(data);
    CHECK(in.read<std::uint64_t>() == 0xfffefdfcfbfaf9f8ULL);
    CHECK(in.read<std::uint32_t>() == 0x80000001U);
    CHECK(in.ok());
}

TEST_CASE("ByteReader failure is sticky and does not advance", "[byte_io]")
{
    const Bytes data = hex("aa bb cc");
    ByteReader in(data);
    CHECK(in.read<std::uint32_t>() == 0); // needs 4, has 3
    CHECK_FALSE(in.ok());
    CHECK(in.position() == 0);
    CHECK(in.remaining() == 3);
    // Enough bytes remain for these, but the reader stays failed.
    CHECK(in.read<std::uint8_t>() == 0);
    CHECK(in.read<std::uint16_t>() == 0);
    CHECK(in.bytes(1).empty());
    CHECK(in.bytes(0).empty());
    CHECK(in.rest().empty());
    in.skip(0);
    CHECK_FALSE(in.ok());
    CHECK(in.position() == 0);
}

TEST_CASE("ByteReader on empty input", "[byte_io]")
{
    ByteReader in(ByteView{});
    CHECK(in.ok());
    CHECK(in.remaining() == 0);
    CHECK(in.rest().empty());
    CHECK(in.ok()); // taking zero bytes of nothing is fine
    CHECK(in.read<std::uint8_t>() == 0);
    CHECK_FALSE(in.ok());
}

TEST_CASE("ByteReader never wraps on huge lengths", "[byte_io]")
{
    const Bytes data = hex("01 02 03 04");
    SECTION("bytes(SIZE_MAX) after a partial read")
    {
        ByteReader in(data);
        CHECK(in.read<std::uint8_t>() == 1);
        // pos_ + n would wrap to 0 here; the reader must still refuse.
        CHECK(in.bytes(kHuge).empty());
        CHECK_FALSE(in.ok());
        CHECK(in.position() == 1);
    }
    SECTION("skip(SIZE_MAX - 1) after a partial read")
    {
        ByteReader in(data);
        in.skip(2);
        CHECK(in.ok());
        in.skip(kHuge - 1);
        CHECK_FALSE(in.ok());
        CHECK(in.position() == 2);
        CHECK(in.remaining() == 2);
    }
    SECTION("one past the end")
    {
        ByteReader in(data);
        CHECK(in.bytes(5).empty());
        CHECK_FALSE(in.ok());
    }
}

TEST_CASE("ByteReader bytes, rest and skip borrow without copying", "[byte_io]")
{
    const Bytes data = hex("10 11 12 13 14 15 16");
    ByteReader in(data);
    in.skip(1);
    const ByteView two = in.bytes(2);
    REQUIRE(two.size() == 2);
    CHECK(two.data() == data.data() + 1);
    CHECK(toHex(two) == "11 12");
    const ByteView none = in.bytes(0);
    CHECK(none.empty());
    CHECK(in.ok());
    const ByteView rest = in.rest();
    CHECK(rest.data() == data.data() + 3);
    CHECK(toHex(rest) == "13 14 15 16");
    CHECK(in.remaining() == 0);
    CHECK(in.position() == data.size());
    CHECK(in.ok());
    CHECK(in.rest().empty()); // rest at the end is empty but not a failure
    CHECK(in.ok());
    in.skip(1);
    CHECK_FALSE(in.ok());
}

TEST_CASE("ByteWriter writes big-endian integers and raw bytes", "[byte_io]")
{
    ByteWriter out;
    out.write(std::uint8_t{0x01})
        .write(std::uint16_t{0x0203})
        .write(std::uint32_t{0x04050607})
        .write(std::uint64_t{0x08090a0b0c0d0e0fULL});
    const Bytes raw = hex("aa bb");
    out.write(ByteView(raw)).zeros(3).write(ByteView{});
    CHECK(out.size() == 20);
    const Bytes bytes = std::move(out).take();
    CHECK(toHex(bytes) == "01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f aa bb 00 00 00");
}

TEST_CASE("ByteWriter reserve does not change the size", "[byte_io]")
{
    ByteWriter out(64);
    CHECK(out.size() == 0);
    out.zeros(0);
    CHECK(std::move(out).take().empty());
}

TEST_CASE("ByteWriter and ByteReader round-trip extreme values", "[byte_io]")
{
    ByteWriter out;
    out.write(std::uint8_t{0xff}).write(std::uint16_t{0xffff}).write(std::uint32_t{0});
    out.write(std::numeric_limits<std::uint64_t>::max());
    const Bytes bytes = std::move(out).take();
    ByteReader in(bytes);
    CHECK(in.read<std::uint8_t>() == 0xff);
    CHECK(in.read<std::uint16_t>() == 0xffff);
    CHECK(in.read<std::uint32_t>() == 0);
    CHECK(in.read<std::uint64_t>() == std::numeric_limits<std::uint64_t>::max());
    CHECK(in.ok());
    CHECK(in.remaining() == 0);
}

TEST_CASE("ByteWriter patch32 back-fills in range and refuses out of range", "[byte_io]")
{
    ByteWriter out;
    out.zeros(10);
    SECTION("at the start")
    {
        CHECK(out.patch32(0, 0x11223344));
        CHECK(toHex(std::move(out).take()) == "11 22 33 44 00 00 00 00 00 00");
    }
    SECTION("ending exactly at the end")
    {
        CHECK(out.patch32(6, 0xa1b2c3d4));
        CHECK(toHex(std::move(out).take()) == "00 00 00 00 00 00 a1 b2 c3 d4");
    }
    SECTION("one byte too far")
    {
        CHECK_FALSE(out.patch32(7, 0xffffffff));
        CHECK(toHex(std::move(out).take()) == "00 00 00 00 00 00 00 00 00 00");
    }
    SECTION("offset at and past the end")
    {
        CHECK_FALSE(out.patch32(10, 1));
        CHECK_FALSE(out.patch32(11, 1));
        CHECK_FALSE(out.patch32(kHuge, 1));     // offset + 4 would wrap
        CHECK_FALSE(out.patch32(kHuge - 2, 1)); // ditto
        CHECK(out.size() == 10);
    }
}

TEST_CASE("ByteWriter patch32 on a short buffer", "[byte_io]")
{
    ByteWriter empty;
    CHECK_FALSE(empty.patch32(0, 1));
    ByteWriter three;
    three.zeros(3);
    CHECK_FALSE(three.patch32(0, 1));
    ByteWriter four;
    four.zeros(4);
    CHECK(four.patch32(0, 0x0000100a));
    CHECK(toHex(std::move(four).take()) == "00 00 10 0a");
}

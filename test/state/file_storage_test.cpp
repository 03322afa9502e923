// The linear image backend (protocol.md §7.3): swtpm's header layout byte for byte, a packed
// section layout (swtpm's compaction needs it) after any sequence of stores and removes, and
// the header checks that keep a damaged image from being formatted over.
#include "state/file_storage.hpp"
#include "test_util.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

namespace
{

namespace fs = std::filesystem;
using vtpm::protocol::BlobType;
using vtpm::protocol::Bytes;
namespace st = vtpm::state;
using st::test::readFile;
using st::test::TempDir;
using st::test::toBytes;
using st::test::writeFile;

std::uint32_t le32(const Bytes& bytes, std::size_t at)
{
    return static_cast<std::uint32_t>(bytes.at(at)) |
           (static_cast<std::uint32_t>(bytes.at(at + 1)) << 8U) |
           (static_cast<std::uint32_t>(bytes.at(at + 2)) << 16U) |
           (static_cast<std::uint32_t>(bytes.at(at + 3)) << 24U);
}

// Sections and holes tile [192, end) exactly: no overlap, no gap, and the file covers them.
void checkPacked(const st::ImageTable& table, std::uint64_t fileSize)
{
    std::vector<std::pair<std::uint64_t, std::uint64_t>> extents;
    for (const st::ImageEntry& entry : table)
    {
        if (entry.used())
        {
            CHECK(entry.dataLength <= entry.sectionLength);
            extents.emplace_back(entry.offset, entry.end());
        }
    }
    std::sort(extents.begin(), extents.end());
    std::uint64_t cursor = st::kImageHeaderSize;
    for (const auto& [begin, end] : extents)
    {
        CHECK(begin == cursor);
        cursor = end;
    }
    CHECK(fileSize >= cursor);
}

st::StorageOptions withFsync(st::FsyncPolicy policy)
{
    st::StorageOptions options;
    options.fsync = policy;
    return options;
}

} // namespace

TEST_CASE("image header parsing", "[file_storage]")
{
    CHECK(st::parseImageHeader({}).blank);
    CHECK(st::parseImageHeader(Bytes(192, 0)).blank);
    CHECK(st::parseImageHeader(Bytes(50, 0)).blank);
    const auto truncated = st::parseImageHeader(toBytes("swtpmlin"));
    CHECK_FALSE(truncated.blank);
    REQUIRE(truncated.error);

    st::ImageTable table{};
    table.at(0) = {.offset = 192, .dataLength = 1315, .sectionLength = 2048};
    table.at(1) = {.offset = 2240, .dataLength = 8986, .sectionLength = 16384};
    const auto bytes = st::serializeImageHeader(table);
    const Bytes header(bytes.begin(), bytes.end());
    // The on-disk magic reads "nilmptws" (protocol.md §7.3), then version 1, pad, 192 LE.
    CHECK(Bytes(header.begin(), header.begin() + 12) ==
          Bytes{0x6e, 0x69, 0x6c, 0x6d, 0x70, 0x74, 0x77, 0x73, 1, 0, 0xc0, 0});
    CHECK(le32(header, 12) == 192);
    CHECK(le32(header, 16) == 1315);
    CHECK(le32(header, 20) == 2048);
    CHECK(le32(header, 24) == 2240);
    const auto parsed = st::parseImageHeader(header);
    REQUIRE_FALSE(parsed.error);
    CHECK(parsed.table == table);

    Bytes bad = header;
    bad[0] ^= 1;
    CHECK_THAT(*st::parseImageHeader(bad).error, Catch::Contains("magic"));
    bad = header;
    bad[8] = 2;
    CHECK_THAT(*st::parseImageHeader(bad).error, Catch::Contains("version"));
    bad = header;
    bad[10] = 0xc1;
    CHECK_THAT(*st::parseImageHeader(bad).error, Catch::Contains("header size"));
}

TEST_CASE("a new image gets swtpm's layout", "[file_storage]")
{
    const TempDir dir;
    const fs::path image = dir.path() / "tpm.img";
    st::FileStorage storage(image, {});
    storage.init();
    CHECK(readFile(image).size() == st::kImageHeaderSize);
    const Bytes permall(1299, 0x11); // 1315 bytes in swtpm's format, as in protocol.md §7.3
    REQUIRE_FALSE(storage.store(BlobType::Permanent, permall));
    const Bytes file = readFile(image);
    const std::uint32_t length = le32(file, 16);
    CHECK(le32(file, 12) == 192);
    CHECK(length == 1315 + 6 + st::kStorageDigestSize);
    CHECK(le32(file, 20) == 2048); // power of two, as swtpm allocates
    CHECK(st::decodeStoredBlob(Bytes(file.begin() + 192, file.begin() + 192 + length)).plaintext ==
          permall);
    CHECK(storage.storedSize(BlobType::Permanent) == length);
    CHECK(storage.describe(BlobType::Permanent) == "file://" + image.string() + " (permall)");
    checkPacked(storage.table(), file.size());
}

TEST_CASE("the layout stays packed and bounded through many stores and removes",
          "[file_storage]")
{
    const TempDir dir;
    const fs::path image = dir.path() / "tpm.img";
    st::FileStorage storage(image, withFsync(st::FsyncPolicy::Never));
    storage.init();
    std::mt19937 random(7); // NOLINT(cert-msc32-c,cert-msc51-cpp): reproducible on purpose
    std::array<std::optional<Bytes>, 3> expected;
    for (int i = 0; i < 600; ++i)
    {
        const auto type = static_cast<BlobType>(1 + random() % 3);
        const std::size_t slot = static_cast<std::size_t>(type) - 1;
        if (random() % 5 == 0)
        {
            REQUIRE_FALSE(storage.remove(type, false));
            expected.at(slot).reset();
        }
        else
        {
            const std::size_t size = 100 + random() % (i % 50 == 0 ? 20000 : 3000);
            Bytes plain(size, static_cast<std::uint8_t>(i));
            REQUIRE_FALSE(storage.store(type, plain));
            expected.at(slot) = plain;
        }
        checkPacked(storage.table(), readFile(image).size());
    }
    CHECK(readFile(image).size() < 256 * 1024);
    st::FileStorage reopened(image, {});
    reopened.init();
    for (BlobType type : vtpm::protocol::kAllBlobTypes)
    {
        const auto& want = expected.at(static_cast<std::size_t>(type) - 1);
        const st::LoadResult loaded = reopened.load(type);
        if (want)
        {
            REQUIRE(loaded.status == st::LoadStatus::Ok);
            CHECK(loaded.plaintext == *want);
        }
        else
        {
            CHECK(loaded.status == st::LoadStatus::NotFound);
        }
    }
}

TEST_CASE("a damaged or foreign image is refused, never formatted", "[file_storage]")
{
    const TempDir dir;
    const fs::path image = dir.path() / "tpm.img";
    SECTION("foreign content")
    {
        writeFile(image, Bytes(4096, 0xee));
    }
    SECTION("truncated header")
    {
        writeFile(image, toBytes("nilmptws"));
    }
    const Bytes before = readFile(image);
    st::FileStorage storage(image, {});
    CHECK_THROWS_WITH(storage.init(), Catch::Contains(image.string()));
    CHECK(readFile(image) == before);
}

TEST_CASE("the image lock excludes other processes", "[file_storage][lock]")
{
    const TempDir dir;
    const fs::path image = dir.path() / "tpm.img";
    st::FileStorage storage(image, {});
    storage.init();
    REQUIRE(storage.lock(0));
    CHECK(storage.locked());
    const int status = st::test::runInChild(
        [&]
        {
            st::FileStorage other(image, {});
            other.init();
            std::string error;
            if (other.lock(2, &error))
            {
                return 1;
            }
            return error.find("locked by another process") != std::string::npos ? 0 : 2;
        });
    CHECK(status == 0);
    storage.unlock();
    CHECK_FALSE(storage.locked());
    const int after = st::test::runInChild(
        [&]
        {
            st::FileStorage other(image, {});
            other.init();
            return other.lock(0) ? 0 : 1;
        });
    CHECK(after == 0);
}

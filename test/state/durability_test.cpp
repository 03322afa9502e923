// Crash safety and corruption handling of both storage backends (doc/durability.md): a store
// killed after any of its steps leaves the old or the new blob, never a torn one; a damaged
// blob falls back to the last good copy (loudly) or is an error naming the file, never NotFound.
#include "state/dir_storage.hpp"
#include "state/file_storage.hpp"
#include "state/storage.hpp"
#include "test_util.hpp"

#include <catch2/catch.hpp>

#include <csignal>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <unistd.h>

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

enum class Backend
{
    Dir,
    File,
};

const char* nameOf(Backend backend)
{
    return backend == Backend::Dir ? "dir" : "file";
}

st::StorageUri uriFor(Backend backend, const TempDir& dir)
{
    if (backend == Backend::Dir)
    {
        return {.kind = st::StorageUri::Kind::Dir, .path = dir.path()};
    }
    return {.kind = st::StorageUri::Kind::File, .path = dir.path() / "nvram.img"};
}

std::unique_ptr<st::Storage> open(Backend backend, const TempDir& dir,
                                  st::StorageOptions options = {})
{
    auto storage = st::openStorage(uriFor(backend, dir), options);
    storage->init();
    return storage;
}

Bytes payload(std::string_view tag, std::size_t size)
{
    Bytes out(size, std::uint8_t{0x5a});
    for (std::size_t i = 0; i < tag.size() && i < size; ++i)
    {
        out[i] = static_cast<std::uint8_t>(tag[i]);
    }
    return out;
}

// The steps each backend reports, in order, and whether the new content is committed (visible
// to a load) once the step has run.
struct Step
{
    std::string name;
    bool committed;
};

std::vector<Step> stepsOf(Backend backend)
{
    if (backend == Backend::Dir)
    {
        return {{"temp-written", false}, {"temp-synced", false},  {"backup-linked", false},
                {"backup-renamed", false}, {"renamed", true},     {"dir-synced", true}};
    }
    return {{"grown", false},         {"section-written", false}, {"section-synced", false},
            {"header-written", true}, {"header-synced", true}};
}

Bytes stored(const Bytes& plaintext)
{
    return st::encodeForStorage(plaintext, nullptr, "").blob;
}

st::StorageOptions withFsync(st::FsyncPolicy policy)
{
    st::StorageOptions options;
    options.fsync = policy;
    return options;
}

st::StorageOptions withBackup(bool backup)
{
    st::StorageOptions options;
    options.backup = backup;
    return options;
}

} // namespace

TEST_CASE("backend URIs and fsync policy names", "[durability]")
{
    const st::StorageUri dir = st::parseStorageUri("dir:///var/lib/vtpm/vm1");
    CHECK(dir.kind == st::StorageUri::Kind::Dir);
    CHECK(dir.path == fs::path("/var/lib/vtpm/vm1"));
    const st::StorageUri file = st::parseStorageUri("file:///dev/vg0/tpm");
    CHECK(file.kind == st::StorageUri::Kind::File);
    CHECK(file.path == fs::path("/dev/vg0/tpm"));
    CHECK_THROWS_WITH(st::parseStorageUri("file://relative/img"), Catch::Contains("absolute"));
    CHECK_THROWS_WITH(st::parseStorageUri("nbd://host/x"), Catch::Contains("nbd://host/x"));
    CHECK_THROWS_AS(st::parseStorageUri("dir://"), std::invalid_argument);

    for (auto policy : {st::FsyncPolicy::Always, st::FsyncPolicy::Deferred, st::FsyncPolicy::Never})
    {
        CHECK(st::parseFsyncPolicy(st::fsyncPolicyName(policy)) == policy);
    }
    CHECK_FALSE(st::parseFsyncPolicy("sometimes"));
    CHECK(st::StorageOptions{}.fsync == st::FsyncPolicy::Deferred);
    CHECK(st::StorageOptions{}.backup);
}

TEST_CASE("every policy stores, loads and flushes on both backends", "[durability]")
{
    for (Backend backend : {Backend::Dir, Backend::File})
    {
        for (auto policy :
             {st::FsyncPolicy::Always, st::FsyncPolicy::Deferred, st::FsyncPolicy::Never})
        {
            INFO(nameOf(backend) << " fsync=" << st::fsyncPolicyName(policy));
            const TempDir dir;
            {
                auto storage = open(backend, dir, withFsync(policy));
                for (int i = 0; i < 20; ++i)
                {
                    REQUIRE_FALSE(storage->store(BlobType::Permanent,
                                                 payload("gen" + std::to_string(i), 1300)));
                    REQUIRE_FALSE(storage->store(BlobType::Volatile, payload("vol", 9000)));
                }
                storage->flush();
                REQUIRE_FALSE(storage->remove(BlobType::Volatile, true));
            }
            auto reopened = open(backend, dir);
            const st::LoadResult loaded = reopened->load(BlobType::Permanent);
            REQUIRE(loaded.status == st::LoadStatus::Ok);
            CHECK_FALSE(loaded.usedBackup);
            CHECK(loaded.plaintext == payload("gen19", 1300));
            CHECK(reopened->load(BlobType::Volatile).status == st::LoadStatus::NotFound);
        }
    }
}

TEST_CASE("a store killed after any step leaves the old or the new blob", "[durability][crash]")
{
    for (Backend backend : {Backend::Dir, Backend::File})
    {
        for (auto policy : {st::FsyncPolicy::Always, st::FsyncPolicy::Deferred})
        {
            for (const Step& step : stepsOf(backend))
            {
                for (bool sigkill : {false, true})
                {
                    for (std::size_t history : {0U, 1U, 3U})
                    {
                        INFO(nameOf(backend) << " fsync=" << st::fsyncPolicyName(policy)
                                             << " killed after " << step.name
                                             << (sigkill ? " (SIGKILL)" : " (_exit)")
                                             << " after " << history << " earlier stores");
                        const TempDir dir;
                        // Earlier generations, in a scope of their own: no thread or open
                        // descriptor of the parent's storage survives into the fork.
                        {
                            auto storage = open(backend, dir);
                            for (std::size_t i = 0; i < history; ++i)
                            {
                                REQUIRE_FALSE(storage->store(
                                    BlobType::Permanent,
                                    payload("old" + std::to_string(i), 1000 + 300 * i)));
                            }
                        }
                        const Bytes old = payload("old" + std::to_string(history - 1),
                                                  history == 0 ? 0 : 1000 + 300 * (history - 1));
                        const Bytes fresh = payload("new", 3000); // grows: a new section
                        const std::string target = step.name;
                        const int status = st::test::runInChild(
                            [&]
                            {
                                st::StorageOptions options = withFsync(policy);
                                options.testHook = [&](std::string_view at)
                                {
                                    if (at == target)
                                    {
                                        if (sigkill)
                                        {
                                            ::kill(::getpid(), SIGKILL);
                                        }
                                        ::_exit(42);
                                    }
                                };
                                auto storage = open(backend, dir, options);
                                if (history > 0 &&
                                    storage->load(BlobType::Permanent).status !=
                                        vtpm::state::LoadStatus::Ok)
                                {
                                    return 3;
                                }
                                return storage->store(BlobType::Permanent, fresh) ? 1 : 0;
                            });
                        REQUIRE(status != 1);
                        REQUIRE(status != 3);
                        const bool killed = status != 0;

                        auto storage = open(backend, dir);
                        const st::LoadResult loaded = storage->load(BlobType::Permanent);
                        CHECK_FALSE(loaded.usedBackup);
                        if (killed && !step.committed)
                        {
                            if (history == 0)
                            {
                                CHECK(loaded.status == st::LoadStatus::NotFound);
                            }
                            else
                            {
                                REQUIRE(loaded.status == st::LoadStatus::Ok);
                                CHECK(loaded.plaintext == old);
                            }
                        }
                        else
                        {
                            REQUIRE(loaded.status == st::LoadStatus::Ok);
                            CHECK(loaded.plaintext == fresh);
                        }
                        // Whatever the crash left behind, the next store and load work.
                        REQUIRE_FALSE(storage->store(BlobType::Permanent, payload("after", 700)));
                        CHECK(storage->load(BlobType::Permanent).plaintext ==
                              payload("after", 700));
                    }
                }
            }
        }
    }
}

TEST_CASE("dir: a damaged file falls back to .bak, or is an error naming it",
          "[durability][corruption]")
{
    const Bytes v1 = payload("version-1", 1300);
    const Bytes v2 = payload("version-2", 1300);
    struct Damage
    {
        std::string what;
        std::function<void(const fs::path&)> apply;
    };
    std::vector<Damage> damages;
    for (std::size_t offset : {0U, 3U, 5U, 9U, 10U, 15U, 16U, 700U, 1309U})
    {
        damages.push_back({"bit flip at " + std::to_string(offset),
                           [offset](const fs::path& path)
                           {
                               Bytes bytes = readFile(path);
                               bytes.at(offset) ^= 0x10;
                               writeFile(path, bytes);
                           }});
    }
    for (std::uintmax_t length : {0U, 1U, 9U, 10U, 16U, 1000U, 1315U})
    {
        damages.push_back({"truncated to " + std::to_string(length),
                           [length](const fs::path& path) { fs::resize_file(path, length); }});
    }

    for (const Damage& damage : damages)
    {
        INFO(damage.what);
        const TempDir dir;
        st::DirStorage storage(dir.path(), st::StorageOptions{});
        storage.init();
        REQUIRE_FALSE(storage.store(BlobType::Permanent, v1));
        REQUIRE_FALSE(storage.store(BlobType::Permanent, v2));
        REQUIRE(readFile(storage.backupPathOf(BlobType::Permanent)) == stored(v1));
        const fs::path path = storage.pathOf(BlobType::Permanent);
        damage.apply(path);
        const Bytes damaged = readFile(path);

        SECTION("backup disabled: an error naming the file")
        {
            st::DirStorage strict(dir.path(), withBackup(false));
            strict.init();
            const st::LoadResult loaded = strict.load(BlobType::Permanent);
            REQUIRE(loaded.status == st::LoadStatus::Error);
            CHECK_THAT(loaded.error->message, Catch::Contains(path.string()));
        }
        SECTION("backup enabled: the last good copy, and the damaged file is kept aside")
        {
            st::DirStorage fresh(dir.path(), st::StorageOptions{});
            fresh.init();
            const st::LoadResult loaded = fresh.load(BlobType::Permanent);
            REQUIRE(loaded.status == st::LoadStatus::Ok);
            CHECK(loaded.usedBackup);
            CHECK(loaded.plaintext == v1);

            const Bytes v3 = payload("version-3", 1400);
            REQUIRE_FALSE(fresh.store(BlobType::Permanent, v3));
            CHECK(readFile(path.string() + ".corrupt") == damaged);
            CHECK(readFile(fresh.backupPathOf(BlobType::Permanent)) == stored(v1));
            const Bytes v4 = payload("version-4", 1400);
            REQUIRE_FALSE(fresh.store(BlobType::Permanent, v4));
            CHECK(readFile(fresh.backupPathOf(BlobType::Permanent)) == stored(v3));
            CHECK(fresh.load(BlobType::Permanent).plaintext == v4);
        }
        SECTION("backup damaged as well: an error naming both")
        {
            writeFile(storage.backupPathOf(BlobType::Permanent), toBytes("garbage"));
            st::DirStorage fresh(dir.path(), st::StorageOptions{});
            fresh.init();
            const st::LoadResult loaded = fresh.load(BlobType::Permanent);
            REQUIRE(loaded.status == st::LoadStatus::Error);
            CHECK_THAT(loaded.error->message, Catch::Contains(path.string()) &&
                                                  Catch::Contains(path.string() + ".bak"));
            CHECK(readFile(path) == damaged); // untouched
        }
    }
}

TEST_CASE("dir: .bak without its file is restored; remove deletes both", "[durability]")
{
    const TempDir dir;
    st::DirStorage storage(dir.path(), st::StorageOptions{});
    storage.init();
    const Bytes v1 = payload("one", 500);
    REQUIRE_FALSE(storage.store(BlobType::Permanent, v1));
    REQUIRE_FALSE(storage.store(BlobType::Permanent, payload("two", 500)));
    // swtpm's own backup swap renames permall to permall.bak first; a crash there looks so.
    fs::remove(storage.pathOf(BlobType::Permanent));

    st::DirStorage fresh(dir.path(), st::StorageOptions{});
    fresh.init();
    const st::LoadResult loaded = fresh.load(BlobType::Permanent);
    REQUIRE(loaded.status == st::LoadStatus::Ok);
    CHECK(loaded.usedBackup);
    CHECK(loaded.plaintext == v1);
    CHECK(readFile(fresh.pathOf(BlobType::Permanent)) == stored(v1));

    REQUIRE_FALSE(fresh.store(BlobType::Volatile, payload("vol", 100)));
    REQUIRE_FALSE(fresh.store(BlobType::Volatile, payload("vol2", 100)));
    REQUIRE(fs::exists(fresh.backupPathOf(BlobType::Volatile)));
    REQUIRE_FALSE(fresh.remove(BlobType::Volatile, true));
    CHECK_FALSE(fs::exists(fresh.backupPathOf(BlobType::Volatile)));
    CHECK(fresh.load(BlobType::Volatile).status == st::LoadStatus::NotFound);

    SECTION("without backup, a lone .bak is ignored")
    {
        fs::remove(fresh.pathOf(BlobType::Permanent));
        st::DirStorage strict(dir.path(), withBackup(false));
        strict.init();
        CHECK(strict.load(BlobType::Permanent).status == st::LoadStatus::NotFound);
    }
}

TEST_CASE("file: a damaged section falls back to its backup copy, or is an error",
          "[durability][corruption]")
{
    const Bytes v1 = payload("version-1", 1300);
    const Bytes v2 = payload("version-2", 1300);
    const TempDir dir;
    const fs::path image = dir.path() / "nvram.img";
    st::ImageEntry primary;
    {
        st::FileStorage storage(image, {});
        storage.init();
        REQUIRE_FALSE(storage.store(BlobType::Permanent, v1));
        REQUIRE_FALSE(storage.store(BlobType::Permanent, v2));
        REQUIRE_FALSE(storage.store(BlobType::Volatile, payload("vol", 9000)));
        primary = storage.table().at(0);
    }
    const Bytes pristine = readFile(image);

    // Every outcome allowed: init refuses naming the image, the load returns v2 (the damage
    // missed what matters) or v1 from the backup copy, or an error naming the image. Never
    // NotFound, never a write to the damaged image.
    auto check = [&](const std::string& what, bool backupMustSave)
    {
        INFO(what);
        const Bytes damaged = readFile(image);
        for (bool backup : {true, false})
        {
            INFO("backup " << backup);
            st::FileStorage storage(image, withBackup(backup));
            try
            {
                storage.init();
            }
            catch (const std::exception& e)
            {
                CHECK_FALSE(backupMustSave);
                CHECK_THAT(e.what(), Catch::Contains(image.string()));
                continue;
            }
            const st::LoadResult loaded = storage.load(BlobType::Permanent);
            REQUIRE(loaded.status != st::LoadStatus::NotFound);
            if (loaded.status == st::LoadStatus::Ok)
            {
                CHECK((loaded.plaintext == v2 ||
                       (backup && loaded.usedBackup && loaded.plaintext == v1)));
            }
            else
            {
                CHECK_THAT(loaded.error->message, Catch::Contains(image.string()));
                CHECK_FALSE((backup && backupMustSave));
            }
        }
        CHECK(readFile(image) == damaged);
    };

    // Bit flips in every header byte (magic, version, size, each entry field)...
    for (std::size_t offset = 0; offset < st::kImageHeaderSize; ++offset)
    {
        for (std::uint8_t mask : {std::uint8_t{0x01}, std::uint8_t{0x80}})
        {
            Bytes bytes = pristine;
            bytes.at(offset) ^= mask;
            writeFile(image, bytes);
            check("header bit flip at " + std::to_string(offset), offset >= 12);
        }
    }
    // ...and anywhere in the permall section (the digest element catches payload flips),
    for (std::size_t at : {0U, 3U, 9U, 10U, 16U, 600U, 1309U, 1320U, 1340U})
    {
        Bytes bytes = pristine;
        bytes.at(primary.offset + at) ^= 0x04;
        writeFile(image, bytes);
        check("section bit flip at +" + std::to_string(at), true);
    }
    // ...and truncations anywhere.
    for (std::size_t length :
         {std::size_t{1}, std::size_t{100}, std::size_t{191}, std::size_t{192},
          std::size_t{primary.offset} + 5, std::size_t{primary.offset} + 1300,
          pristine.size() - 1})
    {
        Bytes bytes(pristine.begin(), pristine.begin() + static_cast<std::ptrdiff_t>(length));
        writeFile(image, bytes);
        check("truncated to " + std::to_string(length), false);
    }
}

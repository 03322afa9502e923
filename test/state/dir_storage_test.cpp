// DirStorage against a real temporary directory (protocol.md §7.2, §7.7).
#include "state/dir_storage.hpp"
#include "test_util.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <stdexcept>
#include <system_error>
#include <thread>

#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

namespace
{

namespace fs = std::filesystem;
using vtpm::protocol::BlobType;
using vtpm::protocol::Bytes;
using vtpm::protocol::TpmVersion;
namespace rc = vtpm::protocol::rc;
namespace st = vtpm::state;
using st::test::readFile;
using st::test::TempDir;
using st::test::toBytes;
using st::test::writeFile;

mode_t modeOf(const fs::path& path)
{
    struct stat s
    {
    };
    REQUIRE(::stat(path.c_str(), &s) == 0);
    return s.st_mode & 07777;
}

bool hasTempFiles(const fs::path& dir)
{
    return std::any_of(fs::begin(fs::directory_iterator(dir)), fs::end(fs::directory_iterator()),
                       [](const fs::directory_entry& entry)
                       { return entry.path().filename().string().starts_with("TMP"); });
}

// Sets the umask for one scope, so tests can prove modes do not depend on it.
class UmaskGuard
{
public:
    explicit UmaskGuard(mode_t mask) : old_(::umask(mask)) {}
    ~UmaskGuard() { ::umask(old_); }
    UmaskGuard(const UmaskGuard&) = delete;
    UmaskGuard& operator=(const UmaskGuard&) = delete;
    UmaskGuard(UmaskGuard&&) = delete;
    UmaskGuard& operator=(UmaskGuard&&) = delete;

private:
    mode_t old_;
};

st::DirStorage openStorage(const TempDir& dir, std::optional<mode_t> mode = std::nullopt)
{
    st::DirStorage storage(dir.path(), TpmVersion::Tpm2, mode);
    storage.init();
    return storage;
}

} // namespace

TEST_CASE("file names follow swtpm for both TPM versions", "[dir_storage]")
{
    const st::DirStorage tpm2("/var/lib/x", TpmVersion::Tpm2, std::nullopt);
    CHECK(tpm2.pathOf(BlobType::Permanent) == "/var/lib/x/tpm2-00.permall");
    CHECK(tpm2.pathOf(BlobType::Volatile) == "/var/lib/x/tpm2-00.volatilestate");
    CHECK(tpm2.pathOf(BlobType::SaveState) == "/var/lib/x/tpm2-00.savestate");

    const st::DirStorage tpm12("/var/lib/x", TpmVersion::Tpm12, std::nullopt);
    CHECK(tpm12.pathOf(BlobType::Permanent) == "/var/lib/x/tpm-00.permall");
    CHECK(tpm12.pathOf(BlobType::Volatile) == "/var/lib/x/tpm-00.volatilestate");
    CHECK(tpm12.pathOf(BlobType::SaveState) == "/var/lib/x/tpm-00.savestate");
}

TEST_CASE("init rejects a missing directory or a file, naming the path", "[dir_storage]")
{
    const TempDir dir;
    const fs::path missing = dir.path() / "nope";
    st::DirStorage a(missing, TpmVersion::Tpm2, std::nullopt);
    CHECK_THROWS_WITH(a.init(), Catch::Contains(missing.string()));

    const fs::path file = dir.path() / "file";
    writeFile(file, toBytes("x"));
    st::DirStorage b(file, TpmVersion::Tpm2, std::nullopt);
    CHECK_THROWS_AS(b.init(), std::system_error);
    CHECK_THROWS_WITH(b.init(), Catch::Contains(file.string()));
}

TEST_CASE("operations before init fail cleanly", "[dir_storage]")
{
    const TempDir dir;
    st::DirStorage storage(dir.path(), TpmVersion::Tpm2, std::nullopt);
    CHECK(storage.load(BlobType::Permanent).status == st::LoadStatus::Error);
    CHECK(storage.store(BlobType::Permanent, toBytes("x")));
    CHECK(storage.remove(BlobType::Permanent, false));
    CHECK_FALSE(storage.lock(0));
    CHECK_THROWS_AS(storage.storedSize(BlobType::Permanent), std::logic_error);
}

TEST_CASE("store, load, remove for every blob type and both versions", "[dir_storage]")
{
    for (TpmVersion version : {TpmVersion::Tpm2, TpmVersion::Tpm12})
    {
        const TempDir dir;
        st::DirStorage storage(dir.path(), version, std::nullopt);
        storage.init();
        for (BlobType type : vtpm::protocol::kAllBlobTypes)
        {
            const Bytes plain =
                toBytes(std::string("state of ") + std::string(vtpm::protocol::blobName(type)));
            CHECK(storage.load(type).status == st::LoadStatus::NotFound);
            CHECK_FALSE(storage.storedSize(type));

            REQUIRE_FALSE(storage.store(type, plain));
            // swtpm's format plus vtpmd's SHA-256 element (st::kStorageDigestTag).
            CHECK(readFile(storage.pathOf(type)) == st::encodeForStorage(plain, nullptr, "").blob);
            CHECK(storage.storedSize(type) == plain.size() + 16 + 6 + st::kStorageDigestSize);

            const st::LoadResult loaded = storage.load(type);
            REQUIRE(loaded.status == st::LoadStatus::Ok);
            CHECK_FALSE(loaded.error);
            CHECK(loaded.plaintext == plain);

            // Overwrite with something shorter: no stale tail may survive.
            REQUIRE_FALSE(storage.store(type, toBytes("x")));
            CHECK(storage.load(type).plaintext == toBytes("x"));

            REQUIRE_FALSE(storage.remove(type, true));
            CHECK(storage.load(type).status == st::LoadStatus::NotFound);
            CHECK_FALSE(storage.remove(type, false));
            const auto mustExist = storage.remove(type, true);
            REQUIRE(mustExist);
            CHECK(mustExist->code == rc::kFail);
            CHECK_THAT(mustExist->message, Catch::Contains(storage.pathOf(type).string()));
        }
        CHECK_FALSE(hasTempFiles(dir.path()));
    }
}

TEST_CASE("state files are 0600 by default and honour mode=", "[dir_storage]")
{
    const TempDir dir;
    SECTION("default 0600 regardless of a permissive umask")
    {
        const UmaskGuard mask(0);
        st::DirStorage storage = openStorage(dir);
        REQUIRE_FALSE(storage.store(BlobType::Permanent, toBytes("a")));
        CHECK(modeOf(storage.pathOf(BlobType::Permanent)) == 0600);
    }
    SECTION("an explicit mode is applied exactly, even against the umask")
    {
        const UmaskGuard mask(077);
        st::DirStorage storage = openStorage(dir, 0640);
        REQUIRE_FALSE(storage.store(BlobType::Permanent, toBytes("a")));
        CHECK(modeOf(storage.pathOf(BlobType::Permanent)) == 0640);
    }
    SECTION("a stale temp file's mode does not leak into the new file")
    {
        const fs::path stale = dir.path() / "TMP2-00.permall";
        writeFile(stale, toBytes("junk"));
        fs::permissions(stale, static_cast<fs::perms>(0666));
        st::DirStorage storage = openStorage(dir);
        REQUIRE_FALSE(storage.store(BlobType::Permanent, toBytes("a")));
        CHECK(modeOf(storage.pathOf(BlobType::Permanent)) == 0600);
        CHECK_FALSE(fs::exists(stale));
    }
}

TEST_CASE("a failed store keeps the previous file and leaves no temp file", "[dir_storage]")
{
    const TempDir dir;
    st::DirStorage storage = openStorage(dir);
    const Bytes old = toBytes("previous good state");
    REQUIRE_FALSE(storage.store(BlobType::Permanent, old));

    SECTION("write fails (file size limit, like a full disk)")
    {
        // RLIMIT_FSIZE makes write() fail with EFBIG; do it in a child so the limit and the
        // ignored SIGXFSZ do not leak into the test runner.
        const int status = st::test::runInChild(
            [&]
            {
                (void)std::signal(SIGXFSZ, SIG_IGN);
                const rlimit limit{.rlim_cur = 64, .rlim_max = 64};
                if (::setrlimit(RLIMIT_FSIZE, &limit) != 0)
                {
                    return 2;
                }
                st::DirStorage child(dir.path(), TpmVersion::Tpm2, std::nullopt);
                child.init();
                const auto error = child.store(BlobType::Permanent, Bytes(1000, 0xab));
                if (!error || error->code != rc::kFail ||
                    error->message.find("TMP2-00.permall") == std::string::npos)
                {
                    return 1;
                }
                return 0;
            });
        CHECK(status == 0);
    }
    SECTION("rename fails (target replaced by a non-empty directory)")
    {
        const fs::path target = storage.pathOf(BlobType::Volatile);
        fs::create_directories(target / "sub");
        const auto error = storage.store(BlobType::Volatile, toBytes("new"));
        REQUIRE(error);
        CHECK_THAT(error->message, Catch::Contains(target.string()));
        CHECK(fs::is_directory(target));
    }
    SECTION("state larger than the file limit is refused up front")
    {
        const auto error =
            storage.store(BlobType::Permanent, Bytes(st::kMaxStateFileSize, std::uint8_t{1}));
        REQUIRE(error);
        CHECK_THAT(error->message, Catch::Contains("permall"));
    }

    const st::LoadResult loaded = storage.load(BlobType::Permanent);
    REQUIRE(loaded.status == st::LoadStatus::Ok);
    CHECK(loaded.plaintext == old);
    CHECK_FALSE(hasTempFiles(dir.path()));
}

TEST_CASE("damaged files are errors naming the file, never NotFound", "[dir_storage]")
{
    const TempDir dir;
    st::DirStorage storage = openStorage(dir);
    const fs::path path = storage.pathOf(BlobType::Permanent);
    const Bytes good = st::encodeStoredBlob(toBytes("some tpm state"));

    auto expectError = [&](std::optional<vtpm::protocol::TpmResult> code)
    {
        const st::LoadResult loaded = storage.load(BlobType::Permanent);
        REQUIRE(loaded.status == st::LoadStatus::Error);
        REQUIRE(loaded.error);
        CHECK_THAT(loaded.error->message, Catch::Contains(path.string()));
        CHECK(loaded.plaintext.empty());
        if (code)
        {
            CHECK(loaded.error->code == *code);
        }
    };

    SECTION("truncated")
    {
        writeFile(path, Bytes(good.begin(), good.end() - 3));
        expectError(rc::kBadParameter);
    }
    SECTION("empty")
    {
        writeFile(path, {});
        expectError(rc::kBadParameter);
    }
    SECTION("garbage")
    {
        writeFile(path, toBytes("this is not a TPM state file at all"));
        expectError(std::nullopt);
    }
    SECTION("bad header size")
    {
        Bytes bad = good;
        bad[3] = 12;
        writeFile(path, bad);
        expectError(rc::kBadDataSize);
    }
    SECTION("a directory in its place")
    {
        fs::create_directory(path);
        expectError(rc::kFail);
    }
    SECTION("a symlink is not followed")
    {
        const fs::path real = dir.path() / "elsewhere";
        writeFile(real, good);
        fs::create_symlink(real, path);
        expectError(rc::kFail);
    }
    SECTION("absurdly large (sparse) file")
    {
        writeFile(path, good);
        fs::resize_file(path, st::kMaxStateFileSize + 1);
        expectError(rc::kFail);
    }
}

TEST_CASE("storedSize reports existing files and throws on real errors", "[dir_storage]")
{
    const TempDir dir;
    st::DirStorage storage = openStorage(dir);
    CHECK_FALSE(storage.storedSize(BlobType::Volatile));
    REQUIRE_FALSE(storage.store(BlobType::Volatile, Bytes(100, 7)));
    CHECK(storage.storedSize(BlobType::Volatile) == 116 + 6 + st::kStorageDigestSize);
}

TEST_CASE("storage lock excludes other processes", "[dir_storage][lock]")
{
    const TempDir dir;
    st::DirStorage storage = openStorage(dir);
    auto childLock = [&](unsigned retries)
    {
        return st::test::runInChild(
            [&]
            {
                st::DirStorage other(dir.path(), TpmVersion::Tpm2, std::nullopt);
                other.init();
                std::string error;
                if (other.lock(retries, &error))
                {
                    return 0;
                }
                return error.find(".lock") != std::string::npos ? 1 : 2;
            });
    };

    CHECK_FALSE(storage.locked());
    std::string error;
    REQUIRE(storage.lock(0, &error));
    CHECK(storage.locked());
    CHECK(storage.lock(0)); // already held
    CHECK(modeOf(dir.path() / ".lock") == 0600);

    CHECK(childLock(0) == 1); // contended, error names the lock file
    CHECK(childLock(3) == 1); // still contended after 30 ms of retries

    storage.unlock();
    CHECK_FALSE(storage.locked());
    CHECK(childLock(0) == 0);

    SECTION("retries succeed once the holder lets go")
    {
        REQUIRE(storage.lock(0));
        const pid_t pid = ::fork();
        if (pid == 0)
        {
            // No Catch2 macros in the child: they would report into the parent's TAP stream.
            st::DirStorage other(dir.path(), TpmVersion::Tpm2, std::nullopt);
            other.init();
            ::_exit(other.lock(100) ? 0 : 1); // up to ~1 s
        }
        REQUIRE(pid > 0);
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        storage.unlock();
        int status = 0;
        REQUIRE(::waitpid(pid, &status, 0) == pid);
        REQUIRE(WIFEXITED(status));
        CHECK(WEXITSTATUS(status) == 0);
    }
}

TEST_CASE("the lock file is not followed through a symlink", "[dir_storage][lock]")
{
    const TempDir dir;
    fs::create_symlink(dir.path() / "target", dir.path() / ".lock");
    st::DirStorage storage = openStorage(dir);
    std::string error;
    CHECK_FALSE(storage.lock(0, &error));
    CHECK_THAT(error, Catch::Contains(".lock"));
    CHECK_FALSE(fs::exists(dir.path() / "target"));
}

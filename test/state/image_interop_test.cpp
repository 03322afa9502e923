// The linear image backend against the real swtpm 0.7.1 (protocol.md §7.3): swtpm reads images
// FileStorage wrote (with backup and hole entries), FileStorage reads images swtpm wrote, and
// swtpm's own compaction (it deletes volatilestate on CMD_INIT) keeps our layout consistent.
#include "state/file_storage.hpp"
#include "state/stored_blob.hpp"
#include "test_util.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

namespace
{

namespace fs = std::filesystem;
using vtpm::protocol::BlobType;
using vtpm::protocol::Bytes;
namespace st = vtpm::state;





// Sections and holes tile [192, end) without overlap or gap, inside the file.
bool packed(const st::ImageTable& table, std::uint64_t fileSize)
{
    std::vector<std::pair<std::uint64_t, std::uint64_t>> extents;
    for (const st::ImageEntry& entry : table)
    {
        if (entry.used())
        {
            extents.emplace_back(entry.offset, entry.end());
        }
    }
    std::sort(extents.begin(), extents.end());
    std::uint64_t cursor = st::kImageHeaderSize;
    for (const auto& [begin, end] : extents)
    {
        if (begin != cursor)
        {
            return false;
        }
        cursor = end;
    }
    return fileSize >= cursor;
}

class Swtpm
{
public:
    Swtpm(const fs::path& dir, const fs::path& image,
          const std::string& flags = "not-need-init,startup-clear") :
        ctrl_(dir / "ctrl"), log_(dir / "swtpm.log")
    {
        fs::remove(ctrl_);
        pid_ = st::test::spawnLogged({"swtpm", "socket", "--tpm2", "--tpmstate",
                      "backend-uri=file://" + image.string(), "--ctrl",
                      "type=unixio,path=" + ctrl_.string(), "--flags", flags, "--log",
                      "level=1"},
                     log_);
        for (int i = 0; i < 400 && !fs::exists(ctrl_); ++i)
        {
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        if (!fs::exists(ctrl_))
        {
            FAIL("swtpm did not start (is swtpm installed?); log: " << st::test::logText(log_));
        }
    }
    Swtpm(const Swtpm&) = delete;
    Swtpm& operator=(const Swtpm&) = delete;
    Swtpm(Swtpm&&) = delete;
    Swtpm& operator=(Swtpm&&) = delete;
    ~Swtpm()
    {
        if (pid_ > 0)
        {
            (void)st::test::waitExit(pid_, std::chrono::milliseconds(0));
        }
    }

    int ioctl(std::vector<std::string> args)
    {
        args.insert(args.begin(), {"swtpm_ioctl", "--unix", ctrl_.string()});
        return st::test::runLogged(args, log_);
    }
    Bytes savePermanent(const fs::path& file)
    {
        REQUIRE(ioctl({"--save", "permanent", file.string()}) == 0);
        const st::MigrationDecodeResult decoded =
            st::decodeMigrationBlob(st::test::readFile(file), 0);
        REQUIRE(decoded.ok());
        return decoded.plaintext;
    }
    void stop()
    {
        REQUIRE(ioctl({"-s"}) == 0);
        INFO("swtpm log: " << st::test::logText(log_));
        CHECK(st::test::waitExit(pid_, std::chrono::seconds(5)) == 0);
        pid_ = -1;
    }

private:
    fs::path ctrl_;
    fs::path log_;
    pid_t pid_ = -1;
};

} // namespace

TEST_CASE("swtpm 0.7.1 and FileStorage share a linear image both ways", "[interop][file_storage]")
{
    const st::test::TempDir dir;
    const fs::path image = dir.path() / "nvram.img";
    const fs::path saved = dir.path() / "permall.mig";

    // 1. swtpm formats the image and writes permall and volatilestate.
    Bytes permall;
    {
        Swtpm swtpm(dir.path(), image);
        REQUIRE(swtpm.ioctl({"-v"}) == 0);
        permall = swtpm.savePermanent(saved);
        swtpm.stop();
    }
    CHECK(permall.size() > 1000);

    // 2. FileStorage reads swtpm's image, then rewrites both blobs a few times: backup entries
    //    appear and sections move (ping-pong, no overwrite in place).
    Bytes volatileState;
    {
        st::FileStorage storage(image, {});
        storage.init();
        const st::LoadResult p = storage.load(BlobType::Permanent);
        REQUIRE(p.status == st::LoadStatus::Ok);
        CHECK(p.plaintext == permall);
        const st::LoadResult v = storage.load(BlobType::Volatile);
        REQUIRE(v.status == st::LoadStatus::Ok);
        volatileState = v.plaintext;
        for (int i = 0; i < 3; ++i)
        {
            REQUIRE_FALSE(storage.store(BlobType::Permanent, permall));
            REQUIRE_FALSE(storage.store(BlobType::Volatile, volatileState));
        }
        CHECK(storage.table().at(3).used()); // permall's backup copy
        CHECK(storage.table().at(4).used()); // volatilestate's
        CHECK(packed(storage.table(), st::test::readFile(image).size()));
    }

    // 3. swtpm reads that image; CMD_INIT resumes with volatilestate and deletes it, which makes
    //    swtpm compact the image around our extra entries.
    {
        Swtpm swtpm(dir.path(), image);
        CHECK(swtpm.savePermanent(saved) == permall);
        REQUIRE(swtpm.ioctl({"-i"}) == 0);
        permall = swtpm.savePermanent(saved);
        swtpm.stop();
    }

    // 4. The compacted image still loads and stays packed.
    {
        st::FileStorage storage(image, {});
        storage.init();
        CHECK(packed(storage.table(), st::test::readFile(image).size()));
        const st::LoadResult p = storage.load(BlobType::Permanent);
        REQUIRE(p.status == st::LoadStatus::Ok);
        CHECK(p.plaintext == permall);
        CHECK(storage.load(BlobType::Volatile).status == st::LoadStatus::NotFound);
        REQUIRE_FALSE(storage.store(BlobType::Permanent, permall));
        REQUIRE_FALSE(storage.store(BlobType::Volatile, volatileState));
        CHECK(packed(storage.table(), st::test::readFile(image).size()));
    }

    // 5. A fresh image written only by FileStorage is read by swtpm (no Startup this time: it
    //    would update permall, and the point is to see swtpm return exactly what we wrote).
    const fs::path fresh = dir.path() / "fresh.img";
    {
        st::FileStorage storage(fresh, {});
        storage.init();
        REQUIRE_FALSE(storage.store(BlobType::Permanent, permall));
        REQUIRE_FALSE(storage.store(BlobType::Permanent, permall));
    }
    {
        Swtpm swtpm(dir.path(), fresh, "not-need-init");
        CHECK(swtpm.savePermanent(saved) == permall);
        swtpm.stop();
    }
}

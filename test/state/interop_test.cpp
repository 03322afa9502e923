// Interop with the real swtpm (Debian 12: 0.7.1). Deliberately fails, not skips, when swtpm or
// swtpm_ioctl is missing: compatibility with its files is a product requirement.
#include "state/dir_storage.hpp"
#include "test_util.hpp"

#include <catch2/catch.hpp>

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
using vtpm::protocol::TpmVersion;
namespace st = vtpm::state;





} // namespace

TEST_CASE("files and migration blobs written by swtpm 0.7.1 decode", "[interop]")
{
    const st::test::TempDir dir;
    const fs::path ctrl = dir.path() / "ctrl";
    const fs::path log = dir.path() / "swtpm.log";
    const fs::path saved = dir.path() / "permall.mig";

    const pid_t swtpm =
        st::test::spawnLogged({"swtpm", "socket", "--tpm2", "--tpmstate", "dir=" + dir.path().string(), "--ctrl",
               "type=unixio,path=" + ctrl.string(), "--flags", "not-need-init,startup-clear"},
              log);
    REQUIRE(swtpm > 0);
    bool exited = false;
    for (int i = 0; i < 300 && !exited && !fs::exists(ctrl); ++i)
    {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
        int status = 0;
        exited = ::waitpid(swtpm, &status, WNOHANG) == swtpm; // e.g. exec failed: exit 127
    }
    if (!fs::exists(ctrl))
    {
        if (!exited)
        {
            st::test::waitExit(swtpm, std::chrono::milliseconds(0));
        }
        FAIL(
            "swtpm did not create its control socket (is swtpm installed?); log: " << st::test::logText(log));
    }

    // While swtpm runs it holds .lock (0.7.1 locks at storage init): our lock must lose.
    st::DirStorage storage(dir.path(), TpmVersion::Tpm2, std::nullopt);
    storage.init();
    std::string lockError;
    CHECK_FALSE(storage.lock(0, &lockError));

    const int saveStatus =
        st::test::runLogged({"swtpm_ioctl", "--unix", ctrl.string(), "--save", "permanent", saved.string()}, log);
    const int stopStatus = st::test::runLogged({"swtpm_ioctl", "--unix", ctrl.string(), "-s"}, log);
    const int swtpmStatus = st::test::waitExit(swtpm, std::chrono::seconds(5));
    INFO("swtpm log: " << st::test::logText(log));
    REQUIRE(saveStatus == 0);
    REQUIRE(stopStatus == 0);
    CHECK(swtpmStatus == 0);

    // Stored file: decodes, and our encoder reproduces swtpm's bytes exactly.
    const Bytes file = st::test::readFile(storage.pathOf(BlobType::Permanent));
    const st::LoadResult loaded = storage.load(BlobType::Permanent);
    REQUIRE(loaded.status == st::LoadStatus::Ok);
    CHECK(loaded.plaintext.size() > 1000); // a TPM 2 permall is ~1.3 KiB
    CHECK(loaded.plaintext.size() + 16 == file.size());
    CHECK(st::encodeStoredBlob(loaded.plaintext) == file);

    // GET_STATEBLOB output: same plaintext, and our migration encoder matches byte for byte.
    const Bytes mig = st::test::readFile(saved);
    const st::MigrationDecodeResult decoded = st::decodeMigrationBlob(mig, 0);
    REQUIRE(decoded.ok());
    CHECK_FALSE(decoded.empty);
    CHECK(decoded.plaintext == loaded.plaintext);
    CHECK(st::encodeMigrationBlob(loaded.plaintext).blob == mig);

    // swtpm is gone, so the lock is free now.
    CHECK(storage.lock(0));
}

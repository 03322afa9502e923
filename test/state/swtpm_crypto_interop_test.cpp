// Encrypted state and migration blobs against the real swtpm (Debian 12: 0.7.1), both ways:
// swtpm's files and GET_STATEBLOB replies decode with our keys and codec, and swtpm accepts our
// encrypted files and SET_STATEBLOB blobs. Fails, never skips, when swtpm is missing.
#include "crypto_support.hpp"
#include "protocol/blob_type.hpp"
#include "state/key.hpp"
#include "state/stored_blob.hpp"
#include "test_util.hpp"

#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <array>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

namespace
{

namespace fs = std::filesystem;
namespace st = vtpm::state;
namespace rc = vtpm::protocol::rc;
using vtpm::protocol::Bytes;
using vtpm::protocol::ByteView;

constexpr std::string_view kHex256 =
    "f00102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
constexpr std::string_view kHex128 = "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf";




// One swtpm socket instance on a state directory, controlled through its ctrl socket.
class Swtpm
{
public:
    Swtpm(const fs::path& work, const fs::path& stateDir, std::vector<std::string> extra) :
        ctrl_(work / (stateDir.filename().string() + ".ctrl")),
        log_(work / (stateDir.filename().string() + ".log"))
    {
        fs::create_directories(stateDir);
        std::vector<std::string> args{"swtpm", "socket", "--tpm2", "--tpmstate",
                                      "dir=" + stateDir.string(), "--ctrl",
                                      "type=unixio,path=" + ctrl_.string()};
        args.insert(args.end(), extra.begin(), extra.end());
        pid_ = st::test::spawnLogged(args, log_);
        REQUIRE(pid_ > 0);
        for (int i = 0; i < 500 && !fs::exists(ctrl_); ++i)
        {
            int status = 0;
            if (::waitpid(pid_, &status, WNOHANG) == pid_)
            {
                pid_ = -1;
                FAIL("swtpm exited at start (is swtpm installed?); log: " << st::test::logText(log_));
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
        if (!fs::exists(ctrl_))
        {
            FAIL("swtpm did not create its control socket; log: " << st::test::logText(log_));
        }
    }
    ~Swtpm()
    {
        if (pid_ > 0)
        {
            (void)st::test::waitExit(pid_, std::chrono::milliseconds(0));
        }
    }
    Swtpm(const Swtpm&) = delete;
    Swtpm& operator=(const Swtpm&) = delete;
    Swtpm(Swtpm&&) = delete;
    Swtpm& operator=(Swtpm&&) = delete;

    // swtpm_ioctl against this instance; returns its exit status.
    int ioctl(std::vector<std::string> args) const
    {
        args.insert(args.begin(), {"swtpm_ioctl", "--unix", ctrl_.string()});
        return st::test::waitExit(st::test::spawnLogged(args, log_), std::chrono::seconds(5));
    }

    // CMD_SHUTDOWN and wait for the process; returns swtpm's exit status.
    int shutdown()
    {
        const int rcIoctl = ioctl({"-s"});
        const int status = st::test::waitExit(pid_, std::chrono::seconds(5));
        pid_ = -1;
        return rcIoctl == 0 ? status : -1;
    }

    // A raw CMD_GET_STATEBLOB (protocol.md §3.12) for the permanent blob.
    struct StateBlob
    {
        std::uint32_t result = 0;
        std::uint32_t stateFlags = 0;
        Bytes blob;
    };
    [[nodiscard]] StateBlob getPermanent(std::uint32_t requestFlags) const
    {
        vtpm::protocol::ByteWriter req;
        req.write(std::uint32_t{0x0c}).write(requestFlags).write(std::uint32_t{1});
        req.write(std::uint32_t{0});
        const Bytes reply = exchange(std::move(req).take(), 16, 12);
        vtpm::protocol::ByteReader in(reply);
        StateBlob out;
        out.result = in.read<std::uint32_t>();
        out.stateFlags = in.read<std::uint32_t>();
        (void)in.read<std::uint32_t>();
        const auto length = in.read<std::uint32_t>();
        const ByteView data = in.bytes(length);
        REQUIRE(in.ok());
        out.blob.assign(data.begin(), data.end());
        return out;
    }

    // A raw CMD_SET_STATEBLOB for the permanent blob; returns the TPM result.
    [[nodiscard]] std::uint32_t setPermanent(std::uint32_t stateFlags, ByteView blob) const
    {
        vtpm::protocol::ByteWriter req;
        req.write(std::uint32_t{0x0d}).write(stateFlags).write(std::uint32_t{1});
        req.write(static_cast<std::uint32_t>(blob.size())).write(blob);
        const Bytes reply = exchange(std::move(req).take(), 4, std::nullopt);
        vtpm::protocol::ByteReader in(reply);
        return in.read<std::uint32_t>();
    }

    [[nodiscard]] std::string log() const { return st::test::logText(log_); }

private:
    // Sends request, reads a reply of headerSize bytes plus (if lengthAt) the u32 length there.
    [[nodiscard]] Bytes exchange(const Bytes& request, std::size_t headerSize,
                                 std::optional<std::size_t> lengthAt) const
    {
        const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        REQUIRE(fd >= 0);
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        const std::string path = ctrl_.string();
        REQUIRE(path.size() < sizeof(addr.sun_path));
        std::copy(path.begin(), path.end(), std::begin(addr.sun_path));
        // NOLINTNEXTLINE(cppcoreguidelines-pro-type-reinterpret-cast): sockets API
        const bool connected = ::connect(fd, reinterpret_cast<const sockaddr*>(&addr),
                                         sizeof(addr)) == 0;
        const bool sent = connected && ::write(fd, request.data(), request.size()) ==
                                           static_cast<ssize_t>(request.size());
        Bytes reply;
        std::size_t want = headerSize;
        std::array<std::uint8_t, 4096> buf{};
        while (sent && reply.size() < want)
        {
            const ssize_t n = ::read(fd, buf.data(), std::min(buf.size(), want - reply.size()));
            if (n <= 0)
            {
                break;
            }
            reply.insert(reply.end(), buf.begin(), buf.begin() + n);
            if (lengthAt && reply.size() == headerSize)
            {
                vtpm::protocol::ByteReader in(ByteView(reply).subspan(*lengthAt));
                want += in.read<std::uint32_t>();
            }
        }
        ::close(fd);
        INFO("swtpm log: " << st::test::logText(log_));
        REQUIRE(reply.size() >= 4);
        return reply;
    }

    fs::path ctrl_;
    fs::path log_;
    pid_t pid_ = -1;
};

struct Variant
{
    std::string_view name;
    std::string_view specFormat; // {} = path of the secret
    std::string secret;
    bool is256;
};

std::vector<Variant> variants()
{
    return {
        {"aes-256 hex key", "file={},mode=aes-256-cbc", std::string(kHex256) + "\n", true},
        {"aes-128 hex key (default mode)", "file={}", "0x" + std::string(kHex128), false},
        {"aes-256 binary key", "file={},mode=aes-256-cbc,format=binary",
         std::string(32, '\x5a'), true},
        {"aes-256 pbkdf2 passphrase", "pwdfile={},mode=aes-256-cbc",
         "swtpm interop passphrase\n", true},
        {"aes-128 sha512 passphrase", "pwdfile={},kdf=sha512", "another passphrase", false},
    };
}

st::Key loadSpec(const std::string& spec)
{
    return st::loadKey(st::parseKeySpec("--key", spec), "--key");
}

std::uint16_t headerFlags(const Bytes& blob)
{
    const st::HeaderResult h = st::parseBlobHeader(blob);
    REQUIRE_FALSE(h.error);
    return h.header.flags;
}

} // namespace

TEST_CASE("swtpm 0.7.1 encrypted state files: both directions", "[interop][crypto]")
{
    const st::test::TempDir work;
    int index = 0;
    for (const Variant& v : variants())
    {
        ++index;
        INFO("variant: " << v.name);
        const fs::path secret = work.path() / fmt::format("secret-{}", index);
        st::test::writeFile(secret, st::test::toBytes(v.secret));
        const std::string spec = fmt::format(fmt::runtime(v.specFormat), secret.string());
        const st::Key key = loadSpec(spec);
        CHECK(key.is256() == v.is256);

        // swtpm creates an encrypted permall ...
        const fs::path dirA = work.path() / fmt::format("a{}", index);
        Swtpm a(work.path(), dirA, {"--key", spec, "--flags", "not-need-init,startup-clear"});
        REQUIRE(a.shutdown() == 0);
        const Bytes file = st::test::readFile(dirA / "tpm2-00.permall");
        CHECK(headerFlags(file) ==
              (st::blobflag::kEncrypted | (v.is256 ? st::blobflag::kEncrypted256BitKey : 0)));

        // ... which we decode with the key loaded from the same option text ...
        const st::DecodeResult decoded = st::decodeStoredBlob(file, &key);
        INFO("decode error: " << (decoded.error ? decoded.error->message : "none"));
        REQUIRE(decoded.ok());
        CHECK(decoded.plaintext.size() > 1000);
        const st::Key wrong = v.is256 ? st::test::testKey256() : st::test::testKey128();
        CHECK(st::decodeStoredBlob(file, &wrong).error->code == rc::kDecryptError);

        // ... and swtpm starts from our re-encrypted copy of it.
        const fs::path dirB = work.path() / fmt::format("b{}", index);
        fs::create_directories(dirB);
        st::test::writeFile(dirB / "tpm2-00.permall", st::encodeStoredBlob(decoded.plaintext, &key));
        Swtpm b(work.path(), dirB, {"--key", spec});
        INFO("swtpm log: " << b.log());
        CHECK(b.ioctl({"-i"}) == 0);
        CHECK(b.shutdown() == 0);
        const st::DecodeResult again =
            st::decodeStoredBlob(st::test::readFile(dirB / "tpm2-00.permall"), &key);
        REQUIRE(again.ok());
        CHECK(again.plaintext == decoded.plaintext);
    }

    // Control: swtpm refuses a file we encrypted under a different key, so the accepted runs
    // above really decrypted our files.
    const fs::path secret = work.path() / "control.hex";
    st::test::writeFile(secret, st::test::toBytes(kHex256));
    const std::string spec = "file=" + secret.string() + ",mode=aes-256-cbc";
    const fs::path dirC = work.path() / "control";
    fs::create_directories(dirC);
    const st::Key other = st::test::testKey256();
    st::test::writeFile(dirC / "tpm2-00.permall",
                        st::encodeStoredBlob(st::test::samplePlaintext(1300), &other));
    Swtpm c(work.path(), dirC, {"--key", spec});
    CHECK(c.ioctl({"-i"}) != 0);
    (void)c.shutdown();
}

TEST_CASE("swtpm 0.7.1 migration blobs with state and migration keys: both directions",
          "[interop][crypto]")
{
    const st::test::TempDir work;
    const fs::path stateSecret = work.path() / "state.hex";
    const fs::path migSecret = work.path() / "migration.pw";
    st::test::writeFile(stateSecret, st::test::toBytes(std::string(kHex256) + "\n"));
    st::test::writeFile(migSecret, st::test::toBytes("migration passphrase"));

    // Same-size and mixed-size key pairs (mixed sizes are where swtpm's IV handling differs).
    struct Pair
    {
        std::string stateSpec;
        std::string migSpec;
    };
    const std::array pairs{
        Pair{"file=" + stateSecret.string() + ",mode=aes-256-cbc",
             "pwdfile=" + migSecret.string() + ",mode=aes-256-cbc"},
        Pair{"file=" + stateSecret.string() + ",mode=aes-256-cbc",
             "pwdfile=" + migSecret.string()},
    };
    int round = 0;
    for (const Pair& pair : pairs)
    {
        ++round;
        INFO("state key: " << pair.stateSpec << "; migration key: " << pair.migSpec);
        const st::Key stateKey = loadSpec(pair.stateSpec);
        const st::Key migKey = loadSpec(pair.migSpec);
        const std::uint16_t mig256 = migKey.is256() ? st::blobflag::kMigration256BitKey : 0;

        const fs::path dirS = work.path() / fmt::format("src{}", round);
        Swtpm src(work.path(), dirS,
                  {"--key", pair.stateSpec, "--migration-key", pair.migSpec, "--flags",
                   "not-need-init,startup-clear"});

        // swtpm 0.7.1 keeps one global IV buffer that only grows and insists on IV length ==
        // key length: once the 256-bit state key has been used, encrypting with a 128-bit
        // migration key fails (TPM_ENCRYPT_ERROR). So 0.7.1 cannot export with such a pair;
        // importing our blobs (IV length = each layer's key length) works either way.
        const bool swtpmCanExport = stateKey.size() <= migKey.size();
        const fs::path saved = work.path() / fmt::format("saved{}", round);
        const int saveStatus = src.ioctl({"--save", "permanent", saved.string()});
        INFO("source log: " << src.log());
        const Swtpm::StateBlob raw = src.getPermanent(0);
        const Swtpm::StateBlob rawDec = src.getPermanent(vtpm::protocol::stateflag::kDecrypted);
        REQUIRE(src.shutdown() == 0);
        const st::DecodeResult stored =
            st::decodeStoredBlob(st::test::readFile(dirS / "tpm2-00.permall"), &stateKey);
        REQUIRE(stored.ok());
        const Bytes& plain = stored.plaintext;
        CHECK(plain.size() > 1000);

        if (swtpmCanExport)
        {
            // swtpm_ioctl --save asks for DECRYPTED: only the migration layer is encrypted.
            REQUIRE(saveStatus == 0);
            const Bytes ioctlBlob = st::test::readFile(saved);
            CHECK(headerFlags(ioctlBlob) ==
                  (st::blobflag::kMigrationData | st::blobflag::kMigrationEncrypted | mig256));
            const st::MigrationDecodeResult fromIoctl =
                st::decodeMigrationBlob(ioctlBlob, 0, nullptr, &migKey);
            INFO("decode: " << (fromIoctl.error ? fromIoctl.error->message : "ok"));
            REQUIRE(fromIoctl.ok());
            // GET_STATEBLOB reads storage: the same plaintext as the file.
            CHECK(fromIoctl.plaintext == plain);

            // Our own GET_STATEBLOB without DECRYPTED: both layers encrypted, reply flag
            // ENCRYPTED.
            REQUIRE(raw.result == rc::kSuccess);
            CHECK(raw.stateFlags == vtpm::protocol::stateflag::kEncrypted);
            CHECK(headerFlags(raw.blob) ==
                  (st::blobflag::kMigrationData | st::blobflag::kMigrationEncrypted | mig256 |
                   st::blobflag::kEncrypted | st::blobflag::kEncrypted256BitKey));
            const st::MigrationDecodeResult fromRaw =
                st::decodeMigrationBlob(raw.blob, raw.stateFlags, &stateKey, &migKey);
            INFO("decode: " << (fromRaw.error ? fromRaw.error->message : "ok"));
            REQUIRE(fromRaw.ok());
            CHECK(fromRaw.plaintext == plain);
            CHECK(st::decodeMigrationBlob(raw.blob, raw.stateFlags, nullptr, &migKey)
                      .error->code == rc::kKeyNotFound);
            // And with DECRYPTED over the raw channel: same shape as swtpm_ioctl's.
            REQUIRE(rawDec.result == rc::kSuccess);
            CHECK(rawDec.stateFlags == 0);
            CHECK(st::decodeMigrationBlob(rawDec.blob, 0, nullptr, &migKey).plaintext == plain);
        }
        else
        {
            CHECK(saveStatus != 0);
            CHECK(raw.result == rc::kEncryptError);
            CHECK(rawDec.result == rc::kEncryptError);
        }

        // Reverse, both layers encrypted, loaded with swtpm_ioctl --load; then the TPM starts.
        const fs::path ours = work.path() / fmt::format("ours{}", round);
        const st::MigrationBlob enc = st::encodeMigrationBlob(plain, &stateKey, false, &migKey);
        st::test::writeFile(ours, enc.blob);
        const fs::path dirD = work.path() / fmt::format("dst{}", round);
        Swtpm dst(work.path(), dirD, {"--key", pair.stateSpec, "--migration-key", pair.migSpec});
        INFO("destination log: " << dst.log());
        CHECK(dst.ioctl({"--load", "permanent", ours.string()}) == 0);
        CHECK(dst.ioctl({"-i"}) == 0);
        REQUIRE(dst.shutdown() == 0);
        const st::DecodeResult committed =
            st::decodeStoredBlob(st::test::readFile(dirD / "tpm2-00.permall"), &stateKey);
        REQUIRE(committed.ok());
        CHECK(committed.plaintext == plain);

        // Reverse over the raw channel with the reply's flag word, as QEMU does; then a
        // DECRYPTED-style blob into a destination that has no state key at all.
        const fs::path dirE = work.path() / fmt::format("dstE{}", round);
        Swtpm e(work.path(), dirE, {"--key", pair.stateSpec, "--migration-key", pair.migSpec});
        CHECK(e.setPermanent(enc.stateFlags, enc.blob) == rc::kSuccess);
        // Tampering is caught by swtpm with the code we use, too.
        Bytes tampered = enc.blob;
        tampered[tampered.size() - 50] ^= 1;
        CHECK(e.setPermanent(enc.stateFlags, tampered) == rc::kDecryptError);
        CHECK(e.setPermanent(enc.stateFlags, enc.blob) == rc::kSuccess);
        CHECK(e.ioctl({"-i"}) == 0);
        REQUIRE(e.shutdown() == 0);

        const fs::path dirF = work.path() / fmt::format("dstF{}", round);
        Swtpm f(work.path(), dirF, {"--migration-key", pair.migSpec});
        const st::MigrationBlob dec = st::encodeMigrationBlob(plain, &stateKey, true, &migKey);
        CHECK(dec.stateFlags == 0);
        CHECK(f.setPermanent(dec.stateFlags, dec.blob) == rc::kSuccess);
        CHECK(f.ioctl({"-i"}) == 0);
        REQUIRE(f.shutdown() == 0);
        const st::DecodeResult plainFile =
            st::decodeStoredBlob(st::test::readFile(dirF / "tpm2-00.permall"));
        REQUIRE(plainFile.ok());
        CHECK(plainFile.plaintext == plain);
    }
}

// --key / --migration-key: option grammar (parseKeySpec) and key loading (loadKey), protocol.md
// §7.6. Every error names the option and the file, and never shows key material.
#include "crypto_support.hpp"
#include "state/key.hpp"
#include "test_util.hpp"

#include <catch2/catch.hpp>
#include <fmt/format.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <filesystem>
#include <memory>
#include <sstream>
#include <string>

#include <fcntl.h>
#include <unistd.h>

namespace
{

namespace fs = std::filesystem;
namespace st = vtpm::state;
using vtpm::protocol::Bytes;
using vtpm::protocol::ByteView;
using Source = st::KeySpec::Source;

// Routes spdlog's default logger into a string for the lifetime of the object (the default
// logger writes to stdout, which carries the TAP stream).
class LogCapture
{
public:
    LogCapture() :
        previous_(spdlog::default_logger()),
        logger_(std::make_shared<spdlog::logger>(
            "capture", std::make_shared<spdlog::sinks::ostream_sink_mt>(text_)))
    {
        spdlog::set_default_logger(logger_);
    }
    ~LogCapture() { spdlog::set_default_logger(previous_); }
    LogCapture(const LogCapture&) = delete;
    LogCapture& operator=(const LogCapture&) = delete;
    LogCapture(LogCapture&&) = delete;
    LogCapture& operator=(LogCapture&&) = delete;

    [[nodiscard]] std::string text() const { return text_.str(); }

private:
    std::ostringstream text_;
    std::shared_ptr<spdlog::logger> previous_;
    std::shared_ptr<spdlog::logger> logger_;
};

std::string errorOf(std::string_view text)
{
    try
    {
        (void)st::parseKeySpec("--migration-key", text);
    }
    catch (const st::KeySpecError& e)
    {
        return e.what();
    }
    return "(no error)";
}

Bytes keyBytes(const st::Key& key)
{
    return {key.bytes().begin(), key.bytes().end()};
}

void writeText(const fs::path& path, std::string_view text)
{
    st::test::writeFile(path, st::test::toBytes(text));
}

st::KeySpec fileSpec(const fs::path& path, st::KeyCipher cipher,
                     st::KeySpec::Format format = st::KeySpec::Format::Hex)
{
    st::KeySpec spec;
    spec.source = Source::File;
    spec.path = path;
    spec.cipher = cipher;
    spec.format = format;
    return spec;
}

std::string loadError(const st::KeySpec& spec)
{
    try
    {
        (void)st::loadKey(spec, "--key");
    }
    catch (const std::runtime_error& e)
    {
        return e.what();
    }
    return "(no error)";
}

// A pipe whose write end already delivered `content` and is closed; returns the read end.
int pipeWith(ByteView content)
{
    std::array<int, 2> fds{};
    REQUIRE(::pipe(fds.data()) == 0);
    REQUIRE(::write(fds[1], content.data(), content.size()) ==
            static_cast<ssize_t>(content.size()));
    ::close(fds[1]);
    return fds[0];
}

bool fdIsOpen(int fd)
{
    return ::fcntl(fd, F_GETFD) != -1 || errno != EBADF;
}

constexpr std::string_view kHex128 = "000102030405060708090a0b0c0d0e0f";
constexpr std::string_view kHex256 =
    "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f";

} // namespace

TEST_CASE("parseKeySpec: every accepted form", "[key][spec]")
{
    SECTION("file, defaults")
    {
        const st::KeySpec s = st::parseKeySpec("--key", "file=/etc/vtpm/k.hex");
        CHECK(s.source == Source::File);
        CHECK(s.path == fs::path("/etc/vtpm/k.hex"));
        CHECK(s.cipher == st::KeyCipher::Aes128Cbc);
        CHECK(s.format == st::KeySpec::Format::Hex);
        CHECK(s.kdf == st::KeySpec::Kdf::Pbkdf2);
        CHECK_FALSE(s.remove);
    }
    SECTION("relative paths become absolute")
    {
        const st::KeySpec s = st::parseKeySpec("--key", "pwdfile=sub/pw.txt");
        CHECK(s.source == Source::PassphraseFile);
        CHECK(s.path.is_absolute());
        CHECK(s.path == fs::current_path() / "sub/pw.txt");
    }
    SECTION("fd and pwdfd")
    {
        const st::KeySpec a = st::parseKeySpec("--key", "fd=5,format=binary,mode=aes-256-cbc");
        CHECK(a.source == Source::Fd);
        CHECK(a.fd == 5);
        CHECK(a.format == st::KeySpec::Format::Binary);
        CHECK(a.cipher == st::KeyCipher::Aes256Cbc);
        const st::KeySpec b = st::parseKeySpec("--key", "mode=aes-256-cbc,pwdfd=0,kdf=sha512");
        CHECK(b.source == Source::PassphraseFd);
        CHECK(b.fd == 0);
        CHECK(b.kdf == st::KeySpec::Kdf::Sha512);
    }
    SECTION("mode aliases, format, kdf, remove")
    {
        CHECK(st::parseKeySpec("k", "file=/k,mode=aes-cbc").cipher == st::KeyCipher::Aes128Cbc);
        CHECK(st::parseKeySpec("k", "file=/k,mode=aes-128-cbc").cipher ==
              st::KeyCipher::Aes128Cbc);
        CHECK(st::parseKeySpec("k", "file=/k,format=hex").format == st::KeySpec::Format::Hex);
        CHECK(st::parseKeySpec("k", "pwdfile=/k,kdf=pbkdf2").kdf == st::KeySpec::Kdf::Pbkdf2);
        CHECK(st::parseKeySpec("k", "file=/k,remove").remove);
        CHECK(st::parseKeySpec("k", "file=/k,remove=true").remove);
        CHECK(st::parseKeySpec("k", "file=/k,remove=TRUE").remove);
        CHECK(st::parseKeySpec("k", "file=/k,remove=1").remove);
        CHECK_FALSE(st::parseKeySpec("k", "file=/k,remove=false").remove);
        CHECK_FALSE(st::parseKeySpec("k", "file=/k,remove=0").remove);
        // libvirt's form
        const st::KeySpec s = st::parseKeySpec("--key", "pwdfd=12,mode=aes-256-cbc");
        CHECK(s.fd == 12);
    }
}

TEST_CASE("parseKeySpec: every error names the option and the culprit", "[key][spec]")
{
    struct Case
    {
        std::string_view text;
        std::string_view mentions;
    };
    const std::array cases{
        Case{"", "stray comma"},
        Case{"mode=aes-256-cbc", "one of file=, fd=, pwdfile= or pwdfd= is required"},
        Case{"file=/a,fd=3", "'fd' conflicts"},
        Case{"pwdfile=/a,pwdfd=3", "'pwdfd' conflicts"},
        Case{"file=/a,file=/b", "'file' given more than once"},
        Case{"file=/a,mode=aes-cbc,mode=aes-256-cbc", "'mode' given more than once"},
        Case{"file=", "'file' needs a value"},
        Case{"file", "'file' needs a value"},
        Case{"fd=abc", "'fd=abc'"},
        Case{"fd=-1", "'fd=-1'"},
        Case{"fd=3x", "'fd=3x'"},
        Case{"pwdfd=99999999999", "'pwdfd=99999999999'"},
        Case{"file=/a,mode=aes-512-cbc", "'aes-512-cbc'"},
        Case{"file=/a,mode=", "'mode' needs a value"},
        Case{"file=/a,format=base64", "'base64'"},
        Case{"pwdfile=/a,kdf=scrypt", "'scrypt'"},
        Case{"file=/a,remove=yes", "'remove=yes'"},
        Case{"file=/a,colour=blue", "unknown parameter 'colour'"},
        Case{"file=/a,,mode=aes-cbc", "stray comma"},
        Case{"file=/a,", "stray comma"},
        Case{"=x", "no name"},
    };
    for (const Case& c : cases)
    {
        INFO("input: " << c.text);
        const std::string message = errorOf(c.text);
        CHECK_THAT(message, Catch::StartsWith("--migration-key: "));
        CHECK_THAT(message, Catch::Contains(std::string(c.mentions)));
    }
}

TEST_CASE("loadKey: hex key files", "[key][load]")
{
    const st::test::TempDir dir;
    const fs::path p = dir.path() / "k.hex";
    const Bytes want128 = st::test::fromHex(kHex128);
    const Bytes want256 = st::test::fromHex(kHex256);

    SECTION("plain, 0x prefix, newline, CRLF, upper case, trailing text after whitespace")
    {
        writeText(p, kHex128);
        CHECK(keyBytes(st::loadKey(fileSpec(p, st::KeyCipher::Aes128Cbc), "--key")) == want128);
        writeText(p, "0x" + std::string(kHex256) + "\n");
        const st::Key k = st::loadKey(fileSpec(p, st::KeyCipher::Aes256Cbc), "--key");
        CHECK(k.is256());
        CHECK(keyBytes(k) == want256);
        writeText(p, std::string(kHex128) + "\r\n");
        CHECK(keyBytes(st::loadKey(fileSpec(p, st::KeyCipher::Aes128Cbc), "--key")) == want128);
        std::string upper(kHex256);
        std::transform(upper.begin(), upper.end(), upper.begin(),
                       [](char c) { return static_cast<char>(std::toupper(c)); });
        writeText(p, "0x" + upper);
        CHECK(keyBytes(st::loadKey(fileSpec(p, st::KeyCipher::Aes256Cbc), "--key")) == want256);
        writeText(p, std::string(kHex128) + " # comment");
        CHECK(keyBytes(st::loadKey(fileSpec(p, st::KeyCipher::Aes128Cbc), "--key")) == want128);
    }
    SECTION("digit count must match the mode")
    {
        writeText(p, std::string(kHex128) + "\n");
        const std::string e = loadError(fileSpec(p, st::KeyCipher::Aes256Cbc));
        CHECK(e == "--key: " + p.string() + ": expected 64 hex digits for aes-256-cbc, found 32");
        writeText(p, kHex256);
        CHECK_THAT(loadError(fileSpec(p, st::KeyCipher::Aes128Cbc)),
                   Catch::Contains("expected 32 hex digits for aes-128-cbc, found 64"));
        writeText(p, std::string(kHex128).substr(0, 30));
        CHECK_THAT(loadError(fileSpec(p, st::KeyCipher::Aes128Cbc)),
                   Catch::Contains("found 30"));
        writeText(p, "");
        CHECK_THAT(loadError(fileSpec(p, st::KeyCipher::Aes128Cbc)), Catch::Contains("found 0"));
        writeText(p, "0x" + std::string(kHex256) + "00"); // 66 digits: too many for anything
        CHECK_THAT(loadError(fileSpec(p, st::KeyCipher::Aes256Cbc)), Catch::Contains("found"));
    }
    SECTION("invalid characters: position only, never the key")
    {
        std::string bad(kHex256);
        bad[10] = 'g';
        writeText(p, bad);
        const std::string e = loadError(fileSpec(p, st::KeyCipher::Aes256Cbc));
        CHECK_THAT(e, Catch::Contains("invalid character at offset 10"));
        CHECK_THAT(e, !Catch::Contains(bad.substr(0, 10)));
        CHECK_THAT(e, !Catch::Contains("g"));
    }
    SECTION("missing file")
    {
        const std::string e = loadError(fileSpec(dir.path() / "nope", st::KeyCipher::Aes128Cbc));
        CHECK_THAT(e, Catch::StartsWith("--key: " + (dir.path() / "nope").string() +
                                        ": cannot open:"));
    }
}

TEST_CASE("loadKey: binary key files", "[key][load]")
{
    const st::test::TempDir dir;
    const fs::path p = dir.path() / "k.bin";
    const Bytes raw32 = st::test::samplePlaintext(32);
    const Bytes raw16(raw32.begin(), raw32.begin() + 16);
    const auto spec = [&](st::KeyCipher c)
    { return fileSpec(p, c, st::KeySpec::Format::Binary); };

    st::test::writeFile(p, raw16);
    CHECK(keyBytes(st::loadKey(spec(st::KeyCipher::Aes128Cbc), "--key")) == raw16);
    st::test::writeFile(p, raw32);
    CHECK(keyBytes(st::loadKey(spec(st::KeyCipher::Aes256Cbc), "--key")) == raw32);
    {
        // swtpm quirk: 16 bytes with mode=aes-256-cbc are used as AES-128, with a warning here.
        const LogCapture log;
        st::test::writeFile(p, raw16);
        const st::Key k = st::loadKey(spec(st::KeyCipher::Aes256Cbc), "--key");
        CHECK(k.size() == 16);
        CHECK(keyBytes(k) == raw16);
        CHECK_THAT(log.text(), Catch::Contains("used as AES-128"));
    }
    st::test::writeFile(p, raw32);
    CHECK_THAT(loadError(spec(st::KeyCipher::Aes128Cbc)),
               Catch::Contains("longer than the 16 bytes of aes-128-cbc"));
    st::test::writeFile(p, Bytes(raw32.begin(), raw32.begin() + 20));
    CHECK_THAT(loadError(spec(st::KeyCipher::Aes256Cbc)),
               Catch::Contains("binary key has 20 bytes; expected 32"));
    st::test::writeFile(p, Bytes{});
    CHECK_THAT(loadError(spec(st::KeyCipher::Aes128Cbc)), Catch::Contains("has 0 bytes"));
    st::test::writeFile(p, st::test::samplePlaintext(100));
    CHECK_THAT(loadError(spec(st::KeyCipher::Aes256Cbc)), Catch::Contains("longer than"));
}

TEST_CASE("loadKey: passphrase files and descriptors", "[key][load]")
{
    const st::test::TempDir dir;
    const fs::path p = dir.path() / "pw";
    // PBKDF2-SHA512("correct horse battery staple\n", "swtpm", 1000), from Python's hashlib.
    const Bytes kat = st::test::fromHex(
        "a1d3850e5a1805f07bc139ea1ef5b740ba5d20229e06e7318691d73e56ae1dee");

    writeText(p, "correct horse battery staple\n"); // the newline is part of the passphrase
    st::KeySpec spec = st::parseKeySpec("--key", "pwdfile=" + p.string() + ",mode=aes-256-cbc");
    CHECK(keyBytes(st::loadKey(spec, "--key")) == kat);
    spec.cipher = st::KeyCipher::Aes128Cbc;
    CHECK(keyBytes(st::loadKey(spec, "--key")) == Bytes(kat.begin(), kat.begin() + 16));
    spec.kdf = st::KeySpec::Kdf::Sha512;
    CHECK(keyBytes(st::loadKey(spec, "--key")) ==
          st::test::fromHex("b3bf1950a302702ce2661a76c1c69f9d"));

    SECTION("short passphrases are accepted with a warning that does not show them")
    {
        const LogCapture log;
        writeText(p, "abc");
        const st::Key k = st::loadKey(spec, "--key");
        CHECK(k.size() == 16);
        CHECK_THAT(log.text(), Catch::Contains("only 3 bytes"));
        CHECK_THAT(log.text(), !Catch::Contains("abc"));
    }
    SECTION("size limit")
    {
        st::test::writeFile(p, Bytes(st::kMaxPassphraseSize, 'x'));
        CHECK(st::loadKey(spec, "--key").size() == 16);
        st::test::writeFile(p, Bytes(st::kMaxPassphraseSize + 1, 'x'));
        CHECK_THAT(loadError(spec), Catch::Contains("longer than 65536 bytes"));
    }
    SECTION("pwdfd reads the pipe and closes it")
    {
        const Bytes pass = st::test::toBytes("correct horse battery staple\n");
        const int fd = pipeWith(pass);
        const st::KeySpec fdSpec =
            st::parseKeySpec("--key", fmt::format("pwdfd={},mode=aes-256-cbc", fd));
        CHECK(keyBytes(st::loadKey(fdSpec, "--key")) == kat);
        CHECK_FALSE(fdIsOpen(fd));
    }
}

TEST_CASE("loadKey: fd sources, remove", "[key][load]")
{
    const st::test::TempDir dir;
    SECTION("fd with a hex key; closed afterwards, also after an error")
    {
        const int fd = pipeWith(st::test::toBytes("0x" + std::string(kHex256) + "\n"));
        st::KeySpec spec;
        spec.source = Source::Fd;
        spec.fd = fd;
        spec.cipher = st::KeyCipher::Aes256Cbc;
        CHECK(keyBytes(st::loadKey(spec, "--key")) == st::test::fromHex(kHex256));
        CHECK_FALSE(fdIsOpen(fd));

        const int bad = pipeWith(st::test::toBytes(kHex128));
        spec.fd = bad;
        CHECK(loadError(spec) == fmt::format("--key: fd {}: expected 64 hex digits for "
                                             "aes-256-cbc, found 32",
                                             bad));
        CHECK_FALSE(fdIsOpen(bad));
    }
    SECTION("remove deletes the file after a successful read only")
    {
        const fs::path p = dir.path() / "k.hex";
        writeText(p, kHex128);
        st::KeySpec spec = st::parseKeySpec("--key", "file=" + p.string() + ",remove");
        CHECK(st::loadKey(spec, "--key").size() == 16);
        CHECK_FALSE(fs::exists(p));

        writeText(p, "nonsense");
        CHECK_THAT(loadError(spec), Catch::Contains("invalid character"));
        CHECK(fs::exists(p));

        writeText(p, kHex128);
        spec.remove = false;
        CHECK(st::loadKey(spec, "--key").size() == 16);
        CHECK(fs::exists(p));

        const fs::path pw = dir.path() / "pw";
        writeText(pw, "a long enough passphrase");
        (void)st::loadKey(st::parseKeySpec("--key", "pwdfile=" + pw.string() + ",remove=1"),
                          "--key");
        CHECK_FALSE(fs::exists(pw));
    }
}

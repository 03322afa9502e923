#include "state/key.hpp"

#include "state/openssl_ptr.hpp"
#include "state/unique_fd.hpp"

#include <fmt/format.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <limits>
#include <optional>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

namespace vtpm::state
{

namespace
{

// swtpm's fixed salt and iteration count for kdf=pbkdf2 (protocol.md §7.6).
constexpr std::array<unsigned char, 5> kPbkdf2Salt{'s', 'w', 't', 'p', 'm'};
constexpr int kPbkdf2Iterations = 1000;
constexpr std::size_t kSha512Size = 64;
constexpr std::size_t kWeakPassphraseSize = 6;
constexpr std::size_t kPassphraseChunk = 4096;

// A fixed-capacity byte buffer for secrets read from files: it never reallocates (so no stale
// copy is left in freed memory) and is wiped on destruction.
class SecretBuffer
{
public:
    explicit SecretBuffer(std::size_t capacity) : data_(capacity) {}
    ~SecretBuffer() { OPENSSL_cleanse(data_.data(), data_.size()); }
    SecretBuffer(const SecretBuffer&) = delete;
    SecretBuffer& operator=(const SecretBuffer&) = delete;
    SecretBuffer(SecretBuffer&&) = delete;
    SecretBuffer& operator=(SecretBuffer&&) = delete;

    [[nodiscard]] protocol::ByteView view() const noexcept { return {data_.data(), used_}; }
    [[nodiscard]] std::size_t size() const noexcept { return used_; }
    [[nodiscard]] std::size_t capacity() const noexcept { return data_.size(); }
    [[nodiscard]] std::uint8_t* tail() noexcept { return data_.data() + used_; }
    void grow(std::size_t n) noexcept { used_ += n; }

private:
    std::vector<std::uint8_t> data_;
    std::size_t used_ = 0;
};

// A stack array wiped when it goes out of scope.
template <std::size_t N>
struct ScratchKey
{
    std::array<std::uint8_t, N> bytes{};
    ScratchKey() = default;
    ~ScratchKey() { OPENSSL_cleanse(bytes.data(), bytes.size()); }
    ScratchKey(const ScratchKey&) = delete;
    ScratchKey& operator=(const ScratchKey&) = delete;
    ScratchKey(ScratchKey&&) = delete;
    ScratchKey& operator=(ScratchKey&&) = delete;
};

std::string errnoText(int err)
{
    return std::system_category().message(err);
}

// Where the secret comes from, for messages: the path, or "fd N".
std::string sourceName(const KeySpec& spec)
{
    switch (spec.source)
    {
    case KeySpec::Source::File:
    case KeySpec::Source::PassphraseFile:
        return spec.path.string();
    case KeySpec::Source::Fd:
    case KeySpec::Source::PassphraseFd:
        break;
    }
    return fmt::format("fd {}", spec.fd);
}

bool isPassphrase(KeySpec::Source source) noexcept
{
    return source == KeySpec::Source::PassphraseFile || source == KeySpec::Source::PassphraseFd;
}

bool isPath(KeySpec::Source source) noexcept
{
    return source == KeySpec::Source::File || source == KeySpec::Source::PassphraseFile;
}

// One read(2), retried on EINTR; returns the byte count or -errno.
ssize_t readOnce(int fd, std::uint8_t* into, std::size_t n) noexcept
{
    while (true)
    {
        const ssize_t got = ::read(fd, into, n);
        if (got >= 0 || errno != EINTR)
        {
            return got < 0 ? -errno : got;
        }
    }
}

// Reads like swtpm does: chunk by chunk until a read returns fewer bytes than asked for (end
// of file, or a pipe whose writer has delivered everything it wrote). Raw keys use a single
// chunk of kMaxRawKeyRead bytes, so a longer file is simply cut there. Returns 0 or an errno.
int readSecret(int fd, SecretBuffer& out, std::size_t chunk)
{
    while (out.size() < out.capacity())
    {
        const std::size_t want = std::min(chunk, out.capacity() - out.size());
        const ssize_t got = readOnce(fd, out.tail(), want);
        if (got < 0)
        {
            return static_cast<int>(-got);
        }
        out.grow(static_cast<std::size_t>(got));
        if (static_cast<std::size_t>(got) < want)
        {
            break;
        }
    }
    return 0;
}

bool isHexSpace(std::uint8_t c) noexcept
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

std::optional<std::uint8_t> hexValue(std::uint8_t c) noexcept
{
    if (c >= '0' && c <= '9')
    {
        return static_cast<std::uint8_t>(c - '0');
    }
    if (c >= 'a' && c <= 'f')
    {
        return static_cast<std::uint8_t>(c - 'a' + 10);
    }
    if (c >= 'A' && c <= 'F')
    {
        return static_cast<std::uint8_t>(c - 'A' + 10);
    }
    return std::nullopt;
}

// §7.6 hex format. `where` prefixes every message ("--key: /x/k.hex").
Key parseHexKey(protocol::ByteView content, KeyCipher cipher, const std::string& where)
{
    const std::size_t keySize = keySizeOf(cipher);
    std::size_t pos = 0;
    if (content.size() >= 2 && content[0] == '0' && (content[1] == 'x' || content[1] == 'X'))
    {
        pos = 2;
    }
    const std::size_t start = pos;
    // The data is read as a C string (as swtpm does): a NUL ends it like whitespace.
    while (pos < content.size() && content[pos] != 0 && !isHexSpace(content[pos]))
    {
        if (!hexValue(content[pos]))
        {
            // The offending character is not shown: it may be part of a mistyped key.
            throw std::runtime_error(
                fmt::format("{}: invalid character at offset {} of the hex key", where, pos));
        }
        ++pos;
    }
    const std::size_t digits = pos - start;
    if (digits != 2 * keySize)
    {
        throw std::runtime_error(fmt::format("{}: expected {} hex digits for {}, found {}",
                                             where, 2 * keySize, cipherName(cipher),
                                             digits));
    }
    ScratchKey<kAes256KeySize> raw;
    for (std::size_t i = 0; i < keySize; ++i)
    {
        const std::size_t at = start + 2 * i;
        raw.bytes[i] = static_cast<std::uint8_t>((*hexValue(content[at]) << 4U) |
                                                 *hexValue(content[at + 1]));
    }
    return Key::fromBytes(protocol::ByteView(raw.bytes).first(keySize));
}

// §7.6 binary format, including swtpm's 16-bytes-with-aes-256 quirk.
Key parseBinaryKey(protocol::ByteView content, KeyCipher cipher, const std::string& where)
{
    const std::size_t keySize = keySizeOf(cipher);
    if (content.size() > keySize)
    {
        throw std::runtime_error(fmt::format("{}: binary key is longer than the {} bytes of {}",
                                             where, keySize, cipherName(cipher)));
    }
    if (content.size() != kAes128KeySize && content.size() != kAes256KeySize)
    {
        throw std::runtime_error(fmt::format(
            "{}: binary key has {} bytes; expected {}", where, content.size(), keySize));
    }
    if (content.size() < keySize)
    {
        spdlog::warn("{}: 16-byte binary key with mode={} is used as AES-128 (as swtpm does)",
                     where, cipherName(cipher));
    }
    return Key::fromBytes(content);
}

// Opens the file of a path source, or adopts the descriptor of an fd source (closing it
// whatever happens next).
UniqueFd openSource(const KeySpec& spec, const std::string& where)
{
    if (!isPath(spec.source))
    {
        if (spec.fd < 0)
        {
            throw std::runtime_error(fmt::format("{}: invalid file descriptor", where));
        }
        return UniqueFd(spec.fd);
    }
    // NOLINTNEXTLINE(cppcoreguidelines-pro-type-vararg): open(2) is variadic
    UniqueFd fd(::open(spec.path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
    if (!fd)
    {
        const int err = errno;
        throw std::runtime_error(fmt::format("{}: cannot open: {}", where, errnoText(err)));
    }
    return fd;
}

std::optional<bool> parseBool(std::string_view value) noexcept
{
    const auto equalsNoCase = [value](std::string_view word)
    {
        return value.size() == word.size() &&
               std::equal(value.begin(), value.end(), word.begin(),
                          [](char a, char b)
                          {
                              const auto lower = [](char c)
                              { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; };
                              return lower(a) == lower(b);
                          });
    };
    if (equalsNoCase("true") || value == "1")
    {
        return true;
    }
    if (equalsNoCase("false") || value == "0")
    {
        return false;
    }
    return std::nullopt;
}

std::optional<int> parseFd(std::string_view value) noexcept
{
    int fd = -1;
    const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), fd);
    if (ec != std::errc{} || end != value.data() + value.size() || fd < 0)
    {
        return std::nullopt;
    }
    return fd;
}

} // namespace

std::string_view cipherName(KeyCipher cipher) noexcept
{
    return cipher == KeyCipher::Aes256Cbc ? "aes-256-cbc" : "aes-128-cbc";
}

// ---- Key -----------------------------------------------------------------------------------

Key Key::fromBytes(protocol::ByteView raw)
{
    if (raw.size() != kAes128KeySize && raw.size() != kAes256KeySize)
    {
        throw std::invalid_argument(
            fmt::format("an AES key has 16 or 32 bytes, not {}", raw.size()));
    }
    Key key;
    std::copy(raw.begin(), raw.end(), key.bytes_.begin());
    key.size_ = raw.size();
    return key;
}

Key::Key(Key&& other) noexcept : bytes_(other.bytes_), size_(other.size_)
{
    other.wipe();
}

Key& Key::operator=(Key&& other) noexcept
{
    if (this != &other)
    {
        bytes_ = other.bytes_;
        size_ = other.size_;
        other.wipe();
    }
    return *this;
}

Key::~Key()
{
    wipe();
}

void Key::wipe() noexcept
{
    OPENSSL_cleanse(bytes_.data(), bytes_.size());
    size_ = 0;
}

// ---- KeySpec -------------------------------------------------------------------------------

KeySpec parseKeySpec(std::string_view optionName, std::string_view text)
{
    const auto fail = [optionName](const std::string& what)
    { return KeySpecError(fmt::format("{}: {}", optionName, what)); };

    KeySpec spec;
    std::optional<KeySpec::Source> source;
    std::vector<std::string_view> seen;

    std::size_t start = 0;
    while (start <= text.size())
    {
        const std::size_t comma = std::min(text.find(',', start), text.size());
        const std::string_view token = text.substr(start, comma - start);
        start = comma + 1;

        const std::size_t eq = token.find('=');
        const std::string_view name = token.substr(0, eq);
        const bool hasValue = eq != std::string_view::npos;
        const std::string_view value = hasValue ? token.substr(eq + 1) : std::string_view{};
        if (name.empty())
        {
            throw fail(token.empty() ? "empty parameter (stray comma?)"
                                     : fmt::format("parameter '{}' has no name", token));
        }
        if (std::find(seen.begin(), seen.end(), name) != seen.end())
        {
            throw fail(fmt::format("parameter '{}' given more than once", name));
        }
        seen.push_back(name);
        if (name != "remove" && (!hasValue || value.empty()))
        {
            throw fail(fmt::format("parameter '{}' needs a value ({}=...)", name, name));
        }

        const auto setSource = [&](KeySpec::Source s)
        {
            if (source)
            {
                throw fail(fmt::format("'{}' conflicts with an earlier key source; give exactly "
                                       "one of file=, fd=, pwdfile=, pwdfd=",
                                       name));
            }
            source = s;
        };
        const auto setFd = [&](KeySpec::Source s)
        {
            setSource(s);
            const auto fd = parseFd(value);
            if (!fd)
            {
                throw fail(fmt::format("invalid file descriptor '{}={}'", name, value));
            }
            spec.fd = *fd;
        };
        const auto setPath = [&](KeySpec::Source s)
        {
            setSource(s);
            spec.path = std::filesystem::absolute(std::filesystem::path(value));
        };

        if (name == "file")
        {
            setPath(KeySpec::Source::File);
        }
        else if (name == "pwdfile")
        {
            setPath(KeySpec::Source::PassphraseFile);
        }
        else if (name == "fd")
        {
            setFd(KeySpec::Source::Fd);
        }
        else if (name == "pwdfd")
        {
            setFd(KeySpec::Source::PassphraseFd);
        }
        else if (name == "mode")
        {
            if (value == "aes-128-cbc" || value == "aes-cbc")
            {
                spec.cipher = KeyCipher::Aes128Cbc;
            }
            else if (value == "aes-256-cbc")
            {
                spec.cipher = KeyCipher::Aes256Cbc;
            }
            else
            {
                throw fail(fmt::format("unknown mode '{}' (expected aes-128-cbc, aes-cbc or "
                                       "aes-256-cbc)",
                                       value));
            }
        }
        else if (name == "format")
        {
            if (value == "hex")
            {
                spec.format = KeySpec::Format::Hex;
            }
            else if (value == "binary")
            {
                spec.format = KeySpec::Format::Binary;
            }
            else
            {
                throw fail(fmt::format("unknown format '{}' (expected hex or binary)", value));
            }
        }
        else if (name == "kdf")
        {
            if (value == "pbkdf2")
            {
                spec.kdf = KeySpec::Kdf::Pbkdf2;
            }
            else if (value == "sha512")
            {
                spec.kdf = KeySpec::Kdf::Sha512;
            }
            else
            {
                throw fail(fmt::format("unknown kdf '{}' (expected pbkdf2 or sha512)", value));
            }
        }
        else if (name == "remove")
        {
            // swtpm takes anything but true/1 as false; a typo like remove=yes would then
            // silently keep the key file, so only true/false/1/0 are accepted here.
            const auto flag = hasValue ? parseBool(value) : std::optional<bool>(true);
            if (!flag)
            {
                throw fail(fmt::format("invalid value 'remove={}' (expected true or false)",
                                       value));
            }
            spec.remove = *flag;
        }
        else
        {
            throw fail(fmt::format("unknown parameter '{}'", name));
        }
    }
    if (!source)
    {
        throw fail("one of file=, fd=, pwdfile= or pwdfd= is required");
    }
    spec.source = *source;
    return spec;
}

// ---- loading and deriving ------------------------------------------------------------------

Key deriveKeyFromPassphrase(protocol::ByteView passphrase, KeyCipher cipher, KeySpec::Kdf kdf)
{
    const std::size_t keySize = keySizeOf(cipher);
    const ossl::Md sha512(EVP_MD_fetch(nullptr, "SHA512", nullptr));
    if (!sha512)
    {
        throw std::runtime_error("EVP_MD_fetch(SHA512) failed");
    }
    ScratchKey<kSha512Size> out;
    // An empty span may have a null data(); OpenSSL wants a real pointer either way.
    static constexpr unsigned char kNothing = 0;
    const auto* pass = passphrase.empty() ? &kNothing : passphrase.data();
    if (passphrase.size() > static_cast<std::size_t>(std::numeric_limits<int>::max()))
    {
        throw std::length_error("passphrase too long");
    }
    const int passLen = static_cast<int>(passphrase.size());

    if (kdf == KeySpec::Kdf::Pbkdf2)
    {
        if (PKCS5_PBKDF2_HMAC(reinterpret_cast<const char*>(pass), passLen, kPbkdf2Salt.data(),
                              static_cast<int>(kPbkdf2Salt.size()), kPbkdf2Iterations,
                              sha512.get(), static_cast<int>(keySize), out.bytes.data()) != 1)
        {
            throw std::runtime_error("PKCS5_PBKDF2_HMAC(SHA512) failed");
        }
    }
    else
    {
        unsigned int mdLen = 0;
        if (EVP_Digest(pass, passphrase.size(), out.bytes.data(), &mdLen, sha512.get(),
                       nullptr) != 1 ||
            mdLen != kSha512Size)
        {
            throw std::runtime_error("EVP_Digest(SHA512) failed");
        }
    }
    return Key::fromBytes(protocol::ByteView(out.bytes).first(keySize));
}

Key loadKey(const KeySpec& spec, std::string_view optionName)
{
    const std::string where = fmt::format("{}: {}", optionName, sourceName(spec));
    const bool passphrase = isPassphrase(spec.source);

    std::optional<Key> key;
    {
        UniqueFd fd = openSource(spec, where);
        // One byte more than allowed for passphrases, to tell "exactly the limit" from "more".
        SecretBuffer content(passphrase ? kMaxPassphraseSize + 1 : kMaxRawKeyRead);
        if (const int err =
                readSecret(fd.get(), content, passphrase ? kPassphraseChunk : kMaxRawKeyRead);
            err != 0)
        {
            throw std::runtime_error(fmt::format("{}: cannot read: {}", where, errnoText(err)));
        }
        if (passphrase)
        {
            if (content.size() > kMaxPassphraseSize)
            {
                throw std::runtime_error(fmt::format("{}: passphrase is longer than {} bytes",
                                                     where, kMaxPassphraseSize));
            }
            if (content.size() <= kWeakPassphraseSize)
            {
                spdlog::warn("{}: the passphrase has only {} bytes; use a longer one", where,
                             content.size());
            }
            key.emplace(deriveKeyFromPassphrase(content.view(), spec.cipher, spec.kdf));
        }
        else if (spec.format == KeySpec::Format::Hex)
        {
            key.emplace(parseHexKey(content.view(), spec.cipher, where));
        }
        else
        {
            key.emplace(parseBinaryKey(content.view(), spec.cipher, where));
        }
    } // the descriptor is closed here, before the file is removed

    if (spec.remove && isPath(spec.source) && ::unlink(spec.path.c_str()) != 0)
    {
        // The key was read and the daemon can run; the operator must learn the file stayed.
        const int err = errno;
        spdlog::warn("{}: cannot remove the key file as requested: {}", where, errnoText(err));
    }
    return std::move(*key);
}

} // namespace vtpm::state

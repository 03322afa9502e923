#pragma once

#include "protocol/byte_io.hpp"

#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string_view>

// State and migration keys (`--key`, `--migration-key`, protocol.md §7.6): the option grammar,
// reading the key or passphrase, and the passphrase KDFs. The key bytes live only inside Key,
// which wipes them on destruction and has no way to be printed.
namespace vtpm::state
{

enum class KeyCipher
{
    Aes128Cbc,
    Aes256Cbc,
};

inline constexpr std::size_t kAes128KeySize = 16;
inline constexpr std::size_t kAes256KeySize = 32;

// Key length in bytes of a cipher (16 or 32).
[[nodiscard]] constexpr std::size_t keySizeOf(KeyCipher cipher) noexcept
{
    return cipher == KeyCipher::Aes256Cbc ? kAes256KeySize : kAes128KeySize;
}

// "aes-128-cbc" or "aes-256-cbc", for messages.
[[nodiscard]] std::string_view cipherName(KeyCipher cipher) noexcept;

// A symmetric AES key of 16 or 32 bytes. Move-only; the bytes are OPENSSL_cleansed on
// destruction and when moved from (a moved-from Key is empty: size() == 0). There is
// deliberately no operator<< or formatter.
class Key
{
public:
    // Copies raw into a new key. Throws std::invalid_argument unless raw has 16 or 32 bytes
    // (the message gives the size only).
    static Key fromBytes(protocol::ByteView raw);

    Key(const Key&) = delete;
    Key& operator=(const Key&) = delete;
    Key(Key&& other) noexcept;
    Key& operator=(Key&& other) noexcept;
    ~Key();

    [[nodiscard]] protocol::ByteView bytes() const noexcept { return {bytes_.data(), size_}; }
    [[nodiscard]] bool is256() const noexcept { return size_ == kAes256KeySize; }
    [[nodiscard]] std::size_t size() const noexcept { return size_; }
    [[nodiscard]] KeyCipher cipher() const noexcept
    {
        return is256() ? KeyCipher::Aes256Cbc : KeyCipher::Aes128Cbc;
    }

private:
    Key() noexcept = default;
    void wipe() noexcept;

    std::array<std::uint8_t, kAes256KeySize> bytes_{};
    std::size_t size_ = 0;
};

// A parsed --key / --migration-key option (swtpm's grammar, §7.6). Holds where the secret is,
// never the secret itself.
struct KeySpec
{
    enum class Source
    {
        File,           // file=<path>: raw key
        Fd,             // fd=<n>: raw key
        PassphraseFile, // pwdfile=<path>: passphrase → KDF
        PassphraseFd,   // pwdfd=<n>: passphrase → KDF
    };
    enum class Format
    {
        Hex,
        Binary,
    };
    enum class Kdf
    {
        Pbkdf2,
        Sha512,
    };

    Source source = Source::File;
    std::filesystem::path path; // File / PassphraseFile: absolute
    int fd = -1;                // Fd / PassphraseFd
    KeyCipher cipher = KeyCipher::Aes128Cbc;
    Format format = Format::Hex; // raw keys only
    Kdf kdf = Kdf::Pbkdf2;       // passphrases only
    bool remove = false;         // unlink the file after reading (paths only)
};

struct KeySpecError : std::runtime_error
{
    using std::runtime_error::runtime_error;
};

// Parses "file=…|fd=…|pwdfile=…|pwdfd=…[,mode=aes-128-cbc|aes-cbc|aes-256-cbc]
// [,format=hex|binary][,kdf=sha512|pbkdf2][,remove[=true|false]]". Exactly one source is
// required; unknown, repeated or empty parameters are errors. Throws KeySpecError whose message
// starts with optionName and names the offending parameter/value. Relative paths are made
// absolute (against the current directory) so a later chdir cannot change their meaning.
KeySpec parseKeySpec(std::string_view optionName, std::string_view text);

// Upper bound on a passphrase (file or fd); swtpm has none, but a secret this size is a mistake.
inline constexpr std::size_t kMaxPassphraseSize = 64 * 1024;

// Bytes read for a raw key, as swtpm: "0x" + 64 hex digits + one terminator.
inline constexpr std::size_t kMaxRawKeyRead = 67;

// Reads and converts the key of spec (§7.6):
//  * file/fd, format=hex: optional "0x", then exactly 32 (aes-128-cbc) or 64 (aes-256-cbc)
//    hex digits, ended by end of data, NUL or whitespace (whatever follows is ignored);
//  * file/fd, format=binary: 16 or 32 bytes, not more than the mode's key length (a 16-byte
//    key with mode=aes-256-cbc is used as AES-128, as swtpm does, with a warning);
//  * pwdfile/pwdfd: the whole content is the passphrase (no trimming), turned into a key of
//    the mode's length by PBKDF2-HMAC-SHA512 (salt "swtpm", 1000 iterations) or SHA-512;
//    warns when it is 6 bytes or shorter.
// An fd source is consumed: read and then closed, whatever the outcome (as swtpm does). With
// `remove`, a file source is unlinked after a successful read. Throws std::runtime_error
// starting with optionName and naming the file or fd; messages never contain key material.
Key loadKey(const KeySpec& spec, std::string_view optionName);

// The passphrase KDFs on their own (used by loadKey; exposed for tests and tools).
Key deriveKeyFromPassphrase(protocol::ByteView passphrase, KeyCipher cipher, KeySpec::Kdf kdf);

} // namespace vtpm::state

#pragma once

#include "protocol/blob_type.hpp"
#include "protocol/byte_io.hpp"
#include "protocol/tpm_version.hpp"
#include "state/stored_blob.hpp"

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <sys/types.h>

// The storage backends behind `--tpmstate` (protocol.md §7.1): one interface, two layouts (a
// directory of files, §7.2, or one linear image file or block device, §7.3), and the durability
// rules both share (doc/durability.md): no acknowledged write is lost to a killed daemon, a
// damaged copy is never taken for a missing one, and the last good copy survives to fall back on.
namespace vtpm::state
{

class Key; // state/key.hpp; storage only passes it through to the blob codec

// Blobs above this size are refused on load (and never written): a TPM 2 permall is ~1.3 KiB
// and volatilestate ~9 KiB, so anything this big is not ours and must not be slurped into RAM.
inline constexpr std::uint64_t kMaxStateFileSize = std::uint64_t{16} * 1024 * 1024;

// Default mode of state files; swtpm uses 0640, the house rule is owner-only.
inline constexpr mode_t kDefaultStateFileMode = 0600;

// How often and how many extra times lock() retries a contended lock (protocol.md §7.7).
inline constexpr unsigned kLockRetryIntervalMs = 10;

// When a store is made power-loss durable (doc/durability.md). Every policy survives kill -9 of
// the daemon for every acknowledged store: the data is in the kernel before store() returns.
enum class FsyncPolicy
{
    Always,   // fsync data and directory/header before store() returns
    Deferred, // a background thread fsyncs right after store() returns (the default)
    Never,    // no fsync at all (tmpfs, tests)
};

// "always", "deferred", "never".
[[nodiscard]] std::string_view fsyncPolicyName(FsyncPolicy policy) noexcept;
// Inverse of fsyncPolicyName; nullopt for anything else.
[[nodiscard]] std::optional<FsyncPolicy> parseFsyncPolicy(std::string_view text) noexcept;

struct StorageOptions
{
    protocol::TpmVersion version = protocol::TpmVersion::Tpm2;
    // The `mode=` the user gave, applied exactly; nullopt → kDefaultStateFileMode.
    std::optional<mode_t> fileMode;
    FsyncPolicy fsync = FsyncPolicy::Deferred;
    // Keep the previous good copy of each blob and fall back to it, loudly, when the current
    // one fails to parse or authenticate. Without it a damaged blob is an error naming it.
    bool backup = true;
    // The state key (--key); not owned, must outlive the storage. nullptr = plaintext.
    const Key* stateKey = nullptr;
    // Crash-test hook: called with a step name ("temp-written", "renamed", "header-written"...)
    // between the steps of a store, so a test can kill the process there. Empty in production.
    std::function<void(std::string_view step)> testHook;
};

enum class LoadStatus
{
    Ok,       // plaintext is valid
    NotFound, // no such blob: first start, not an error (libtpms wants TPM_RETRY)
    Error,    // error is set; the message names the file
};

struct LoadResult
{
    LoadStatus status = LoadStatus::Error;
    protocol::Bytes plaintext;
    std::optional<BlobError> error;
    // Ok, but the current copy was damaged (or missing beside a backup) and plaintext comes
    // from the last good copy; already logged at critical level naming both copies.
    bool usedBackup = false;
};

// A `backend-uri=` value: "dir:///abs/path" or "file:///abs/path" (swtpm's spelling).
struct StorageUri
{
    enum class Kind
    {
        Dir,
        File,
    };
    Kind kind = Kind::Dir;
    std::filesystem::path path;
};

// Throws std::invalid_argument with a message quoting the URI if the scheme is unknown or the
// path is not absolute.
StorageUri parseStorageUri(std::string_view uri);

class Storage
{
public:
    Storage(const Storage&) = delete;
    Storage& operator=(const Storage&) = delete;
    virtual ~Storage() = default;

    // Opens the directory or image; throws std::system_error/std::runtime_error naming the
    // path. Must be called before anything else.
    virtual void init() = 0;

    // Reads and decodes one blob. A damaged blob is never NotFound: treating it as absent
    // would make libtpms manufacture a fresh TPM over the user's keys.
    [[nodiscard]] virtual LoadResult load(protocol::BlobType type) = 0;

    // Encodes and stores atomically: after a crash at any point the blob loads as the old or
    // the new content. On failure the old content is untouched; the error names the file.
    [[nodiscard]] virtual std::optional<BlobError> store(protocol::BlobType type,
                                                         protocol::ByteView plaintext) = 0;

    // Deletes a blob and its backup; a missing blob is an error only if mustExist.
    [[nodiscard]] virtual std::optional<BlobError> remove(protocol::BlobType type,
                                                          bool mustExist) = 0;

    // Size of the stored blob if there is one (for --print-states); throws std::system_error
    // on errors other than "does not exist".
    [[nodiscard]] virtual std::optional<std::uint64_t> storedSize(protocol::BlobType type) const = 0;

    // The fcntl write lock of protocol.md §7.7, retried every kLockRetryIntervalMs up to
    // `retries` extra times. True if held afterwards.
    [[nodiscard]] virtual bool lock(unsigned retries, std::string* error = nullptr) = 0;
    virtual void unlock() noexcept = 0;
    [[nodiscard]] virtual bool locked() const noexcept = 0;

    // Where a blob lives, for messages: a file path, or "file:///img (permall)".
    [[nodiscard]] virtual std::string describe(protocol::BlobType type) const = 0;

    // Makes every completed store power-loss durable now (waits for deferred fsyncs); call at
    // exit. Failures are logged at critical level naming the file.
    virtual void flush() = 0;

protected:
    Storage() = default;
    Storage(Storage&&) noexcept = default; // backends may be movable
    Storage& operator=(Storage&&) noexcept = default;
};

// A DirStorage or FileStorage for the URI; init() is still to be called.
std::unique_ptr<Storage> openStorage(const StorageUri& uri, const StorageOptions& options);

// vtpmd's integrity element, appended to plaintext stored blobs after the DATA element:
// SHA-256 of the plaintext. swtpm skips elements it does not know (its TLV search walks past
// them), so files stay readable by swtpm; blobs without it (written by swtpm) still load.
// Encrypted blobs carry swtpm's HMAC instead.
inline constexpr std::uint16_t kStorageDigestTag = 0x7664; // "vd"
inline constexpr std::size_t kStorageDigestSize = 32;

// The blob codec with the optional state key, for the backends. error (naming `where`) if the
// encryption fails or the encoded blob would exceed kMaxStateFileSize; nothing is written then.
struct EncodeResult
{
    protocol::Bytes blob;
    std::optional<BlobError> error;
};
EncodeResult encodeForStorage(protocol::ByteView plaintext, const Key* stateKey,
                              std::string_view where);

// decodeStoredBlob plus, for plaintext version-2 blobs, a strict walk of the elements (only
// DATA and the digest, each at most once, exactly filling the blob) and the digest check, so
// a flipped bit in the payload is caught here instead of reaching libtpms.
DecodeResult decodeFromStorage(protocol::ByteView blob, const Key* stateKey);

} // namespace vtpm::state

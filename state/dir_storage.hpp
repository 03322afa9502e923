#pragma once

#include "protocol/blob_type.hpp"
#include "protocol/byte_io.hpp"
#include "protocol/tpm_version.hpp"
#include "state/stored_blob.hpp"
#include "state/unique_fd.hpp"

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

#include <sys/types.h>

// swtpm-compatible directory backend (`--tpmstate dir=`, protocol.md §7.2, §7.7): one file per
// blob named like swtpm's, written atomically, plus the `.lock` file that keeps two daemons off
// the same state. All file access goes through a directory fd opened by init(), so a directory
// renamed or replaced underneath us cannot redirect writes elsewhere.
namespace vtpm::state
{

// Files above this size are refused on load (and never written): a TPM 2 permall is ~1.3 KiB
// and volatilestate ~9 KiB, so anything this big is not ours and must not be slurped into RAM.
inline constexpr std::uint64_t kMaxStateFileSize = std::uint64_t{16} * 1024 * 1024;

// Default mode of state files; swtpm uses 0640, the house rule is owner-only.
inline constexpr mode_t kDefaultStateFileMode = 0600;

// How often and how many extra times lock() retries a contended lock (protocol.md §7.7).
inline constexpr unsigned kLockRetryIntervalMs = 10;

enum class LoadStatus
{
    Ok,       // plaintext is valid
    NotFound, // no such file: first start, not an error (libtpms wants TPM_RETRY)
    Error,    // error is set; the message names the file
};

struct LoadResult
{
    LoadStatus status = LoadStatus::Error;
    protocol::Bytes plaintext;
    std::optional<BlobError> error;
};

class DirStorage
{
public:
    // fileMode: the `mode=` the user gave, applied exactly; nullopt → kDefaultStateFileMode.
    DirStorage(std::filesystem::path dir, protocol::TpmVersion version,
               std::optional<mode_t> fileMode);

    // Opens the directory. Throws std::system_error naming the path if it is missing, not a
    // directory or not accessible. Must be called before anything else.
    void init();

    // <dir>/tpm2-00.permall (TPM 2) or <dir>/tpm-00.permall (TPM 1.2), etc.
    [[nodiscard]] std::filesystem::path pathOf(protocol::BlobType type) const;

    // Reads and decodes one blob. A corrupt, truncated, oversized or non-regular file is an
    // Error naming the file, never NotFound: treating it as absent would make libtpms
    // manufacture a fresh TPM over the user's keys.
    [[nodiscard]] LoadResult load(protocol::BlobType type);

    // Encodes and writes atomically (temp file, fsync, rename, fsync dir). On failure the
    // previous file is untouched and no temp file is left; the error names the file.
    [[nodiscard]] std::optional<BlobError> store(protocol::BlobType type,
                                                 protocol::ByteView plaintext);

    // Deletes one blob; a missing file is an error only if mustExist.
    [[nodiscard]] std::optional<BlobError> remove(protocol::BlobType type, bool mustExist);

    // Size of the stored file if it exists (for --print-states); throws std::system_error on
    // errors other than "does not exist".
    [[nodiscard]] std::optional<std::uint64_t> storedSize(protocol::BlobType type) const;

    // Takes the fcntl write lock on <dir>/.lock, retrying every kLockRetryIntervalMs up to
    // `retries` extra times. True if the lock is now held (or already was). POSIX locks belong
    // to the process: a second DirStorage in the same process would "succeed" too.
    [[nodiscard]] bool lock(unsigned retries, std::string* error = nullptr);

    // Releases the lock by closing the lock file.
    void unlock() noexcept;

    [[nodiscard]] bool locked() const noexcept { return lockFd_.valid(); }

    [[nodiscard]] const std::filesystem::path& dir() const noexcept { return dir_; }

private:
    [[nodiscard]] std::string fileName(protocol::BlobType type) const;
    [[nodiscard]] std::string tempName(protocol::BlobType type) const;
    [[nodiscard]] std::optional<BlobError> writeFile(const std::string& name,
                                                     protocol::ByteView bytes);

    std::filesystem::path dir_;
    protocol::TpmVersion version_;
    std::optional<mode_t> fileMode_;
    UniqueFd dirFd_;
    UniqueFd lockFd_;
};

} // namespace vtpm::state

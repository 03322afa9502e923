#pragma once

#include "protocol/blob_type.hpp"
#include "protocol/byte_io.hpp"
#include "protocol/tpm_version.hpp"
#include "state/storage.hpp"
#include "state/stored_blob.hpp"
#include "state/unique_fd.hpp"

#include <array>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <sys/types.h>

// swtpm-compatible directory backend (`--tpmstate dir=`, protocol.md §7.2, §7.7): one file per
// blob named like swtpm's, written atomically, plus the `.lock` file that keeps two daemons off
// the same state. All file access goes through a directory fd opened by init(), so a directory
// renamed or replaced underneath us cannot redirect writes elsewhere.
//
// With backup (the default) `<name>.bak` is a hard link to the previous good version, swapped in
// atomically before each new version is renamed into place, so at every instant both a complete
// current file and a complete last good copy exist (doc/durability.md).
namespace vtpm::state
{

class SyncWorker;

class DirStorage final : public Storage
{
public:
    DirStorage(std::filesystem::path dir, StorageOptions options);
    // fileMode: the `mode=` the user gave, applied exactly; nullopt → kDefaultStateFileMode.
    // stateKey: the `--key` state key (borrowed; must outlive this object), or null for
    // plaintext files. With a key every file is written encrypted and must load as such.
    // Every other option at its StorageOptions default (deferred fsync, backup on).
    DirStorage(std::filesystem::path dir, protocol::TpmVersion version,
               std::optional<mode_t> fileMode, const Key* stateKey = nullptr);
    DirStorage(DirStorage&& other) noexcept;
    DirStorage& operator=(DirStorage&&) = delete;
    DirStorage(const DirStorage&) = delete;
    DirStorage& operator=(const DirStorage&) = delete;
    // Waits for deferred fsyncs.
    ~DirStorage() override;

    // Opens the directory. Throws std::system_error naming the path if it is missing, not a
    // directory or not accessible. Must be called before anything else.
    void init() override;

    // <dir>/tpm2-00.permall (TPM 2) or <dir>/tpm-00.permall (TPM 1.2), etc.
    [[nodiscard]] std::filesystem::path pathOf(protocol::BlobType type) const;

    // <dir>/tpm2-00.permall.bak: the last good copy kept with backup.
    [[nodiscard]] std::filesystem::path backupPathOf(protocol::BlobType type) const;

    // Reads and decodes one blob. A corrupt, truncated, oversized or non-regular file is an
    // Error naming the file, never NotFound: treating it as absent would make libtpms
    // manufacture a fresh TPM over the user's keys. With backup, a file that fails to parse or
    // authenticate is replaced by its `.bak` (logged at critical level, usedBackup set), and a
    // `.bak` without its file (a swap interrupted by a crash) is restored.
    [[nodiscard]] LoadResult load(protocol::BlobType type) override;

    // Encodes and writes atomically: temp file, [fsync], current file hard-linked to `.bak`,
    // rename over the current file, [fsync directory] (doc/durability.md). On failure the
    // previous file is untouched and no temp file is left; the error names the file. A current
    // file that failed to load is moved to `<name>.corrupt`, never overwritten and never made
    // the backup.
    [[nodiscard]] std::optional<BlobError> store(protocol::BlobType type,
                                                 protocol::ByteView plaintext) override;

    // Deletes one blob and its backup; a missing file is an error only if mustExist.
    [[nodiscard]] std::optional<BlobError> remove(protocol::BlobType type,
                                                  bool mustExist) override;

    // Size of the stored file if it exists (for --print-states); throws std::system_error on
    // errors other than "does not exist".
    [[nodiscard]] std::optional<std::uint64_t> storedSize(protocol::BlobType type) const override;

    // Takes the fcntl write lock on <dir>/.lock, retrying every kLockRetryIntervalMs up to
    // `retries` extra times. True if the lock is now held (or already was). POSIX locks belong
    // to the process: a second DirStorage in the same process would "succeed" too.
    [[nodiscard]] bool lock(unsigned retries, std::string* error = nullptr) override;

    // Releases the lock by closing the lock file.
    void unlock() noexcept override;

    [[nodiscard]] bool locked() const noexcept override { return lockFd_.valid(); }

    // The file path.
    [[nodiscard]] std::string describe(protocol::BlobType type) const override;

    // Waits for deferred fsyncs; failures are logged at critical level.
    void flush() override;

    [[nodiscard]] const std::filesystem::path& dir() const noexcept { return dir_; }
    [[nodiscard]] const StorageOptions& options() const noexcept { return options_; }

private:
    // What this process knows about the current file of a blob type, so that a damaged file
    // is never rotated into the backup slot.
    enum class Known
    {
        Unknown, // not looked at yet
        Good,    // loaded or written by us
        Damaged, // failed to parse: .bak stays, the file is moved aside on the next store
        Absent,  // no such file
        Other,   // unreadable or not a regular file: left alone, the store will report it
    };

    struct FileRead
    {
        LoadResult result;
        bool damaged = false; // the bytes are there but wrong: a backup may stand in
    };

    [[nodiscard]] std::string fileName(protocol::BlobType type) const;
    [[nodiscard]] std::string tempName(protocol::BlobType type) const;
    [[nodiscard]] FileRead readBlob(const std::string& name) const;
    [[nodiscard]] LoadResult loadWithBackup(protocol::BlobType type, FileRead current);
    [[nodiscard]] std::optional<BlobError> writeFile(const std::string& name,
                                                     protocol::ByteView bytes, UniqueFd& keep);
    [[nodiscard]] std::optional<BlobError> prepareSwap(protocol::BlobType type);
    [[nodiscard]] std::optional<BlobError> finishStore(const std::filesystem::path& path,
                                                       UniqueFd written);
    [[nodiscard]] std::optional<BlobError> takeWorkerError();
    [[nodiscard]] Known& known(protocol::BlobType type) noexcept;
    void step(std::string_view name) const;

    std::filesystem::path dir_;
    StorageOptions options_;
    UniqueFd dirFd_;
    UniqueFd lockFd_;
    std::array<Known, protocol::kAllBlobTypes.size()> known_{};
    std::unique_ptr<SyncWorker> worker_; // declared last: drains before dirFd_ closes
};

} // namespace vtpm::state

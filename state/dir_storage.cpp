#include "state/dir_storage.hpp"

#include "state/durability.hpp"
#include "state/posix_io.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <cerrno>
#include <chrono>
#include <system_error>
#include <thread>
#include <utility>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace vtpm::state
{

namespace rc = protocol::rc;
using posix::errnoText;
using posix::fileError;
using posix::fsyncRetry;
using posix::openAt;

namespace
{

constexpr const char* kLockFileName = ".lock";
constexpr mode_t kLockFileMode = 0600;
constexpr std::string_view kBackupSuffix = ".bak";
constexpr std::string_view kCorruptSuffix = ".corrupt";

BlobError notInitialised(const std::filesystem::path& path)
{
    return BlobError{.code = rc::kFail,
                     .message = fmt::format("{}: storage not initialised", path.string())};
}

StorageOptions legacyOptions(protocol::TpmVersion version, std::optional<mode_t> fileMode,
                             const Key* stateKey)
{
    StorageOptions options;
    options.version = version;
    options.fileMode = fileMode;
    options.stateKey = stateKey;
    return options;
}

// unlinkat that treats "already gone" as success; 0 or an errno value.
int unlinkIfPresent(int dirFd, const std::string& name)
{
    if (::unlinkat(dirFd, name.c_str(), 0) != 0 && errno != ENOENT)
    {
        return errno;
    }
    return 0;
}

} // namespace

DirStorage::DirStorage(std::filesystem::path dir, StorageOptions options) :
    dir_(std::move(dir)), options_(std::move(options))
{
}

DirStorage::DirStorage(std::filesystem::path dir, protocol::TpmVersion version,
                       std::optional<mode_t> fileMode, const Key* stateKey) :
    DirStorage(std::move(dir), legacyOptions(version, fileMode, stateKey))
{
}

DirStorage::DirStorage(DirStorage&& other) noexcept = default;

DirStorage::~DirStorage()
{
    try
    {
        flush();
    }
    catch (...) // NOLINT(bugprone-empty-catch): nothing sensible is left to do at destruction
    {
    }
}

void DirStorage::init()
{
    const int fd = openAt(AT_FDCWD, dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
    {
        const int err = errno;
        throw std::system_error(err, std::system_category(),
                                fmt::format("state directory {}", dir_.string()));
    }
    dirFd_.reset(fd);
}

std::string DirStorage::fileName(protocol::BlobType type) const
{
    // <prefix>-<NN>.<name>; NN is the TPM number, always 00 for swtpm (protocol.md §7.2).
    const char* prefix = options_.version == protocol::TpmVersion::Tpm2 ? "tpm2" : "tpm";
    return fmt::format("{}-00.{}", prefix, protocol::blobName(type));
}

std::string DirStorage::tempName(protocol::BlobType type) const
{
    const char* prefix = options_.version == protocol::TpmVersion::Tpm2 ? "TMP2" : "TMP";
    return fmt::format("{}-00.{}", prefix, protocol::blobName(type));
}

std::filesystem::path DirStorage::pathOf(protocol::BlobType type) const
{
    return dir_ / fileName(type);
}

std::filesystem::path DirStorage::backupPathOf(protocol::BlobType type) const
{
    return dir_ / (fileName(type) + std::string(kBackupSuffix));
}

std::string DirStorage::describe(protocol::BlobType type) const
{
    return pathOf(type).string();
}

DirStorage::Known& DirStorage::known(protocol::BlobType type) noexcept
{
    return known_.at(static_cast<std::size_t>(type) - 1);
}

void DirStorage::step(std::string_view name) const
{
    if (options_.testHook)
    {
        options_.testHook(name);
    }
}

DirStorage::FileRead DirStorage::readBlob(const std::string& name) const
{
    FileRead read;
    LoadResult& result = read.result;
    const std::filesystem::path path = dir_ / name;

    UniqueFd fd(openAt(dirFd_.get(), name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
    if (!fd)
    {
        const int err = errno;
        if (err == ENOENT)
        {
            result.status = LoadStatus::NotFound;
            return read;
        }
        result.error = fileError(path, "cannot open", err);
        return read;
    }

    struct stat st
    {
    };
    if (::fstat(fd.get(), &st) != 0)
    {
        result.error = fileError(path, "cannot stat", errno);
        return read;
    }
    if (!S_ISREG(st.st_mode))
    {
        result.error = BlobError{.code = rc::kFail,
                                 .message = fmt::format("{}: not a regular file", path.string())};
        return read;
    }
    const auto size = static_cast<std::uint64_t>(st.st_size);
    if (st.st_size < 0 || size > kMaxStateFileSize)
    {
        result.error = BlobError{
            .code = rc::kFail,
            .message = fmt::format("{}: {} bytes is too large for a state file (limit {})",
                                   path.string(), st.st_size, kMaxStateFileSize)};
        read.damaged = true;
        return read;
    }

    protocol::Bytes bytes(static_cast<std::size_t>(size));
    if (const int err = posix::readAll(fd.get(), bytes); err != 0)
    {
        result.error = fileError(path, "cannot read", err);
        read.damaged = err == EIO || err == ENODATA; // media error or shrunk: the data is bad
        return read;
    }

    DecodeResult decoded = decodeFromStorage(bytes, options_.stateKey);
    if (decoded.error)
    {
        decoded.error->message =
            fmt::format("{}: corrupt state file: {}", path.string(), decoded.error->message);
        result.error = std::move(decoded.error);
        read.damaged = true;
        return read;
    }
    result.status = LoadStatus::Ok;
    result.plaintext = std::move(decoded.plaintext);
    return read;
}

LoadResult DirStorage::load(protocol::BlobType type)
{
    if (!dirFd_)
    {
        LoadResult result;
        result.error = notInitialised(pathOf(type));
        return result;
    }
    FileRead current = readBlob(fileName(type));
    switch (current.result.status)
    {
    case LoadStatus::Ok:
        known(type) = Known::Good;
        return std::move(current.result);
    case LoadStatus::NotFound:
        known(type) = Known::Absent;
        break;
    case LoadStatus::Error:
        known(type) = current.damaged ? Known::Damaged : Known::Other;
        break;
    }
    if (!options_.backup || (current.result.status == LoadStatus::Error && !current.damaged))
    {
        return std::move(current.result);
    }
    return loadWithBackup(type, std::move(current));
}

LoadResult DirStorage::loadWithBackup(protocol::BlobType type, FileRead current)
{
    const std::filesystem::path path = pathOf(type);
    const std::filesystem::path bakPath = backupPathOf(type);
    const std::string bakName = fileName(type) + std::string(kBackupSuffix);
    FileRead backup = readBlob(bakName);

    if (current.result.status == LoadStatus::NotFound)
    {
        if (backup.result.status == LoadStatus::NotFound)
        {
            return std::move(current.result); // a new TPM
        }
        if (backup.result.status == LoadStatus::Error)
        {
            LoadResult result;
            result.error = BlobError{
                .code = rc::kFail,
                .message = fmt::format("{} is missing and its backup is unusable: {}",
                                       path.string(), backup.result.error->message)};
            return result;
        }
        // Only a swap interrupted by a crash (swtpm renames the file to .bak first) leaves a
        // backup without its file: put it back, keeping the .bak.
        const std::string temp = tempName(type);
        (void)unlinkIfPresent(dirFd_.get(), temp);
        if (::linkat(dirFd_.get(), bakName.c_str(), dirFd_.get(), temp.c_str(), 0) == 0 &&
            ::renameat(dirFd_.get(), temp.c_str(), dirFd_.get(), fileName(type).c_str()) == 0)
        {
            (void)fsyncRetry(dirFd_.get());
            known(type) = Known::Good;
            spdlog::critical("{} was missing beside its backup (an interrupted update): "
                             "restored it from {}",
                             path.string(), bakPath.string());
        }
        else
        {
            const int err = errno;
            (void)unlinkIfPresent(dirFd_.get(), temp);
            spdlog::critical("{} is missing: using its backup {} (cannot restore it: {})",
                             path.string(), bakPath.string(), errnoText(err));
        }
        backup.result.usedBackup = true;
        return std::move(backup.result);
    }

    // The current file is damaged.
    if (backup.result.status == LoadStatus::Ok)
    {
        spdlog::critical("{}; FALLING BACK to the last good copy {} (the most recent update of "
                         "this state may be lost; the damaged file is kept as {}{})",
                         current.result.error->message, bakPath.string(), path.string(),
                         kCorruptSuffix);
        backup.result.usedBackup = true;
        return std::move(backup.result);
    }
    LoadResult result = std::move(current.result);
    result.error->message +=
        backup.result.status == LoadStatus::NotFound
            ? fmt::format(" (no backup {} to fall back to)", bakPath.string())
            : fmt::format(" (and the backup is unusable too: {})", backup.result.error->message);
    return result;
}

std::optional<BlobError> DirStorage::store(protocol::BlobType type, protocol::ByteView plaintext)
{
    const std::filesystem::path path = pathOf(type);
    if (!dirFd_)
    {
        return notInitialised(path);
    }
    // Refuse what load() would refuse, rather than write a file we cannot read back.
    if (plaintext.size() > kMaxStateFileSize - kBlobHeaderSize - kTlvHeaderSize)
    {
        return BlobError{.code = rc::kFail,
                         .message = fmt::format("{}: {} bytes of state exceed the file limit",
                                                path.string(), plaintext.size())};
    }
    if (auto error = takeWorkerError())
    {
        return error;
    }
    EncodeResult encoded = encodeForStorage(plaintext, options_.stateKey, path.string());
    if (encoded.error)
    {
        return std::move(encoded.error);
    }

    const std::string temp = tempName(type);
    UniqueFd written;
    if (auto error = writeFile(temp, encoded.blob, written))
    {
        (void)::unlinkat(dirFd_.get(), temp.c_str(), 0);
        return error;
    }
    if (auto error = prepareSwap(type))
    {
        (void)::unlinkat(dirFd_.get(), temp.c_str(), 0);
        return error;
    }
    if (::renameat(dirFd_.get(), temp.c_str(), dirFd_.get(), fileName(type).c_str()) != 0)
    {
        const int err = errno;
        (void)::unlinkat(dirFd_.get(), temp.c_str(), 0);
        return fileError(path, fmt::format("cannot rename {} onto it", temp), err);
    }
    known(type) = Known::Good;
    step("renamed");
    return finishStore(path, std::move(written));
}

std::optional<BlobError> DirStorage::prepareSwap(protocol::BlobType type)
{
    if (!options_.backup)
    {
        return std::nullopt;
    }
    const std::string name = fileName(type);
    Known& state = known(type);
    if (state == Known::Unknown)
    {
        // First store of this type without a load (volatilestate, savestate): look before
        // making the current file the backup.
        const FileRead current = readBlob(name);
        state = current.result.status == LoadStatus::Ok         ? Known::Good
                : current.result.status == LoadStatus::NotFound ? Known::Absent
                : current.damaged                               ? Known::Damaged
                                                                : Known::Other;
    }

    if (state == Known::Good)
    {
        // Hard-link the current version to a temporary name, then rename that over .bak: the
        // old .bak stays complete until the new one replaces it in one step.
        const std::string bakTemp = tempName(type) + std::string(kBackupSuffix);
        const std::string bakName = name + std::string(kBackupSuffix);
        (void)unlinkIfPresent(dirFd_.get(), bakTemp);
        if (::linkat(dirFd_.get(), name.c_str(), dirFd_.get(), bakTemp.c_str(), 0) != 0)
        {
            const int err = errno;
            if (err != ENOENT)
            {
                // No hard links here (some FUSE/network file systems): the store itself is
                // still atomic, only the backup is not refreshed.
                spdlog::warn("{}: cannot keep a backup copy: link: {}",
                             backupPathOf(type).string(), errnoText(err));
            }
            return std::nullopt;
        }
        step("backup-linked");
        if (::renameat(dirFd_.get(), bakTemp.c_str(), dirFd_.get(), bakName.c_str()) != 0)
        {
            const int err = errno;
            (void)unlinkIfPresent(dirFd_.get(), bakTemp);
            spdlog::warn("{}: cannot keep a backup copy: rename: {}",
                         backupPathOf(type).string(), errnoText(err));
            return std::nullopt;
        }
        step("backup-renamed");
    }
    else if (state == Known::Damaged)
    {
        // Never overwrite a damaged file (it may be needed to recover by hand), and never let
        // it become the backup: move it aside, .bak keeps the last good copy.
        const std::string corrupt = name + std::string(kCorruptSuffix);
        if (::renameat(dirFd_.get(), name.c_str(), dirFd_.get(), corrupt.c_str()) != 0)
        {
            return fileError(pathOf(type), fmt::format("cannot move the damaged file to {}",
                                                       corrupt),
                             errno);
        }
        spdlog::warn("moved the damaged {} to {}", pathOf(type).string(), corrupt);
        step("damaged-moved");
    }
    return std::nullopt;
}

std::optional<BlobError> DirStorage::finishStore(const std::filesystem::path& path,
                                                 UniqueFd written)
{
    switch (options_.fsync)
    {
    case FsyncPolicy::Always:
        // The rename (and the .bak swap) are only durable once the directory is on disk.
        if (const int err = fsyncRetry(dirFd_.get()); err != 0)
        {
            return fileError(
                dir_, fmt::format("cannot fsync directory after writing {}", path.string()), err);
        }
        step("dir-synced");
        break;
    case FsyncPolicy::Deferred:
        if (!worker_)
        {
            worker_ = std::make_unique<SyncWorker>();
        }
        worker_->submit(std::move(written), dirFd_.get(), path.string());
        break;
    case FsyncPolicy::Never:
        break;
    }
    if (written)
    {
        if (const int err = written.close(); err != 0)
        {
            return fileError(path, "cannot close", err);
        }
    }
    return std::nullopt;
}

std::optional<BlobError> DirStorage::writeFile(const std::string& name, protocol::ByteView bytes,
                                               UniqueFd& keep)
{
    const std::filesystem::path path = dir_ / name;
    const mode_t mode = options_.fileMode.value_or(kDefaultStateFileMode);
    UniqueFd fd(openAt(dirFd_.get(), name.c_str(),
                       O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, mode));
    if (!fd)
    {
        return fileError(path, "cannot create", errno);
    }
    // O_CREAT applies the umask and keeps the mode of a stale temp file left by a crash;
    // fchmod makes the result exactly the configured mode in both cases.
    if (::fchmod(fd.get(), mode) != 0)
    {
        return fileError(path, fmt::format("cannot set mode {:04o}", mode), errno);
    }
    if (const int err = posix::writeAll(fd.get(), bytes); err != 0)
    {
        return fileError(path, "cannot write", err);
    }
    step("temp-written");
    if (options_.fsync == FsyncPolicy::Always)
    {
        if (const int err = fsyncRetry(fd.get()); err != 0)
        {
            return fileError(path, "cannot fsync", err);
        }
        step("temp-synced");
    }
    if (options_.fsync == FsyncPolicy::Deferred)
    {
        keep = std::move(fd); // the worker syncs it after the rename, then closes it
        return std::nullopt;
    }
    if (const int err = fd.close(); err != 0)
    {
        return fileError(path, "cannot close", err);
    }
    return std::nullopt;
}

std::optional<BlobError> DirStorage::takeWorkerError()
{
    return takeSyncError(worker_.get());
}

void DirStorage::flush()
{
    flushSyncWorker(worker_.get());
}

std::optional<BlobError> DirStorage::remove(protocol::BlobType type, bool mustExist)
{
    const std::filesystem::path path = pathOf(type);
    if (!dirFd_)
    {
        return notInitialised(path);
    }
    // The backup goes first: a .bak left without its file would be restored at the next start,
    // resurrecting state that was deleted on purpose (a stale volatilestate).
    const std::string bakName = fileName(type) + std::string(kBackupSuffix);
    for (const std::string& name : {bakName, tempName(type) + std::string(kBackupSuffix)})
    {
        if (const int err = unlinkIfPresent(dirFd_.get(), name); err != 0)
        {
            return fileError(dir_ / name, "cannot remove", err);
        }
    }
    bool removed = true;
    if (::unlinkat(dirFd_.get(), fileName(type).c_str(), 0) != 0)
    {
        const int err = errno;
        if (err != ENOENT || mustExist)
        {
            return fileError(path, "cannot remove", err);
        }
        removed = false;
    }
    known(type) = Known::Absent;
    if (!removed)
    {
        return std::nullopt;
    }
    // Make the deletion durable too: a resurrected volatilestate would resume stale RAM state.
    return finishStore(path, UniqueFd{});
}

std::optional<std::uint64_t> DirStorage::storedSize(protocol::BlobType type) const
{
    const std::filesystem::path path = pathOf(type);
    if (!dirFd_)
    {
        throw std::logic_error(fmt::format("{}: storage not initialised", path.string()));
    }
    struct stat st
    {
    };
    if (::fstatat(dirFd_.get(), fileName(type).c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0)
    {
        const int err = errno;
        if (err == ENOENT)
        {
            return std::nullopt;
        }
        throw std::system_error(err, std::system_category(), path.string());
    }
    return static_cast<std::uint64_t>(st.st_size);
}

bool DirStorage::lock(unsigned retries, std::string* error)
{
    if (lockFd_)
    {
        return true;
    }
    const std::filesystem::path path = dir_ / kLockFileName;
    auto fail = [&](std::string message)
    {
        if (error != nullptr)
        {
            *error = std::move(message);
        }
        return false;
    };
    if (!dirFd_)
    {
        return fail(fmt::format("{}: storage not initialised", path.string()));
    }

    UniqueFd fd(openAt(dirFd_.get(), kLockFileName, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC,
                       kLockFileMode));
    if (!fd)
    {
        return fail(fmt::format("{}: cannot open lock file: {}", path.string(), errnoText(errno)));
    }

    // A whole-file write lock (l_len 0 = to EOF and beyond), as swtpm takes, so swtpm and vtpmd
    // exclude each other.
    struct flock fl
    {
    };
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    fl.l_start = 0;
    fl.l_len = 0;
    for (unsigned attempt = 0;; ++attempt)
    {
        if (posix::setLock(fd.get(), &fl) == 0)
        {
            lockFd_ = std::move(fd);
            return true;
        }
        const int err = errno;
        if (err == EINTR)
        {
            continue;
        }
        if ((err != EACCES && err != EAGAIN) || attempt >= retries)
        {
            if (err == EACCES || err == EAGAIN)
            {
                return fail(fmt::format("{}: state is locked by another process", path.string()));
            }
            return fail(fmt::format("{}: cannot lock: {}", path.string(), errnoText(err)));
        }
        if (attempt == 0)
        {
            spdlog::debug("{} is locked by another process; retrying up to {} times", path.string(),
                          retries);
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(kLockRetryIntervalMs));
    }
}

void DirStorage::unlock() noexcept
{
    // Closing the descriptor drops the POSIX lock; nothing else in this process opens .lock,
    // so no other close can drop it early.
    lockFd_.reset();
}

} // namespace vtpm::state

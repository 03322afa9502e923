#include "state/dir_storage.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <cerrno>
#include <chrono>
#include <span>
#include <system_error>
#include <thread>
#include <utility>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace vtpm::state
{

namespace rc = protocol::rc;

namespace
{

constexpr const char* kLockFileName = ".lock";
constexpr mode_t kLockFileMode = 0600;

std::string errnoText(int err)
{
    return std::system_category().message(err);
}

BlobError fileError(const std::filesystem::path& path, std::string_view what, int err)
{
    return BlobError{.code = rc::kFail,
                     .message = fmt::format("{}: {}: {}", path.string(), what, errnoText(err))};
}

// write(2) until everything is out; short writes and EINTR are normal on some file systems.
int writeAll(int fd, protocol::ByteView bytes)
{
    while (!bytes.empty())
    {
        const ssize_t n = ::write(fd, bytes.data(), bytes.size());
        if (n < 0)
        {
            if (errno == EINTR)
            {
                continue;
            }
            return errno;
        }
        if (n == 0)
        {
            return EIO; // a regular file never accepts 0 bytes; avoid spinning forever
        }
        bytes = bytes.subspan(static_cast<std::size_t>(n));
    }
    return 0;
}

// Reads exactly out.size() bytes; ENODATA if the file ended early (it shrank under us).
int readAll(int fd, protocol::Bytes& out)
{
    std::size_t done = 0;
    while (done < out.size())
    {
        const std::span<std::uint8_t> rest = std::span(out).subspan(done);
        const ssize_t n = ::read(fd, rest.data(), rest.size());
        if (n < 0)
        {
            if (errno == EINTR)
            {
                continue;
            }
            return errno;
        }
        if (n == 0)
        {
            return ENODATA;
        }
        done += static_cast<std::size_t>(n);
    }
    return 0;
}

// The only calls of the variadic POSIX openat/fcntl, so the lint waiver is in one place.
int openAt(int dirFd, const char* name, int flags, mode_t mode = 0)
{
    return ::openat(dirFd, name, flags, mode); // NOLINT(cppcoreguidelines-pro-type-vararg)
}

int setLock(int fd, struct flock* fl)
{
    return ::fcntl(fd, F_SETLK, fl); // NOLINT(cppcoreguidelines-pro-type-vararg)
}

int fsyncRetry(int fd)
{
    while (::fsync(fd) != 0)
    {
        if (errno != EINTR)
        {
            return errno;
        }
    }
    return 0;
}

} // namespace

DirStorage::DirStorage(std::filesystem::path dir, protocol::TpmVersion version,
                       std::optional<mode_t> fileMode) :
    dir_(std::move(dir)),
    version_(version), fileMode_(fileMode)
{
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
    const char* prefix = version_ == protocol::TpmVersion::Tpm2 ? "tpm2" : "tpm";
    return fmt::format("{}-00.{}", prefix, protocol::blobName(type));
}

std::string DirStorage::tempName(protocol::BlobType type) const
{
    const char* prefix = version_ == protocol::TpmVersion::Tpm2 ? "TMP2" : "TMP";
    return fmt::format("{}-00.{}", prefix, protocol::blobName(type));
}

std::filesystem::path DirStorage::pathOf(protocol::BlobType type) const
{
    return dir_ / fileName(type);
}

LoadResult DirStorage::load(protocol::BlobType type)
{
    LoadResult result;
    const std::filesystem::path path = pathOf(type);
    if (!dirFd_)
    {
        result.error =
            BlobError{.code = rc::kFail,
                      .message = fmt::format("{}: storage not initialised", path.string())};
        return result;
    }

    UniqueFd fd(openAt(dirFd_.get(), fileName(type).c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
    if (!fd)
    {
        const int err = errno;
        if (err == ENOENT)
        {
            result.status = LoadStatus::NotFound;
            return result;
        }
        result.error = fileError(path, "cannot open", err);
        return result;
    }

    struct stat st
    {
    };
    if (::fstat(fd.get(), &st) != 0)
    {
        result.error = fileError(path, "cannot stat", errno);
        return result;
    }
    if (!S_ISREG(st.st_mode))
    {
        result.error = BlobError{.code = rc::kFail,
                                 .message = fmt::format("{}: not a regular file", path.string())};
        return result;
    }
    const auto size = static_cast<std::uint64_t>(st.st_size);
    if (st.st_size < 0 || size > kMaxStateFileSize)
    {
        result.error = BlobError{
            .code = rc::kFail,
            .message = fmt::format("{}: {} bytes is too large for a state file (limit {})",
                                   path.string(), st.st_size, kMaxStateFileSize)};
        return result;
    }

    protocol::Bytes bytes(static_cast<std::size_t>(size));
    if (const int err = readAll(fd.get(), bytes); err != 0)
    {
        result.error = fileError(path, "cannot read", err);
        return result;
    }

    DecodeResult decoded = decodeStoredBlob(bytes);
    if (decoded.error)
    {
        decoded.error->message =
            fmt::format("{}: corrupt state file: {}", path.string(), decoded.error->message);
        result.error = std::move(decoded.error);
        return result;
    }
    result.status = LoadStatus::Ok;
    result.plaintext = std::move(decoded.plaintext);
    return result;
}

std::optional<BlobError> DirStorage::store(protocol::BlobType type, protocol::ByteView plaintext)
{
    const std::filesystem::path path = pathOf(type);
    if (!dirFd_)
    {
        return BlobError{.code = rc::kFail,
                         .message = fmt::format("{}: storage not initialised", path.string())};
    }
    // Refuse what load() would refuse, rather than write a file we cannot read back.
    if (plaintext.size() > kMaxStateFileSize - kBlobHeaderSize - kTlvHeaderSize)
    {
        return BlobError{.code = rc::kFail,
                         .message = fmt::format("{}: {} bytes of state exceed the file limit",
                                                path.string(), plaintext.size())};
    }
    const protocol::Bytes blob = encodeStoredBlob(plaintext);

    const std::string temp = tempName(type);
    if (auto error = writeFile(temp, blob))
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
    // The rename is only durable once the directory entry is on disk.
    if (const int err = fsyncRetry(dirFd_.get()); err != 0)
    {
        return fileError(
            dir_, fmt::format("cannot fsync directory after writing {}", path.string()), err);
    }
    return std::nullopt;
}

std::optional<BlobError> DirStorage::writeFile(const std::string& name, protocol::ByteView bytes)
{
    const std::filesystem::path path = dir_ / name;
    const mode_t mode = fileMode_.value_or(kDefaultStateFileMode);
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
    if (const int err = writeAll(fd.get(), bytes); err != 0)
    {
        return fileError(path, "cannot write", err);
    }
    if (const int err = fsyncRetry(fd.get()); err != 0)
    {
        return fileError(path, "cannot fsync", err);
    }
    if (const int err = fd.close(); err != 0)
    {
        return fileError(path, "cannot close", err);
    }
    return std::nullopt;
}

std::optional<BlobError> DirStorage::remove(protocol::BlobType type, bool mustExist)
{
    const std::filesystem::path path = pathOf(type);
    if (!dirFd_)
    {
        return BlobError{.code = rc::kFail,
                         .message = fmt::format("{}: storage not initialised", path.string())};
    }
    if (::unlinkat(dirFd_.get(), fileName(type).c_str(), 0) != 0)
    {
        const int err = errno;
        if (err == ENOENT && !mustExist)
        {
            return std::nullopt;
        }
        return fileError(path, "cannot remove", err);
    }
    // Make the deletion durable too: a resurrected volatilestate would resume stale RAM state.
    if (const int err = fsyncRetry(dirFd_.get()); err != 0)
    {
        return fileError(
            dir_, fmt::format("cannot fsync directory after removing {}", path.string()), err);
    }
    return std::nullopt;
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
        if (setLock(fd.get(), &fl) == 0)
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

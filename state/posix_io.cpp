#include "state/posix_io.hpp"

#include <fmt/format.h>

#include <cerrno>
#include <system_error>

#include <fcntl.h>
#include <unistd.h>

namespace vtpm::state::posix
{

namespace rc = protocol::rc;

std::string errnoText(int err)
{
    return std::system_category().message(err);
}

BlobError fileError(const std::filesystem::path& path, std::string_view what, int err)
{
    return placeError(path.native(), what, err);
}

BlobError placeError(std::string_view where, std::string_view what, int err)
{
    return BlobError{.code = rc::kFail,
                     .message = fmt::format("{}: {}: {}", where, what, errnoText(err))};
}

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

int readAll(int fd, std::span<std::uint8_t> out)
{
    while (!out.empty())
    {
        const ssize_t n = ::read(fd, out.data(), out.size());
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
        out = out.subspan(static_cast<std::size_t>(n));
    }
    return 0;
}

int pwriteAll(int fd, protocol::ByteView bytes, std::uint64_t offset)
{
    while (!bytes.empty())
    {
        const ssize_t n = ::pwrite(fd, bytes.data(), bytes.size(), static_cast<off_t>(offset));
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
            return ENOSPC; // a block device's end
        }
        bytes = bytes.subspan(static_cast<std::size_t>(n));
        offset += static_cast<std::uint64_t>(n);
    }
    return 0;
}

int preadAll(int fd, std::span<std::uint8_t> out, std::uint64_t offset)
{
    while (!out.empty())
    {
        const ssize_t n = ::pread(fd, out.data(), out.size(), static_cast<off_t>(offset));
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
        out = out.subspan(static_cast<std::size_t>(n));
        offset += static_cast<std::uint64_t>(n);
    }
    return 0;
}

int openAt(int dirFd, const char* name, int flags, mode_t mode)
{
    return ::openat(dirFd, name, flags, mode); // NOLINT(cppcoreguidelines-pro-type-vararg)
}

int setLock(int fd, struct flock* lock)
{
    return ::fcntl(fd, F_SETLK, lock); // NOLINT(cppcoreguidelines-pro-type-vararg)
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

int fdatasyncRetry(int fd)
{
    while (::fdatasync(fd) != 0)
    {
        if (errno != EINTR)
        {
            return errno;
        }
    }
    return 0;
}

} // namespace vtpm::state::posix

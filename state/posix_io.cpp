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

namespace
{

// The one loop behind the *All calls: repeats a partial transfer until the whole buffer moved.
// `step(rest, done)` makes one system call for the bytes still to go; EINTR is retried, a
// transfer of 0 bytes ends the loop with `onZero` (no progress would spin forever).
template <typename Buffer, typename Step>
int transferAll(Buffer buffer, int onZero, Step step)
{
    std::size_t done = 0;
    while (done < buffer.size())
    {
        const ssize_t n = step(buffer.subspan(done), done);
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
            return onZero;
        }
        done += static_cast<std::size_t>(n);
    }
    return 0;
}

} // namespace

int writeAll(int fd, protocol::ByteView bytes)
{
    // A regular file never accepts 0 bytes.
    return transferAll(bytes, EIO, [fd](protocol::ByteView rest, std::size_t /*done*/)
                       { return ::write(fd, rest.data(), rest.size()); });
}

int readAll(int fd, std::span<std::uint8_t> out)
{
    return transferAll(out, ENODATA, [fd](std::span<std::uint8_t> rest, std::size_t /*done*/)
                       { return ::read(fd, rest.data(), rest.size()); });
}

int pwriteAll(int fd, protocol::ByteView bytes, std::uint64_t offset)
{
    // 0 bytes written at a block device's end.
    return transferAll(bytes, ENOSPC, [fd, offset](protocol::ByteView rest, std::size_t done)
                       { return ::pwrite(fd, rest.data(), rest.size(),
                                         static_cast<off_t>(offset + done)); });
}

int preadAll(int fd, std::span<std::uint8_t> out, std::uint64_t offset)
{
    return transferAll(out, ENODATA,
                       [fd, offset](std::span<std::uint8_t> rest, std::size_t done)
                       { return ::pread(fd, rest.data(), rest.size(),
                                        static_cast<off_t>(offset + done)); });
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

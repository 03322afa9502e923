#pragma once

#include "protocol/byte_io.hpp"
#include "state/stored_blob.hpp"

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>

#include <fcntl.h>
#include <sys/types.h>

// Small errno-returning wrappers the storage backends share: whole-buffer I/O that survives
// EINTR and short transfers, fsync with retry, the variadic openat/fcntl calls (one lint waiver)
// and file errors whose message names the file. All return 0 or an errno value.
namespace vtpm::state::posix
{

[[nodiscard]] std::string errnoText(int err);

// BlobError{kFail, "<path>: <what>: <strerror>"}.
[[nodiscard]] BlobError fileError(const std::filesystem::path& path, std::string_view what,
                                  int err);
[[nodiscard]] BlobError placeError(std::string_view where, std::string_view what, int err);

[[nodiscard]] int writeAll(int fd, protocol::ByteView bytes);
// Reads exactly out.size() bytes; ENODATA if the file ended early.
[[nodiscard]] int readAll(int fd, std::span<std::uint8_t> out);
[[nodiscard]] int pwriteAll(int fd, protocol::ByteView bytes, std::uint64_t offset);
[[nodiscard]] int preadAll(int fd, std::span<std::uint8_t> out, std::uint64_t offset);

[[nodiscard]] int openAt(int dirFd, const char* name, int flags, mode_t mode = 0);
// fcntl(F_SETLK) with the given lock; -1 and errno on failure, like fcntl.
[[nodiscard]] int setLock(int fd, struct flock* lock);
[[nodiscard]] int fsyncRetry(int fd);
[[nodiscard]] int fdatasyncRetry(int fd);

} // namespace vtpm::state::posix

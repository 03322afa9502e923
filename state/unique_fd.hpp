#pragma once

// Owning wrapper for a POSIX file descriptor, so every early return in the storage code closes
// what it opened. The daemon reuses it for sockets and the lock file.
namespace vtpm::state
{

class UniqueFd
{
public:
    UniqueFd() noexcept = default;
    explicit UniqueFd(int fd) noexcept : fd_(fd) {}
    ~UniqueFd();

    UniqueFd(const UniqueFd&) = delete;
    UniqueFd& operator=(const UniqueFd&) = delete;
    UniqueFd(UniqueFd&& other) noexcept;
    UniqueFd& operator=(UniqueFd&& other) noexcept;

    [[nodiscard]] int get() const noexcept { return fd_; }
    [[nodiscard]] bool valid() const noexcept { return fd_ >= 0; }
    explicit operator bool() const noexcept { return valid(); }

    // Gives up ownership without closing.
    [[nodiscard]] int release() noexcept;

    // Closes the current descriptor (errors ignored) and takes ownership of fd.
    void reset(int fd = -1) noexcept;

    // Closes now and reports close(2)'s result as 0 or an errno value: on some file systems
    // (NFS) a failed write only shows up here, so writers must not leave this to the destructor.
    // The descriptor is gone afterwards either way (Linux never re-closes after EINTR).
    [[nodiscard]] int close() noexcept;

private:
    int fd_ = -1;
};

} // namespace vtpm::state

#include "state/unique_fd.hpp"

#include <cerrno>
#include <utility>

#include <unistd.h>

namespace vtpm::state
{

UniqueFd::~UniqueFd()
{
    reset();
}

UniqueFd::UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}

UniqueFd& UniqueFd::operator=(UniqueFd&& other) noexcept
{
    if (this != &other)
    {
        reset(std::exchange(other.fd_, -1));
    }
    return *this;
}

int UniqueFd::release() noexcept
{
    return std::exchange(fd_, -1);
}

void UniqueFd::reset(int fd) noexcept
{
    const int old = std::exchange(fd_, fd);
    if (old >= 0)
    {
        (void)::close(old);
    }
}

int UniqueFd::close() noexcept
{
    const int old = std::exchange(fd_, -1);
    if (old < 0)
    {
        return 0;
    }
    return ::close(old) == 0 ? 0 : errno;
}

} // namespace vtpm::state

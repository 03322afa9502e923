#include "tools/vtpmctl/status_query.hpp"

#include "state/unique_fd.hpp"
#include "tools/vtpmctl/unix_connect.hpp"

#include <algorithm>
#include <cerrno>
#include <string>

#include <poll.h>
#include <unistd.h>

namespace vtpm::tools
{

namespace
{

constexpr std::size_t kMaxReport = 64 * 1024;
constexpr std::size_t kBatch = 256; // keeps the number of open sockets well below RLIMIT_NOFILE

struct Pending
{
    std::size_t index = 0;
    state::UniqueFd fd;
    std::string text;
    bool done = false;
};

// Drains what is readable; true once the peer closed (the report is complete) or failed.
bool drain(Pending& p)
{
    char buffer[4096];
    for (;;)
    {
        const ssize_t n = ::read(p.fd.get(), buffer, sizeof(buffer));
        if (n > 0 && p.text.size() < kMaxReport)
        {
            p.text.append(buffer, static_cast<std::size_t>(n));
            continue;
        }
        if (n < 0 && errno == EINTR)
        {
            continue;
        }
        return !(n < 0 && errno == EAGAIN);
    }
}

void queryBatch(const std::vector<fs::path>& sockets, std::size_t first, std::size_t last,
                Deadline deadline, std::vector<std::optional<nlohmann::json>>& results)
{
    std::vector<Pending> pending;
    pending.reserve(last - first);
    for (std::size_t i = first; i < last; ++i)
    {
        Pending p;
        p.index = i;
        if (connectUnix(sockets[i], p.fd) == ConnectResult::Connected)
        {
            pending.push_back(std::move(p));
        }
    }
    std::vector<pollfd> fds;
    for (;;)
    {
        fds.clear();
        for (const Pending& p : pending)
        {
            if (!p.done)
            {
                fds.push_back({.fd = p.fd.get(), .events = POLLIN, .revents = 0});
            }
        }
        if (fds.empty())
        {
            break;
        }
        const int n = ::poll(fds.data(), fds.size(), pollTimeout(deadline));
        if (n == 0 || (n < 0 && errno != EINTR))
        {
            break;
        }
        std::size_t k = 0;
        for (Pending& p : pending)
        {
            if (p.done)
            {
                continue;
            }
            if (fds[k++].revents != 0 && drain(p))
            {
                p.done = true;
            }
        }
    }
    for (const Pending& p : pending)
    {
        if (!p.done)
        {
            continue;
        }
        auto j = nlohmann::json::parse(p.text, nullptr, false);
        if (!j.is_discarded() && j.is_object())
        {
            results[p.index] = std::move(j);
        }
    }
}

} // namespace

std::vector<std::optional<nlohmann::json>> queryStatus(const std::vector<fs::path>& sockets,
                                                       std::chrono::milliseconds timeout)
{
    std::vector<std::optional<nlohmann::json>> results(sockets.size());
    for (std::size_t first = 0; first < sockets.size(); first += kBatch)
    {
        queryBatch(sockets, first, std::min(sockets.size(), first + kBatch), deadlineIn(timeout),
                   results);
    }
    return results;
}

} // namespace vtpm::tools

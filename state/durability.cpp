#include "state/durability.hpp"

#include <spdlog/spdlog.h>

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <system_error>
#include <utility>
#include <vector>

#include <unistd.h>

namespace vtpm::state
{

namespace
{

int syncRetry(int fd, bool dataOnly)
{
    while ((dataOnly ? ::fdatasync(fd) : ::fsync(fd)) != 0)
    {
        if (errno != EINTR)
        {
            return errno;
        }
    }
    return 0;
}

} // namespace

SyncWorker::~SyncWorker()
{
    {
        const std::lock_guard lock(mutex_);
        stopping_ = true;
    }
    wake_.notify_all();
    if (thread_.joinable())
    {
        thread_.join();
    }
}

void SyncWorker::submit(UniqueFd file, int shared, std::string label)
{
    {
        const std::lock_guard lock(mutex_);
        queue_.push_back(Job{.file = std::move(file), .shared = shared, .label = std::move(label)});
        if (!thread_.joinable())
        {
            thread_ = std::thread(&SyncWorker::run, this);
        }
    }
    wake_.notify_one();
}

std::optional<std::string> SyncWorker::flush()
{
    std::unique_lock lock(mutex_);
    idle_.wait(lock, [this] { return queue_.empty() && !busy_; });
    return std::exchange(error_, std::nullopt);
}

std::optional<std::string> SyncWorker::takeError()
{
    const std::lock_guard lock(mutex_);
    return std::exchange(error_, std::nullopt);
}

std::uint64_t SyncWorker::completed()
{
    const std::lock_guard lock(mutex_);
    return completed_;
}

void SyncWorker::run()
{
    std::unique_lock lock(mutex_);
    for (;;)
    {
        wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
        if (queue_.empty())
        {
            return; // stopping, and everything queued has been done
        }
        // Take the whole batch: stores that arrived while the last fsync ran share the next
        // directory fsync instead of queueing one each.
        std::deque<Job> batch;
        batch.swap(queue_);
        busy_ = true;
        lock.unlock();

        std::optional<std::string> failure;
        std::vector<std::pair<int, std::string>> shared;
        for (Job& job : batch)
        {
            if (job.file)
            {
                if (const int err = syncRetry(job.file.get(), true); err != 0 && !failure)
                {
                    failure = fmt::format("{}: background fsync failed: {}", job.label,
                                          std::system_category().message(err));
                }
                job.file.reset();
            }
            if (job.shared >= 0 &&
                std::none_of(shared.begin(), shared.end(),
                             [&job](const auto& entry) { return entry.first == job.shared; }))
            {
                shared.emplace_back(job.shared, job.label);
            }
        }
        for (const auto& [fd, label] : shared)
        {
            if (const int err = syncRetry(fd, false); err != 0 && !failure)
            {
                failure = fmt::format("{}: background fsync of its directory or image failed: {}",
                                      label, std::system_category().message(err));
            }
        }

        lock.lock();
        completed_ += batch.size();
        if (failure && !error_)
        {
            error_ = std::move(failure);
        }
        busy_ = false;
        if (queue_.empty())
        {
            idle_.notify_all();
        }
    }
}

std::optional<BlobError> takeSyncError(SyncWorker* worker)
{
    if (worker == nullptr)
    {
        return std::nullopt;
    }
    if (auto failure = worker->takeError())
    {
        return BlobError{.code = protocol::rc::kFail,
                         .message = *failure + " (the state may not be on disk)"};
    }
    return std::nullopt;
}

void flushSyncWorker(SyncWorker* worker)
{
    if (worker == nullptr)
    {
        return;
    }
    if (const auto failure = worker->flush())
    {
        spdlog::critical("{} (the state may not be on disk)", *failure);
    }
}

} // namespace vtpm::state

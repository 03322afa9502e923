#pragma once

#include "state/stored_blob.hpp"
#include "state/unique_fd.hpp"

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

// FsyncPolicy::Deferred (doc/durability.md): the command path renames the new state into place
// and queues the fsyncs here; one background thread performs them right away, so the guest's
// TPM command does not wait for the disk. This is the daemon's only thread besides the event
// loop; it touches nothing but the descriptors handed to it.
namespace vtpm::state
{

class SyncWorker
{
public:
    SyncWorker() = default;
    SyncWorker(const SyncWorker&) = delete;
    SyncWorker& operator=(const SyncWorker&) = delete;
    SyncWorker(SyncWorker&&) = delete;
    SyncWorker& operator=(SyncWorker&&) = delete;
    // Performs what is queued, then stops the thread.
    ~SyncWorker();

    // Queues fdatasync(file) (if valid) and then fsync(shared) (if ≥ 0: the directory, or the
    // image file). file is owned from here on; shared is borrowed and must stay open until
    // flush() or destruction. Jobs queued together share one fsync per shared descriptor.
    // label names the file in error messages. Starts the thread on first use (after any fork
    // the daemon does at start-up).
    void submit(UniqueFd file, int shared, std::string label);

    // Waits until everything submitted so far is on disk. Returns the first failure since the
    // last call to flush() or takeError(), naming the file.
    [[nodiscard]] std::optional<std::string> flush();

    // The first failure since the last call, without waiting; nullopt if none.
    [[nodiscard]] std::optional<std::string> takeError();

    // Jobs completed so far (for tests).
    [[nodiscard]] std::uint64_t completed();

private:
    struct Job
    {
        UniqueFd file;
        int shared = -1;
        std::string label;
    };

    void run();

    std::mutex mutex_;
    std::condition_variable wake_;
    std::condition_variable idle_;
    std::deque<Job> queue_;
    bool busy_ = false;
    bool stopping_ = false;
    std::uint64_t completed_ = 0;
    std::optional<std::string> error_;
    std::thread thread_;
};

// What a backend reports for its worker (nullptr when fsync is not deferred): the first
// failed fsync as the next store's error, and a final flush at exit logged, not thrown.
[[nodiscard]] std::optional<BlobError> takeSyncError(SyncWorker* worker);
void flushSyncWorker(SyncWorker* worker);

} // namespace vtpm::state

#pragma once

#include "daemon/nv_store.hpp"
#include "daemon/options.hpp"
#include "protocol/tpm_version.hpp"
#include "state/key.hpp"
#include "state/storage.hpp"

#include <memory>

#include <cstdint>
#include <string>

// The daemon's view of persistent state: libtpms' NVRAM callbacks and the storage lock over the
// directory backend, with every failure logged once, naming the file.
namespace vtpm::daemon
{

class StateStore final : public NvStore
{
public:
    // Opens the backend (directory or image); throws with a message naming it if unusable.
    // stateKey, if any, must outlive the store.
    StateStore(const StateOptions& options, protocol::TpmVersion version,
               const state::Key* stateKey);

    protocol::TpmResult load(protocol::BlobType type, protocol::Bytes& out) override;
    protocol::TpmResult store(protocol::BlobType type, protocol::ByteView data) override;
    protocol::TpmResult remove(protocol::BlobType type, bool mustExist) override;

    // Takes the .lock (retries 10 ms apart); true if held afterwards or locking is disabled.
    bool lock(unsigned retries, std::string* error = nullptr);
    // Takes the lock if it is not held, with the retry count armed by CMD_LOCK_STORAGE or a
    // hand-over (§7.7); on success the armed count goes back to 0.
    bool ensureLocked(std::string* error = nullptr);
    void armRetries(unsigned retries) noexcept { armedRetries_ = retries; }
    // Outgoing migration on shared storage: the destination may take the state now. Until
    // this daemon locks again it writes nothing, so it cannot clobber the new owner's state.
    void releaseForMigration();
    // False while the state belongs to someone else (locking enabled, lock not held).
    [[nodiscard]] bool writable() const noexcept { return !lockEnabled_ || locked(); }
    [[nodiscard]] bool lockEnabled() const noexcept { return lockEnabled_; }
    void unlock();

    [[nodiscard]] bool locked() const noexcept { return storage_->locked(); }
    // Makes every acknowledged store power-loss durable (deferred fsyncs); called at exit.
    void flush() { storage_->flush(); }
    // Loads and stores that failed (each also logged).
    [[nodiscard]] std::uint64_t errors() const noexcept { return errors_; }
    // The most recent failure, naming the file, for messages to the operator.
    [[nodiscard]] const std::string& lastError() const noexcept { return lastError_; }

private:
    std::unique_ptr<state::Storage> storage_;
    std::filesystem::path location_;
    bool lockEnabled_;
    unsigned armedRetries_ = 0;
    std::uint64_t errors_ = 0;
    std::string lastError_;

    void recordError(std::string message);
};

} // namespace vtpm::daemon

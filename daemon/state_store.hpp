#pragma once

#include "daemon/nv_store.hpp"
#include "daemon/options.hpp"
#include "protocol/tpm_version.hpp"
#include "state/dir_storage.hpp"

#include <cstdint>
#include <string>

// The daemon's view of persistent state: libtpms' NVRAM callbacks and the storage lock over the
// directory backend, with every failure logged once, naming the file.
namespace vtpm::daemon
{

class StateStore final : public NvStore
{
public:
    // Checks the directory; throws with a message naming it if unusable.
    StateStore(const StateOptions& options, protocol::TpmVersion version);

    protocol::TpmResult load(protocol::BlobType type, protocol::Bytes& out) override;
    protocol::TpmResult store(protocol::BlobType type, protocol::ByteView data) override;
    protocol::TpmResult remove(protocol::BlobType type, bool mustExist) override;

    // Takes the .lock (retries 10 ms apart); true if held afterwards or locking is disabled.
    bool lock(unsigned retries, std::string* error = nullptr);
    [[nodiscard]] bool lockEnabled() const noexcept { return lockEnabled_; }
    void unlock();

    [[nodiscard]] state::DirStorage& storage() noexcept { return storage_; }
    [[nodiscard]] bool locked() const noexcept { return storage_.locked(); }
    // Loads and stores that failed (each also logged).
    [[nodiscard]] std::uint64_t errors() const noexcept { return errors_; }
    // The most recent failure, naming the file, for messages to the operator.
    [[nodiscard]] const std::string& lastError() const noexcept { return lastError_; }

private:
    state::DirStorage storage_;
    bool lockEnabled_;
    std::uint64_t errors_ = 0;
    std::string lastError_;

    void recordError(std::string message);
};

} // namespace vtpm::daemon

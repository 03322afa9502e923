#include "daemon/state_store.hpp"

#include <spdlog/spdlog.h>

namespace vtpm::daemon
{

namespace rc = protocol::rc;

namespace
{

state::StorageOptions storageOptions(const StateOptions& options, protocol::TpmVersion version,
                                     const state::Key* stateKey)
{
    state::StorageOptions o;
    o.version = version;
    o.fileMode = options.mode;
    o.fsync = options.fsync;
    o.backup = options.backup;
    o.stateKey = stateKey;
    return o;
}

} // namespace

StateStore::StateStore(const StateOptions& options, protocol::TpmVersion version,
                       const state::Key* stateKey) :
    storage_(state::openStorage(
        state::StorageUri{.kind = options.fileBackend ? state::StorageUri::Kind::File
                                                      : state::StorageUri::Kind::Dir,
                          .path = options.dir},
        storageOptions(options, version, stateKey))),
    location_(options.dir),
    lockEnabled_(options.lock)
{
    storage_->init();
}

protocol::TpmResult StateStore::load(protocol::BlobType type, protocol::Bytes& out)
{
    state::LoadResult result = storage_->load(type);
    switch (result.status)
    {
    case state::LoadStatus::Ok:
        out = std::move(result.plaintext);
        return rc::kSuccess;
    case state::LoadStatus::NotFound:
        return rc::kRetry;
    case state::LoadStatus::Error:
        break;
    }
    // Never kRetry here: libtpms would take a damaged permall for a missing one and
    // manufacture a new TPM, silently dropping the guest's keys.
    const auto code = result.error ? result.error->code : rc::kFail;
    recordError("cannot load TPM state: " +
                (result.error ? result.error->message : storage_->describe(type)));
    return code == rc::kRetry ? rc::kFail : code;
}

protocol::TpmResult StateStore::store(protocol::BlobType type, protocol::ByteView data)
{
    if (!writable())
    {
        recordError("refusing to write " + storage_->describe(type) +
                    ": the state lock was handed to a migration destination");
        return rc::kFail;
    }
    if (const auto error = storage_->store(type, data))
    {
        recordError("cannot store TPM state: " + error->message);
        return rc::kFail;
    }
    return rc::kSuccess;
}

protocol::TpmResult StateStore::remove(protocol::BlobType type, bool mustExist)
{
    if (!writable())
    {
        recordError("refusing to delete " + storage_->describe(type) +
                    ": the state lock was handed to a migration destination");
        return rc::kFail;
    }
    if (const auto error = storage_->remove(type, mustExist))
    {
        recordError("cannot delete TPM state: " + error->message);
        return rc::kFail;
    }
    return rc::kSuccess;
}

bool StateStore::lock(unsigned retries, std::string* error)
{
    return !lockEnabled_ || storage_->lock(retries, error);
}

bool StateStore::ensureLocked(std::string* error)
{
    if (!lockEnabled_ || locked())
    {
        return true;
    }
    if (!storage_->lock(armedRetries_, error))
    {
        return false;
    }
    armedRetries_ = 0;
    spdlog::info("state lock taken on {}", location_.string());
    return true;
}

void StateStore::releaseForMigration()
{
    if (!lockEnabled_ || !locked())
    {
        return;
    }
    constexpr unsigned kRelockRetries = 300; // QEMU's LOCK_STORAGE(300) after a failed migration
    storage_->unlock();
    armedRetries_ = kRelockRetries;
    spdlog::info("state lock released for the migration destination");
}

void StateStore::recordError(std::string message)
{
    ++errors_;
    spdlog::critical("{}", message);
    lastError_ = std::move(message);
}

void StateStore::unlock()
{
    storage_->unlock();
}

} // namespace vtpm::daemon

#include "daemon/control_handler.hpp"

#include "daemon/state_store.hpp"
#include "protocol/blob_type.hpp"
#include "state/stored_blob.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace vtpm::daemon
{

using protocol::BlobType;
using protocol::Bytes;
using protocol::ByteView;
using protocol::CtrlCode;
using protocol::TpmResult;
namespace rc = protocol::rc;

namespace
{

constexpr std::uint8_t kMaxLocality = 4;

CtrlOutcome result(TpmResult code)
{
    return {.reply = protocol::encodeResult(code)};
}

bool payloadSizeOk(const protocol::PayloadSpec& spec, std::size_t size) noexcept
{
    return spec.rule == protocol::PayloadRule::Exact ? size == spec.size : size >= spec.size;
}

} // namespace

ControlHandler::ControlHandler(TpmEngine& engine, StateStore& store, const Options& options,
                               DaemonControl& daemon, const state::Key* stateKey,
                               const state::Key* migrationKey) :
    engine_(engine),
    store_(store),
    options_(options),
    daemon_(daemon),
    stateKey_(stateKey),
    migrationKey_(migrationKey)
{
}

CtrlOutcome ControlHandler::handle(ByteView message, state::UniqueFd passedFd)
{
    protocol::ByteReader in(message);
    const std::uint32_t wireCode = in.read<std::uint32_t>();
    const ByteView payload = in.rest();
    ++handled_;
    const auto code = protocol::ctrlCodeFromWire(wireCode);
    if (!code)
    {
        spdlog::warn("control: unknown command 0x{:x}", wireCode);
        return result(rc::kBadOrdinal);
    }
    CtrlOutcome outcome = dispatch(*code, payload, std::move(passedFd));
    if (spdlog::should_log(spdlog::level::debug))
    {
        const auto reply = protocol::parseResult(outcome.reply);
        spdlog::debug("control: {} ({} payload bytes) -> 0x{:x}", protocol::ctrlCodeName(wireCode),
                      payload.size(), reply.value_or(rc::kFail));
    }
    return outcome;
}

CtrlOutcome ControlHandler::dispatch(CtrlCode code, ByteView payload, state::UniqueFd passedFd)
{
    const protocol::PayloadSpec spec = protocol::payloadSpec(code);
    // Running-state gates come before the size check (§3.1).
    if ((spec.needsRunning && !engine_.running()) || (spec.needsStopped && engine_.running()))
    {
        return result(rc::kBadOrdinal);
    }
    if (!payloadSizeOk(spec, payload.size()))
    {
        return result(rc::kBadParameter);
    }
    switch (code)
    {
    case CtrlCode::GetCapability:
        return {.reply = protocol::encodeReply(protocol::CapabilityReply{.caps = capabilities()})};
    case CtrlCode::Init:
        return result(init(protocol::parseInitRequest(payload)->flags));
    case CtrlCode::Shutdown:
        stop();
        return {.reply = protocol::encodeResult(rc::kSuccess), .exitAfterReply = true};
    case CtrlCode::GetTpmEstablished:
        return {.reply = protocol::encodeReply(engine_.established())};
    case CtrlCode::SetLocality:
    {
        const std::uint8_t locality = protocol::parseLocalityRequest(payload)->locality;
        if (locality > kMaxLocality ||
            (locality == kMaxLocality && options_.locality.rejectLocality4))
        {
            return result(rc::kBadLocality);
        }
        engine_.setLocality(locality);
        return result(rc::kSuccess);
    }
    case CtrlCode::HashStart:
        return result(engine_.hashStart());
    case CtrlCode::HashData:
    {
        const auto request = protocol::parseHashDataRequest(payload);
        return result(request ? engine_.hashData(request->data) : rc::kBadParameter);
    }
    case CtrlCode::HashEnd:
        return result(engine_.hashEnd());
    case CtrlCode::CancelTpmCmd:
        return result(engine_.cancel());
    case CtrlCode::StoreVolatile:
    {
        Bytes snapshot;
        TpmResult code2 = engine_.storeVolatile(snapshot);
        if (code2 == rc::kSuccess)
        {
            code2 = store_.store(BlobType::Volatile, snapshot);
        }
        return result(code2);
    }
    case CtrlCode::ResetTpmEstablished:
    {
        const std::uint8_t locality = protocol::parseLocalityRequest(payload)->locality;
        return result(locality > kMaxLocality ? rc::kBadLocality
                                              : engine_.resetEstablished(locality));
    }
    case CtrlCode::GetStateBlob:
    {
        const auto request = *protocol::parseGetStateBlobRequest(payload);
        Bytes reply = getStateBlob(request);
        // The last blob QEMU fetches on the source: hand the state over (§3.12 item 6).
        if (request.type == static_cast<std::uint32_t>(BlobType::SaveState) &&
            options_.migration.releaseLockOutgoing &&
            protocol::parseResult(reply).value_or(rc::kFail) != rc::kFail)
        {
            store_.releaseForMigration();
        }
        return {.reply = std::move(reply)};
    }
    case CtrlCode::SetStateBlob:
    {
        const auto request = protocol::parseSetStateBlobRequest(payload);
        return result(request ? setStateBlob(*request) : rc::kBadParameter);
    }
    case CtrlCode::Stop:
        stop();
        return result(rc::kSuccess);
    case CtrlCode::GetConfig:
        return {.reply = protocol::encodeReply(protocol::ConfigReply{
                    .flags = (stateKey_ != nullptr ? protocol::configflag::kFileKey : 0U) |
                             (migrationKey_ != nullptr ? protocol::configflag::kMigrationKey
                                                       : 0U)})};
    case CtrlCode::SetDataFd:
        return result(daemon_.adoptDataFd(std::move(passedFd)));
    case CtrlCode::SetBufferSize:
        return {.reply = setBufferSize(protocol::parseSetBufferSizeRequest(payload)->bufferSize)};
    case CtrlCode::GetInfo:
        return {.reply = getInfo(*protocol::parseGetInfoRequest(payload))};
    case CtrlCode::LockStorage:
    {
        store_.armRetries(protocol::parseLockStorageRequest(payload)->retries);
        std::string error;
        if (!store_.ensureLocked(&error))
        {
            spdlog::error("CMD_LOCK_STORAGE: {}", error);
            return result(rc::kFail);
        }
        return result(rc::kSuccess);
    }
    }
    return result(rc::kBadOrdinal);
}

TpmResult ControlHandler::init(std::uint32_t flags)
{
    if (engine_.running())
    {
        stop();
    }
    std::string error;
    if (!options_.migration.incoming && !store_.ensureLocked(&error))
    {
        spdlog::error("cannot start the TPM: {}", error);
        return rc::kFail;
    }
    const TpmResult started = engine_.start();
    if (started != rc::kSuccess)
    {
        return started;
    }
    if ((flags & protocol::initflag::kDeleteVolatile) != 0)
    {
        const TpmResult removed = store_.remove(BlobType::Volatile, false);
        if (removed != rc::kSuccess)
        {
            engine_.stop(false);
            return removed;
        }
    }
    return rc::kSuccess;
}

void ControlHandler::stop()
{
    // After an outgoing migration the state belongs to the destination: a TPM2_Shutdown here
    // would rewrite its permall (protocol.md §8.5), so the TPM just powers off.
    engine_.stop(!options_.flags.disableAutoShutdown && store_.writable());
}

Bytes ControlHandler::getStateBlob(const protocol::GetStateBlobRequest& request)
{
    const auto type = protocol::blobTypeFromWire(request.type);
    if (!type)
    {
        return protocol::encodeReply(protocol::StateBlobReply{.result = rc::kFail, .stateFlags = 0, .totalLength = 0, .data = {}});
    }
    Bytes plaintext;
    TpmResult code = rc::kSuccess;
    if (*type == BlobType::Volatile)
    {
        // The volatile blob is a snapshot taken now, and is not left behind: a stored one would
        // be resumed by the next start (§3.9).
        code = engine_.storeVolatile(plaintext);
        if (code == rc::kSuccess)
        {
            code = store_.store(BlobType::Volatile, plaintext);
        }
    }
    if (code == rc::kSuccess)
    {
        code = store_.load(*type, plaintext);
    }
    if (*type == BlobType::Volatile)
    {
        (void)store_.remove(BlobType::Volatile, false);
    }
    if (code != rc::kSuccess)
    {
        return protocol::encodeReply(protocol::StateBlobReply{.result = code, .stateFlags = 0, .totalLength = 0, .data = {}});
    }
    const bool decrypted = (request.stateFlags & protocol::stateflag::kDecrypted) != 0;
    state::MigrationBlob migration;
    try
    {
        migration = state::encodeMigrationBlob(plaintext, stateKey_, decrypted, migrationKey_);
    }
    catch (const state::BlobEncryptError& e)
    {
        spdlog::error("CMD_GET_STATEBLOB {}: {}", protocol::blobName(*type), e.what());
        return protocol::encodeReply(protocol::StateBlobReply{
            .result = rc::kEncryptError, .stateFlags = 0, .totalLength = 0, .data = {}});
    }
    const std::size_t offset = std::min<std::size_t>(request.offset, migration.blob.size());
    const ByteView data = ByteView(migration.blob).subspan(offset);
    return protocol::encodeReply(
        protocol::StateBlobReply{.result = rc::kSuccess,
                                 .stateFlags = migration.stateFlags,
                                 .totalLength = static_cast<std::uint32_t>(data.size()),
                                 .data = data});
}

TpmResult ControlHandler::setStateBlob(const protocol::SetStateBlobRequest& request)
{
    const auto type = protocol::blobTypeFromWire(request.type);
    if (!type)
    {
        return rc::kBadParameter;
    }
    std::string error;
    if (!store_.ensureLocked(&error))
    {
        // Another daemon owns the state: continuing could only corrupt it (§3.13).
        spdlog::critical("CMD_SET_STATEBLOB: cannot lock the state: {}", error);
        daemon_.requestExit("state lock unavailable for an incoming state blob");
        return rc::kIoError;
    }
    const auto decoded =
        state::decodeMigrationBlob(request.blob, request.stateFlags, stateKey_, migrationKey_);
    if (decoded.error)
    {
        spdlog::error("CMD_SET_STATEBLOB {}: {}", protocol::blobName(*type),
                      decoded.error->message);
        return decoded.error->code;
    }
    const TpmResult code =
        engine_.setState(*type, decoded.empty ? ByteView{} : ByteView(decoded.plaintext));
    if (code != rc::kSuccess)
    {
        spdlog::error("CMD_SET_STATEBLOB {}: libtpms refused the blob: 0x{:x}",
                      protocol::blobName(*type), code);
    }
    return code;
}

Bytes ControlHandler::getInfo(const protocol::GetInfoRequest& request)
{
    const auto json = TpmEngine::info(request.flags);
    if (!json)
    {
        return protocol::encodeResult(rc::kSize);
    }
    if (request.offset >= json->size())
    {
        return protocol::encodeResult(rc::kBadParameter);
    }
    const std::size_t total = json->size() + 1; // the NUL travels too
    const std::size_t length = std::min(total - request.offset, protocol::kGetInfoChunk);
    const auto* bytes = reinterpret_cast<const std::uint8_t*>(json->c_str()); // NOLINT
    return protocol::encodeReply(protocol::InfoReply{
        .totalLength = static_cast<std::uint32_t>(total),
        .chunk = ByteView(bytes, total).subspan(request.offset, length)});
}

Bytes ControlHandler::setBufferSize(std::uint32_t wanted)
{
    if (wanted != 0 && engine_.running())
    {
        return protocol::encodeResult(rc::kBadOrdinal);
    }
    return protocol::encodeReply(engine_.setBufferSize(wanted));
}

std::uint32_t ControlHandler::capabilities() const noexcept
{
    namespace cap = protocol::cap;
    std::uint32_t caps = cap::kInit | cap::kShutdown | cap::kGetTpmEstablished |
                         cap::kSetLocality | cap::kHashing | cap::kCancelTpmCmd |
                         cap::kStoreVolatile | cap::kResetTpmEstablished | cap::kGetStateBlob |
                         cap::kSetStateBlob | cap::kStop | cap::kGetConfig | cap::kSetDataFd |
                         cap::kSetBufferSize | cap::kGetInfo | cap::kLockStorage;
    if (engine_.version() == protocol::TpmVersion::Tpm2)
    {
        caps |= cap::kSendCommandHeader;
    }
    return caps;
}

} // namespace vtpm::daemon

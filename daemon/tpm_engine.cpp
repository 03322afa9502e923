#include "daemon/tpm_engine.hpp"

#include "protocol/tpm_frame.hpp"

#include <libtpms/tpm_error.h>
#include <libtpms/tpm_library.h>
#include <libtpms/tpm_memory.h>
#include <libtpms/tpm_tis.h>
#include <spdlog/spdlog.h>

#include <cstring>
#include <stdexcept>

namespace vtpm::daemon
{

using protocol::BlobType;
using protocol::Bytes;
using protocol::ByteView;
using protocol::TpmResult;
namespace rc = protocol::rc;

TpmEngine* TpmEngine::instance_ = nullptr;

namespace
{

TPMLIB_StateType libtpmsStateType(BlobType type) noexcept
{
    switch (type)
    {
    case BlobType::Permanent:
        return TPMLIB_STATE_PERMANENT;
    case BlobType::Volatile:
        return TPMLIB_STATE_VOLATILE;
    case BlobType::SaveState:
        return TPMLIB_STATE_SAVE_STATE;
    }
    return TPMLIB_STATE_PERMANENT;
}

// libtpms frees what a callback returns with TPM_Free, so buffers come from TPM_Malloc.
class LibtpmsBuffer
{
public:
    LibtpmsBuffer() = default;
    ~LibtpmsBuffer() { TPM_Free(data_); }
    LibtpmsBuffer(const LibtpmsBuffer&) = delete;
    LibtpmsBuffer& operator=(const LibtpmsBuffer&) = delete;
    unsigned char** out() noexcept { return &data_; }
    [[nodiscard]] ByteView view(std::uint32_t size) const noexcept { return {data_, size}; }

private:
    unsigned char* data_ = nullptr;
};

} // namespace

// Static trampolines from libtpms' C callbacks into the single engine instance.
struct EngineCallbacks
{
    static TPM_RESULT nvramInit() { return TPM_SUCCESS; }

    static TPM_RESULT load(unsigned char** data, uint32_t* length, uint32_t /*tpmNumber*/,
                           const char* name)
    {
        const auto type = protocol::blobTypeFromName(name);
        if (TpmEngine::instance_ == nullptr || !type)
        {
            return TPM_FAIL;
        }
        Bytes blob;
        const TpmResult result = TpmEngine::instance_->store_.load(*type, blob);
        if (result != rc::kSuccess)
        {
            return result;
        }
        if (TPM_Malloc(data, static_cast<uint32_t>(blob.size())) != TPM_SUCCESS)
        {
            return TPM_FAIL;
        }
        std::memcpy(*data, blob.data(), blob.size());
        *length = static_cast<uint32_t>(blob.size());
        return TPM_SUCCESS;
    }

    static TPM_RESULT store(const unsigned char* data, uint32_t length, uint32_t /*tpmNumber*/,
                            const char* name)
    {
        const auto type = protocol::blobTypeFromName(name);
        if (TpmEngine::instance_ == nullptr || !type)
        {
            return TPM_FAIL;
        }
        return TpmEngine::instance_->store_.store(*type, ByteView(data, length));
    }

    static TPM_RESULT remove(uint32_t /*tpmNumber*/, const char* name, TPM_BOOL mustExist)
    {
        const auto type = protocol::blobTypeFromName(name);
        if (TpmEngine::instance_ == nullptr || !type)
        {
            return TPM_FAIL;
        }
        return TpmEngine::instance_->store_.remove(*type, mustExist != 0);
    }

    static TPM_RESULT ioInit() { return TPM_SUCCESS; }

    static TPM_RESULT locality(TPM_MODIFIER_INDICATOR* locality, uint32_t /*tpmNumber*/)
    {
        *locality = TpmEngine::instance_ != nullptr ? TpmEngine::instance_->locality_ : 0;
        return TPM_SUCCESS;
    }
};

TpmEngine::TpmEngine(protocol::TpmVersion version, NvStore& store) : version_(version), store_(store)
{
    if (instance_ != nullptr)
    {
        throw std::logic_error("libtpms supports one TPM per process");
    }
    const auto tpmVersion = version == protocol::TpmVersion::Tpm2 ? TPMLIB_TPM_VERSION_2
                                                                  : TPMLIB_TPM_VERSION_1_2;
    if (TPMLIB_ChooseTPMVersion(tpmVersion) != TPM_SUCCESS)
    {
        throw std::runtime_error(fmt::format("libtpms {}.{}.{} cannot emulate a TPM {}",
                                             libraryVersion() >> 16U, (libraryVersion() >> 8U) & 0xffU,
                                             libraryVersion() & 0xffU, protocol::versionName(version)));
    }
    libtpms_callbacks callbacks{};
    callbacks.sizeOfStruct = sizeof(callbacks);
    callbacks.tpm_nvram_init = &EngineCallbacks::nvramInit;
    callbacks.tpm_nvram_loaddata = &EngineCallbacks::load;
    callbacks.tpm_nvram_storedata = &EngineCallbacks::store;
    callbacks.tpm_nvram_deletename = &EngineCallbacks::remove;
    callbacks.tpm_io_init = &EngineCallbacks::ioInit;
    callbacks.tpm_io_getlocality = &EngineCallbacks::locality;
    if (TPMLIB_RegisterCallbacks(&callbacks) != TPM_SUCCESS)
    {
        throw std::runtime_error("libtpms refused the storage callbacks");
    }
    instance_ = this;
    bufferSize_ = TPMLIB_SetBufferSize(0, nullptr, nullptr);
}

TpmEngine::~TpmEngine()
{
    if (running_)
    {
        TPMLIB_Terminate();
    }
    TPM_Free(response_);
    instance_ = nullptr;
}

TpmResult TpmEngine::start()
{
    if (running_)
    {
        stop(false);
    }
    const auto tpmVersion = version_ == protocol::TpmVersion::Tpm2 ? TPMLIB_TPM_VERSION_2
                                                                   : TPMLIB_TPM_VERSION_1_2;
    // Terminate unlocks the version choice; choosing the same one again keeps injected blobs.
    TpmResult result = TPMLIB_ChooseTPMVersion(tpmVersion);
    if (result == TPM_SUCCESS)
    {
        result = TPMLIB_MainInit();
    }
    if (result != TPM_SUCCESS)
    {
        spdlog::error("TPM start failed: 0x{:x} {}", result, protocol::resultName(result));
        return result;
    }
    running_ = true;
    spdlog::info("TPM {} started", protocol::versionName(version_));
    return TPM_SUCCESS;
}

void TpmEngine::stop(bool autoShutdown)
{
    if (!running_)
    {
        return;
    }
    if (autoShutdown && version_ == protocol::TpmVersion::Tpm2 &&
        lastCommand_ != protocol::cc::kTpm2Shutdown)
    {
        Bytes command = protocol::tpm2ShutdownCommand(protocol::kTpm2SuState);
        auto header = protocol::parseTpmHeader(process(command));
        if (header && header->code != rc::kSuccess && header->code != rc::kTpm2Initialize)
        {
            command = protocol::tpm2ShutdownCommand(protocol::kTpm2SuClear);
            header = protocol::parseTpmHeader(process(command));
        }
        spdlog::debug("automatic TPM2_Shutdown: 0x{:x}", header ? header->code : rc::kFail);
    }
    TPMLIB_Terminate();
    running_ = false;
    spdlog::info("TPM stopped");
}

ByteView TpmEngine::process(std::span<std::uint8_t> command)
{
    if (const auto header = protocol::parseTpmHeader(command))
    {
        lastCommand_ = header->code;
    }
    std::uint32_t responseSize = 0;
    const TpmResult result =
        TPMLIB_Process(&response_, &responseSize, &responseCapacity_, command.data(),
                       static_cast<std::uint32_t>(command.size()));
    if (result != TPM_SUCCESS || response_ == nullptr)
    {
        // A library-level failure has no TPM response; answer like a TPM in failure mode
        // rather than leaving the client waiting (swtpm sends nothing here).
        spdlog::error("TPMLIB_Process failed: 0x{:x}", result);
        static const Bytes kFailure2 = protocol::notRunningResponse(protocol::TpmVersion::Tpm2);
        static const Bytes kFailure12 = protocol::notRunningResponse(protocol::TpmVersion::Tpm12);
        return version_ == protocol::TpmVersion::Tpm2 ? kFailure2 : kFailure12;
    }
    return {response_, responseSize};
}

TpmResult TpmEngine::storeVolatile(Bytes& out)
{
    LibtpmsBuffer buffer;
    std::uint32_t size = 0;
    const TpmResult result = TPMLIB_VolatileAll_Store(buffer.out(), &size);
    if (result == TPM_SUCCESS)
    {
        const ByteView view = buffer.view(size);
        out.assign(view.begin(), view.end());
    }
    return result;
}

TpmResult TpmEngine::setState(BlobType type, ByteView blob)
{
    return TPMLIB_SetState(libtpmsStateType(type), blob.empty() ? nullptr : blob.data(),
                           static_cast<std::uint32_t>(blob.size()));
}

protocol::BufferSizeReply TpmEngine::setBufferSize(std::uint32_t wanted)
{
    protocol::BufferSizeReply reply;
    reply.bufferSize = TPMLIB_SetBufferSize(wanted, &reply.minSize, &reply.maxSize);
    bufferSize_ = reply.bufferSize;
    return reply;
}

TpmResult TpmEngine::hashStart()
{
    return TPM_IO_Hash_Start();
}

TpmResult TpmEngine::hashData(ByteView data)
{
    return TPM_IO_Hash_Data(data.data(), static_cast<std::uint32_t>(data.size()));
}

TpmResult TpmEngine::hashEnd()
{
    return TPM_IO_Hash_End();
}

protocol::EstablishedReply TpmEngine::established()
{
    TPM_BOOL flag = 0;
    const TpmResult result = TPM_IO_TpmEstablished_Get(&flag);
    return {.result = result, .established = flag != 0};
}

TpmResult TpmEngine::resetEstablished(std::uint8_t locality)
{
    const std::uint8_t saved = locality_;
    locality_ = locality; // libtpms reads the requesting locality through the callback
    const TpmResult result = TPM_IO_TpmEstablished_Reset();
    locality_ = saved;
    return result;
}

TpmResult TpmEngine::cancel()
{
    return TPMLIB_CancelCommand();
}

std::optional<std::string> TpmEngine::info(std::uint64_t flags)
{
    char* json = TPMLIB_GetInfo(static_cast<TPMLIB_InfoFlags>(flags));
    if (json == nullptr)
    {
        return std::nullopt;
    }
    std::string result(json);
    std::free(json); // NOLINT: TPMLIB_GetInfo hands out malloc()ed memory
    return result;
}

bool TpmEngine::supports(protocol::TpmVersion version)
{
    return instance_ == nullptr &&
           TPMLIB_ChooseTPMVersion(version == protocol::TpmVersion::Tpm2
                                       ? TPMLIB_TPM_VERSION_2
                                       : TPMLIB_TPM_VERSION_1_2) == TPM_SUCCESS;
}

std::optional<std::string> TpmEngine::featureInfo(protocol::TpmVersion version,
                                                  std::uint64_t flags)
{
    if (!supports(version))
    {
        return std::nullopt;
    }
    return info(flags);
}

std::uint32_t TpmEngine::libraryVersion()
{
    return TPMLIB_GetVersion();
}

void TpmEngine::setDebug(int fd, unsigned level, const std::string& prefix)
{
    TPMLIB_SetDebugFD(fd);
    TPMLIB_SetDebugLevel(level);
    if (!prefix.empty())
    {
        (void)TPMLIB_SetDebugPrefix(prefix.c_str());
    }
}

} // namespace vtpm::daemon

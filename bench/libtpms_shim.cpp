#include "bench/libtpms_shim.hpp"

#include <fmt/format.h>
#include <libtpms/tpm_error.h>
#include <libtpms/tpm_library.h>
#include <libtpms/tpm_memory.h>

#include <cstring>
#include <map>
#include <string>

namespace vtpm::bench
{

namespace
{

// The in-memory "disk": blob name (permall, volatilestate, savestate) -> plaintext.
std::map<std::string, Bytes>& blobs()
{
    static std::map<std::string, Bytes> store;
    return store;
}

bool active = false; // one LibtpmsChannel at a time

TPM_RESULT nvramInit()
{
    return TPM_SUCCESS;
}

TPM_RESULT nvramLoad(unsigned char** data, uint32_t* length, uint32_t /*tpmNumber*/,
                     const char* name)
{
    const auto it = blobs().find(name);
    if (it == blobs().end())
    {
        return TPM_RETRY; // first start: libtpms manufactures the TPM
    }
    const auto size = static_cast<uint32_t>(it->second.size());
    if (TPM_Malloc(data, size) != TPM_SUCCESS)
    {
        return TPM_FAIL;
    }
    std::memcpy(*data, it->second.data(), size);
    *length = size;
    return TPM_SUCCESS;
}

TPM_RESULT nvramStore(const unsigned char* data, uint32_t length, uint32_t /*tpmNumber*/,
                      const char* name)
{
    Bytes& blob = blobs()[name];
    blob.assign(data, data + length); // reuses capacity after the first store
    return TPM_SUCCESS;
}

TPM_RESULT nvramDelete(uint32_t /*tpmNumber*/, const char* name, TPM_BOOL mustExist)
{
    const bool erased = blobs().erase(name) != 0;
    return erased || mustExist == 0 ? TPM_SUCCESS : TPM_FAIL;
}

TPM_RESULT ioInit()
{
    return TPM_SUCCESS;
}

TPM_RESULT ioLocality(TPM_MODIFIER_INDICATOR* locality, uint32_t /*tpmNumber*/)
{
    *locality = 0;
    return TPM_SUCCESS;
}

} // namespace

LibtpmsChannel::LibtpmsChannel(protocol::TpmVersion version) : version_(version)
{
    if (active)
    {
        throw BenchError("libtpms supports one TPM per process");
    }
    blobs().clear();
    const auto v =
        version == protocol::TpmVersion::Tpm2 ? TPMLIB_TPM_VERSION_2 : TPMLIB_TPM_VERSION_1_2;
    if (TPMLIB_ChooseTPMVersion(v) != TPM_SUCCESS)
    {
        throw BenchError("libtpms: cannot choose the TPM version");
    }
    libtpms_callbacks callbacks{};
    callbacks.sizeOfStruct = sizeof(callbacks);
    callbacks.tpm_nvram_init = &nvramInit;
    callbacks.tpm_nvram_loaddata = &nvramLoad;
    callbacks.tpm_nvram_storedata = &nvramStore;
    callbacks.tpm_nvram_deletename = &nvramDelete;
    callbacks.tpm_io_init = &ioInit;
    callbacks.tpm_io_getlocality = &ioLocality;
    if (TPMLIB_RegisterCallbacks(&callbacks) != TPM_SUCCESS)
    {
        throw BenchError("libtpms refused the callbacks");
    }
    if (const TPM_RESULT r = TPMLIB_MainInit(); r != TPM_SUCCESS)
    {
        throw BenchError(fmt::format("TPMLIB_MainInit: {}", hex(r)));
    }
    active = true;
    command_.reserve(kResponseBufferSize);
}

LibtpmsChannel::~LibtpmsChannel()
{
    TPMLIB_Terminate();
    TPM_Free(response_);
    blobs().clear();
    active = false;
}

ByteView LibtpmsChannel::transact(ByteView command)
{
    command_.assign(command.begin(), command.end()); // within capacity: no allocation
    std::uint32_t size = 0;
    const TPM_RESULT r = TPMLIB_Process(&response_, &size, &capacity_, command_.data(),
                                        static_cast<std::uint32_t>(command_.size()));
    if (r != TPM_SUCCESS || response_ == nullptr)
    {
        throw BenchError(fmt::format("TPMLIB_Process: {}", hex(r)));
    }
    return {response_, size};
}

} // namespace vtpm::bench

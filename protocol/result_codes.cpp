#include "protocol/result_codes.hpp"

#include <utility>

namespace vtpm::protocol
{

std::string_view resultName(TpmResult code) noexcept
{
    static constexpr std::pair<TpmResult, std::string_view> kNames[] = {
        {rc::kSuccess, "TPM_SUCCESS"},
        {rc::kBadParameter, "TPM_BAD_PARAMETER"},
        {rc::kFail, "TPM_FAIL"},
        {rc::kBadOrdinal, "TPM_BAD_ORDINAL"},
        {rc::kKeyNotFound, "TPM_KEYNOTFOUND"},
        {rc::kSize, "TPM_SIZE"},
        {rc::kBadParamSize, "TPM_BAD_PARAM_SIZE"},
        {rc::kIoError, "TPM_IOERROR"},
        {rc::kEncryptError, "TPM_ENCRYPT_ERROR"},
        {rc::kDecryptError, "TPM_DECRYPT_ERROR"},
        {rc::kInvalidPostInit, "TPM_INVALID_POSTINIT"},
        {rc::kBadKeyProperty, "TPM_BAD_KEY_PROPERTY"},
        {rc::kBadDataSize, "TPM_BAD_DATASIZE"},
        {rc::kBadMode, "TPM_BAD_MODE"},
        {rc::kBadVersion, "TPM_BAD_VERSION"},
        {rc::kBadType, "TPM_BAD_TYPE"},
        {rc::kBadLocality, "TPM_BAD_LOCALITY"},
        {rc::kRetry, "TPM_RETRY"},
        {rc::kTpm2Initialize, "TPM_RC_INITIALIZE"},
        {rc::kTpm2Failure, "TPM_RC_FAILURE"},
        {rc::kTpm2Locality, "TPM_RC_LOCALITY"},
        {rc::kTpm2Insufficient, "TPM_RC_INSUFFICIENT"},
        {rc::kTpm2CommandSize, "TPM_RC_COMMAND_SIZE"},
    };
    for (const auto& [value, name] : kNames)
    {
        if (value == code)
        {
            return name;
        }
    }
    return "";
}

} // namespace vtpm::protocol

#pragma once

#include "protocol/blob_type.hpp"
#include "protocol/byte_io.hpp"
#include "protocol/result_codes.hpp"

// What the TPM engine needs from persistent storage: libtpms' NVRAM callbacks, expressed in
// blob types and TPM result codes. Implemented over state/ by the daemon (StateStore).
namespace vtpm::daemon
{

class NvStore
{
public:
    virtual ~NvStore() = default;

    // rc::kRetry when the blob does not exist yet (libtpms then manufactures a new TPM);
    // any other failure is fatal for the TPM start and must never be reported as kRetry.
    virtual protocol::TpmResult load(protocol::BlobType type, protocol::Bytes& out) = 0;
    virtual protocol::TpmResult store(protocol::BlobType type, protocol::ByteView data) = 0;
    virtual protocol::TpmResult remove(protocol::BlobType type, bool mustExist) = 0;
};

} // namespace vtpm::daemon

#pragma once

#include "bench/channel.hpp"
#include "protocol/tpm_version.hpp"

#include <cstdint>

// BENCH-ONLY engine shim: calls libtpms in-process, with NVRAM callbacks that keep the state
// blobs in memory, so a workload's time can be compared with "the limit" (libtpms alone, no
// socket, no disk). This is the one sanctioned exception to "tools never run libtpms
// themselves"; it is deliberately minimal and not a daemon engine (no locality, no hashing, no
// state injection, no error recovery). libtpms holds one TPM per process, so at most one
// LibtpmsChannel may exist at a time.
namespace vtpm::bench
{

class LibtpmsChannel final : public TpmChannel
{
public:
    // Fresh (empty) in-memory state; TPMLIB_MainInit manufactures a new TPM.
    explicit LibtpmsChannel(protocol::TpmVersion version);
    ~LibtpmsChannel() override;
    LibtpmsChannel(const LibtpmsChannel&) = delete;
    LibtpmsChannel& operator=(const LibtpmsChannel&) = delete;

    ByteView transact(ByteView command) override;

private:
    protocol::TpmVersion version_;
    unsigned char* response_ = nullptr;
    std::uint32_t capacity_ = 0;
    Bytes command_; // TPMLIB_Process takes a non-const buffer
};

} // namespace vtpm::bench

#pragma once

#include "daemon/nv_store.hpp"
#include "protocol/byte_io.hpp"
#include "protocol/ctrl_messages.hpp"
#include "protocol/result_codes.hpp"
#include "protocol/tpm_version.hpp"

#include <cstdint>
#include <optional>
#include <span>
#include <string>

// The only code in vtpmd that calls into libtpms (TPMLIB_*, TPM_IO_*). libtpms keeps its TPM in
// process-wide globals, so at most one TpmEngine may exist per process: that is why vtpmd runs
// one process per VM.
namespace vtpm::daemon
{

class TpmEngine
{
public:
    // Selects the TPM personality and installs the NVRAM/IO callbacks; throws on failure.
    TpmEngine(protocol::TpmVersion version, NvStore& store);
    ~TpmEngine();
    TpmEngine(const TpmEngine&) = delete;
    TpmEngine& operator=(const TpmEngine&) = delete;

    [[nodiscard]] protocol::TpmVersion version() const noexcept { return version_; }
    [[nodiscard]] bool running() const noexcept { return running_; }

    // Powers the TPM on (TPMLIB_MainInit): loads or manufactures state, resumes a stored
    // volatile state. Stops a running TPM first (with the automatic shutdown if asked).
    [[nodiscard]] protocol::TpmResult start();
    // Powers the TPM off. With autoShutdown, a TPM 2 whose last command was not TPM2_Shutdown
    // gets one first, so the reset is "orderly" and no DA-lockout count is taken (§8.5).
    void stop(bool autoShutdown);

    // Executes one complete command. The view stays valid until the next call; the TPM must be
    // running. The command buffer is libtpms' input and may be modified by it.
    protocol::ByteView process(std::span<std::uint8_t> command);
    [[nodiscard]] std::uint32_t lastCommand() const noexcept { return lastCommand_; }

    // Current locality as libtpms sees it (the daemon's, not stored in libtpms).
    [[nodiscard]] std::uint8_t locality() const noexcept { return locality_; }
    void setLocality(std::uint8_t locality) noexcept { locality_ = locality; }

    [[nodiscard]] protocol::TpmResult storeVolatile(protocol::Bytes& out);
    // Injects a blob for the next start; an empty blob hides the stored one (TPMLIB_SetState).
    [[nodiscard]] protocol::TpmResult setState(protocol::BlobType type, protocol::ByteView blob);

    // 0 queries; otherwise only valid while stopped. Returns what is in effect.
    protocol::BufferSizeReply setBufferSize(std::uint32_t wanted);
    [[nodiscard]] std::uint32_t bufferSize() const noexcept { return bufferSize_; }

    [[nodiscard]] protocol::TpmResult hashStart();
    [[nodiscard]] protocol::TpmResult hashData(protocol::ByteView data);
    [[nodiscard]] protocol::TpmResult hashEnd();
    [[nodiscard]] protocol::EstablishedReply established();
    // Resets the TPM-established flag as if requested from `locality` (libtpms wants 3 or 4).
    [[nodiscard]] protocol::TpmResult resetEstablished(std::uint8_t locality);
    [[nodiscard]] protocol::TpmResult cancel();

    // TPMLIB_GetInfo JSON; nullopt if libtpms could not produce it.
    [[nodiscard]] static std::optional<std::string> info(std::uint64_t flags);
    [[nodiscard]] static std::uint32_t libraryVersion();
    // For --print-capabilities, before any engine exists: can libtpms emulate this TPM, and
    // what does it report about it?
    [[nodiscard]] static bool supports(protocol::TpmVersion version);
    [[nodiscard]] static std::optional<std::string> featureInfo(protocol::TpmVersion version,
                                                                std::uint64_t flags);
    // Passes libtpms' own debug output to fd (0 = off).
    static void setDebug(int fd, unsigned level, const std::string& prefix);

private:
    static TpmEngine* instance_;

    protocol::TpmVersion version_;
    NvStore& store_;
    bool running_ = false;
    std::uint8_t locality_ = 0;
    std::uint32_t lastCommand_ = 0;
    std::uint32_t bufferSize_ = 0;
    // libtpms' response buffer, kept across commands so the hot path allocates nothing.
    unsigned char* response_ = nullptr;
    std::uint32_t responseCapacity_ = 0;

    friend struct EngineCallbacks;
};

} // namespace vtpm::daemon

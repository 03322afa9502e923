#pragma once

#include "daemon/control_handler.hpp"
#include "daemon/options.hpp"
#include "daemon/state_store.hpp"
#include "daemon/tpm_engine.hpp"
#include "protocol/byte_io.hpp"

#include <chrono>
#include <cstdint>
#include <span>

// What happens to one framed data-channel command before and after libtpms sees it: the
// not-running reply, the TCG send-command prefix and the in-band SetLocality command
// (protocol.md §2.3.1–§2.3.3). Socket-free, so the rules are testable on their own.
namespace vtpm::daemon
{

class DataHandler
{
public:
    DataHandler(TpmEngine& engine, StateStore& store, const Options& options,
                DaemonControl& daemon);

    // `frame` holds one complete command, `prefixSize` bytes of TCG prefix first. The returned
    // view is valid until the next call.
    protocol::ByteView execute(std::span<std::uint8_t> frame, std::size_t prefixSize);
    // The reply for a frame whose size field is out of range.
    protocol::ByteView sizeError();

    [[nodiscard]] std::uint64_t commandsServed() const noexcept { return served_; }
    [[nodiscard]] std::uint32_t lastCommand() const noexcept { return lastCommand_; }
    [[nodiscard]] std::chrono::system_clock::time_point lastCommandTime() const noexcept
    {
        return lastCommandTime_;
    }
    // Frames refused for their size (oversized or impossible size fields).
    [[nodiscard]] std::uint64_t badFrames() const noexcept { return badFrames_; }

private:
    protocol::ByteView generated(protocol::Bytes bytes);
    protocol::ByteView setLocality(protocol::ByteView command);

    TpmEngine& engine_;
    StateStore& store_;
    const Options& options_;
    DaemonControl& daemon_;
    protocol::Bytes scratch_; // replies the daemon makes itself
    std::uint64_t served_ = 0;
    std::uint64_t badFrames_ = 0;
    std::uint32_t lastCommand_ = 0;
    std::chrono::system_clock::time_point lastCommandTime_{};
};

} // namespace vtpm::daemon

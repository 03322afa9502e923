#pragma once

#include "daemon/options.hpp"
#include "daemon/tpm_engine.hpp"
#include "protocol/byte_io.hpp"
#include "protocol/ctrl_messages.hpp"
#include "state/key.hpp"
#include "state/unique_fd.hpp"

#include <cstdint>

// The semantics of the control channel's commands (protocol.md §3, §12), independent of any
// socket: a complete message in, the reply bytes out.
namespace vtpm::daemon
{

class StateStore;

// What a control command may ask of the daemon around it.
class DaemonControl
{
public:
    virtual ~DaemonControl() = default;
    // Adopts a data connection handed over with CMD_SET_DATAFD; the result is the reply code.
    virtual protocol::TpmResult adoptDataFd(state::UniqueFd fd) = 0;
    // The daemon cannot go on safely (e.g. it lost its state lock): leave after this request.
    virtual void requestExit(const char* why) = 0;
};

struct CtrlOutcome
{
    protocol::Bytes reply;
    bool exitAfterReply = false; // CMD_SHUTDOWN: leave once the reply is on its way
};

class ControlHandler
{
public:
    // The keys (either may be null) must outlive the handler.
    ControlHandler(TpmEngine& engine, StateStore& store, const Options& options,
                   DaemonControl& daemon, const state::Key* stateKey,
                   const state::Key* migrationKey);

    // `message` starts with the 4-byte command code; `passedFd` is the SCM_RIGHTS descriptor
    // that arrived with it, if any (closed unless CMD_SET_DATAFD adopts it).
    CtrlOutcome handle(protocol::ByteView message, state::UniqueFd passedFd);

    // The start sequence shared by CMD_INIT and start-at-launch (§8.2).
    [[nodiscard]] protocol::TpmResult init(std::uint32_t flags);
    // Everything CMD_STOP does; also used on exit.
    void stop();

    // Health counters for logs and, later, vtpmctl status.
    [[nodiscard]] std::uint64_t commandsHandled() const noexcept { return handled_; }

private:
    CtrlOutcome dispatch(protocol::CtrlCode code, protocol::ByteView payload,
                         state::UniqueFd passedFd);
    protocol::Bytes getStateBlob(const protocol::GetStateBlobRequest& request);
    protocol::TpmResult setStateBlob(const protocol::SetStateBlobRequest& request);
    protocol::Bytes getInfo(const protocol::GetInfoRequest& request);
    protocol::Bytes setBufferSize(std::uint32_t wanted);
    [[nodiscard]] std::uint32_t capabilities() const noexcept;

    TpmEngine& engine_;
    StateStore& store_;
    const Options& options_;
    DaemonControl& daemon_;
    const state::Key* stateKey_;
    const state::Key* migrationKey_;
    std::uint64_t handled_ = 0;
};

} // namespace vtpm::daemon

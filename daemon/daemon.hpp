#pragma once

#include "daemon/control_handler.hpp"
#include "daemon/data_handler.hpp"
#include "daemon/health_report.hpp"
#include "daemon/listener.hpp"
#include "daemon/options.hpp"
#include "daemon/state_store.hpp"
#include "daemon/tpm_engine.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>

#include <functional>
#include <optional>
#include <memory>

// One vtpmd instance: the event loop, the TPM, its state and the two channels, wired the way
// swtpm's socket mode behaves (protocol.md §2.2). Everything runs on one thread.
namespace vtpm::daemon
{

class CtrlSession;
class DataSession;

class Daemon final : public DaemonControl
{
public:
    // Locks the state and creates the sockets. Throws with a message for the user if either
    // fails; nothing is left behind then.
    explicit Daemon(const Options& options);
    ~Daemon() override;
    Daemon(const Daemon&) = delete;
    Daemon& operator=(const Daemon&) = delete;

    // With not-need-init, starts the TPM (and sends the launch Startup); throws on failure.
    void startTpm();
    // Serves until CMD_SHUTDOWN, a signal or a --terminate condition; returns the exit status.
    int run();

    protocol::TpmResult adoptDataFd(state::UniqueFd fd) override;
    void requestExit(const char* why) override;

    [[nodiscard]] HealthReport health() const;

private:
    void createChannels();
    void onCtrlClient(state::UniqueFd fd);
    void onCtrlClosed();
    void startData(state::UniqueFd fd, bool disconnectAfterResponse);
    void onDataClosed();
    void shutdown(const char* why);
    void answerStatus(state::UniqueFd fd) const;

    const Options& options_;
    boost::asio::io_context io_{1};
    boost::asio::signal_set signals_;
    std::optional<state::Key> stateKey_;
    std::optional<state::Key> migrationKey_;
    StateStore store_;
    TpmEngine engine_;
    ControlHandler control_;
    DataHandler data_;
    std::unique_ptr<Listener> ctrlListener_;
    std::unique_ptr<Listener> dataListener_;
    std::unique_ptr<Listener> statusListener_;
    std::weak_ptr<CtrlSession> ctrlSession_;
    std::weak_ptr<DataSession> dataSession_;
    bool dataConfigured_ = false; // --server/--fd: CMD_SET_DATAFD is refused
    bool stopping_ = false;
    std::chrono::system_clock::time_point startedAt_ = std::chrono::system_clock::now();
};

} // namespace vtpm::daemon

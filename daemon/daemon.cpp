#include "daemon/daemon.hpp"

#include "daemon/ctrl_session.hpp"
#include "daemon/data_session.hpp"
#include "daemon/service_notify.hpp"
#include "protocol/tpm_frame.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/post.hpp>

#include <csignal>

#include <unistd.h>

namespace vtpm::daemon
{

namespace rc = protocol::rc;
using protocol::TpmVersion;

namespace
{

constexpr mode_t kDefaultSocketMode = 0600;

std::filesystem::path socketPathOf(const Endpoint& e)
{
    return e.kind == Endpoint::Kind::UnixPath ? e.path : std::filesystem::path{};
}

state::UniqueFd openListening(const Endpoint& e, const char* what)
{
    switch (e.kind)
    {
    case Endpoint::Kind::UnixPath:
        return listenUnix(e.path, e.mode.value_or(kDefaultSocketMode), e.uid, e.gid);
    case Endpoint::Kind::TcpPort:
        return listenTcp(e.bindAddr, e.port, e.ifname);
    case Endpoint::Kind::UnixFd:
    case Endpoint::Kind::TcpFd:
        checkSocketFd(e.fd, true, what);
        return state::UniqueFd(e.fd);
    case Endpoint::Kind::UnixClientFd:
        break;
    }
    throw std::logic_error("not a listening endpoint");
}

std::optional<state::Key> loadOptionalKey(const std::optional<state::KeySpec>& spec,
                                          std::string_view option)
{
    if (!spec)
    {
        return std::nullopt;
    }
    return state::loadKey(*spec, option);
}

protocol::Bytes startupCommand(TpmVersion version, StartupType type)
{
    if (version == TpmVersion::Tpm2)
    {
        return protocol::tpm2StartupCommand(type == StartupType::State ? protocol::kTpm2SuState
                                                                       : protocol::kTpm2SuClear);
    }
    switch (type)
    {
    case StartupType::State:
        return protocol::tpm12StartupCommand(protocol::kTpm12StState);
    case StartupType::Deactivated:
        return protocol::tpm12StartupCommand(protocol::kTpm12StDeactivated);
    default:
        return protocol::tpm12StartupCommand(protocol::kTpm12StClear);
    }
}

} // namespace

Daemon::Daemon(const Options& options) :
    options_(options),
    signals_(io_, SIGINT, SIGTERM),
    stateKey_(loadOptionalKey(options.key, "--key")),
    migrationKey_(loadOptionalKey(options.migrationKey, "--migration-key")),
    store_(options.tpmstate.value(), options.tpmVersion, stateKey_ ? &*stateKey_ : nullptr),
    engine_(options.tpmVersion, store_),
    control_(engine_, store_, options_, *this, stateKey_ ? &*stateKey_ : nullptr,
             migrationKey_ ? &*migrationKey_ : nullptr),
    data_(engine_, store_, options_, *this)
{
    // The lock comes before the sockets: a second daemon on the same state must not replace
    // the first one's socket files before it finds out it cannot run. An incoming migration
    // on shared storage waits for the state instead: the source still holds the lock.
    std::string error;
    if (!options_.migration.incoming && !store_.ensureLocked(&error))
    {
        throw std::runtime_error(error);
    }
    createChannels();
}

Daemon::~Daemon()
{
    shutdown("daemon destroyed");
}

void Daemon::createChannels()
{
    if (options_.ctrl)
    {
        const Endpoint& e = options_.ctrl->endpoint;
        if (e.kind == Endpoint::Kind::UnixClientFd)
        {
            checkSocketFd(e.fd, false, "--ctrl clientfd");
        }
        else
        {
            ctrlListener_ = std::make_unique<Listener>(
                io_, openListening(e, "--ctrl"), "control", socketPathOf(e),
                [this](state::UniqueFd fd) { onCtrlClient(std::move(fd)); });
        }
    }
    if (options_.server)
    {
        dataConfigured_ = true;
        const Endpoint& e = options_.server->endpoint;
        if (e.kind != Endpoint::Kind::TcpFd)
        {
            dataListener_ = std::make_unique<Listener>(
                io_, openListening(e, "--server"), "data", socketPathOf(e),
                [this](state::UniqueFd fd)
                { startData(std::move(fd), options_.server->disconnect); });
        }
        else
        {
            checkSocketFd(e.fd, false, "--server fd");
        }
    }
    if (options_.status)
    {
        const Endpoint& e = *options_.status;
        statusListener_ = std::make_unique<Listener>(
            io_, openListening(e, "--status"), "status", socketPathOf(e),
            [this](state::UniqueFd fd)
            {
                answerStatus(std::move(fd));
                statusListener_->arm();
            });
    }
}

HealthReport Daemon::health() const
{
    const auto dataSession = dataSession_.lock();
    const std::uint32_t last = data_.lastCommand();
    return HealthReport{
        .tpmVersion = std::string(protocol::versionName(options_.tpmVersion)),
        .tpmRunning = engine_.running(),
        .controlConnected = !ctrlSession_.expired(),
        .dataConnected = dataSession != nullptr,
        .stateDir = options_.tpmstate->dir,
        .stateLocked = store_.locked(),
        .startedAt = startedAt_,
        .commandsServed = data_.commandsServed(),
        .controlCommands = control_.commandsHandled(),
        .lastCommandCode = last,
        .lastCommandName = std::string(protocol::tpmCommandName(options_.tpmVersion, last)),
        .lastCommandTime = data_.lastCommandTime(),
        .badFrames = data_.badFrames(),
        .storageErrors = store_.errors(),
        .bufferSize = engine_.bufferSize(),
        .locality = engine_.locality(),
    };
}

void Daemon::answerStatus(state::UniqueFd fd) const
{
    // One small report per connection: it fits the socket buffer, so a single non-blocking
    // write either delivers it or the reader was not ready to read it; no state is kept.
    const std::string report = toJson(health());
    if (::write(fd.get(), report.data(), report.size()) != static_cast<ssize_t>(report.size()))
    {
        spdlog::debug("status: report not delivered");
    }
}

void Daemon::startTpm()
{
    if (!options_.flags.notNeedInit)
    {
        return;
    }
    const protocol::TpmResult result = control_.init(0);
    if (result != rc::kSuccess)
    {
        const std::string& cause = store_.lastError();
        throw std::runtime_error(fmt::format(
            "could not start the TPM (0x{:x} {}): {}", result, protocol::resultName(result),
            cause.empty() ? "libtpms refused the state in " + options_.tpmstate->dir.string()
                          : cause));
    }
    const auto type = options_.flags.startup.value_or(StartupType::None);
    if (type != StartupType::None)
    {
        // Sent once at launch only; its TPM result is informational (a resumed TPM refuses it).
        protocol::Bytes command = startupCommand(options_.tpmVersion, type);
        const auto header = protocol::parseTpmHeader(engine_.process(command));
        spdlog::info("startup command at launch: 0x{:x}", header ? header->code : rc::kFail);
    }
}

int Daemon::run()
{
    signals_.async_wait(
        [this](const boost::system::error_code& ec, int signal)
        {
            if (!ec)
            {
                spdlog::info("signal {} received", signal);
                shutdown("signal");
            }
        });
    // Listening starts only now that the TPM could be started: a client that connects finds
    // a daemon that serves (readiness = the sockets accept).
    for (Listener* listener : {ctrlListener_.get(), dataListener_.get(), statusListener_.get()})
    {
        if (listener != nullptr)
        {
            listener->listen();
        }
    }
    if (ctrlListener_)
    {
        ctrlListener_->arm();
    }
    else if (options_.ctrl)
    {
        onCtrlClient(state::UniqueFd(options_.ctrl->endpoint.fd));
    }
    if (dataListener_)
    {
        dataListener_->arm();
    }
    else if (options_.server)
    {
        startData(state::UniqueFd(options_.server->endpoint.fd), options_.server->disconnect);
    }
    if (statusListener_)
    {
        statusListener_->arm();
    }
    spdlog::info("vtpmd ready: TPM {}, state in {}", protocol::versionName(options_.tpmVersion),
                 options_.tpmstate->dir.string());
    // Every socket listens now: tell systemd (Type=notify) or vtpmctl, whichever started us.
    (void)notifyService(fmt::format("READY=1\nSTATUS=serving TPM {}\nMAINPID={}",
                                    protocol::versionName(options_.tpmVersion), ::getpid()));
    io_.run();
    return 0;
}

void Daemon::onCtrlClient(state::UniqueFd fd)
{
    auto session = std::make_shared<CtrlSession>(
        io_, std::move(fd), control_, [this] { onCtrlClosed(); },
        [this] { shutdown("CMD_SHUTDOWN"); });
    ctrlSession_ = session;
    session->start();
}

void Daemon::onCtrlClosed()
{
    if (stopping_)
    {
        return;
    }
    spdlog::debug("control: client disconnected");
    if (options_.ctrl && options_.ctrl->terminate)
    {
        shutdown("control connection closed (terminate)");
        return;
    }
    if (ctrlListener_)
    {
        ctrlListener_->arm();
    }
}

protocol::TpmResult Daemon::adoptDataFd(state::UniqueFd fd)
{
    if (dataConfigured_ || !dataSession_.expired())
    {
        spdlog::warn("CMD_SET_DATAFD refused: a data channel is already configured");
        return rc::kIoError;
    }
    if (!fd.valid())
    {
        return rc::kBadParameter;
    }
    startData(std::move(fd), false);
    return rc::kSuccess;
}

void Daemon::requestExit(const char* why)
{
    // Deferred: the request that asked is still being answered.
    boost::asio::post(io_, [this, why] { shutdown(why); });
}

void Daemon::startData(state::UniqueFd fd, bool disconnectAfterResponse)
{
    auto session = std::make_shared<DataSession>(io_, std::move(fd), data_, options_.tpmVersion,
                                                 disconnectAfterResponse,
                                                 [this] { onDataClosed(); });
    dataSession_ = session;
    session->start();
}

void Daemon::onDataClosed()
{
    if (stopping_)
    {
        return;
    }
    dataSession_.reset();
    if (options_.terminate)
    {
        shutdown("data connection closed (--terminate)");
        return;
    }
    if (dataListener_)
    {
        dataListener_->arm();
    }
}

void Daemon::shutdown(const char* why)
{
    if (stopping_)
    {
        return;
    }
    stopping_ = true;
    spdlog::info("shutting down: {}", why);
    (void)notifyService("STOPPING=1");
    control_.stop(); // automatic TPM2_Shutdown and state stored, unless disabled
    if (auto session = ctrlSession_.lock())
    {
        session->close();
    }
    if (auto session = dataSession_.lock())
    {
        session->close();
    }
    if (ctrlListener_)
    {
        ctrlListener_->close();
    }
    if (dataListener_)
    {
        dataListener_->close();
    }
    if (statusListener_)
    {
        statusListener_->close();
    }
    signals_.cancel();
    store_.flush(); // deferred fsyncs done before the lock goes
    store_.unlock();
    io_.stop();
}

} // namespace vtpm::daemon

#include "bench/daemon_process.hpp"

#include <fmt/format.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ; // NOLINT: POSIX global, needed by posix_spawn

namespace vtpm::bench
{

std::string_view transportName(Transport t) noexcept
{
    switch (t)
    {
    case Transport::DataFd:
        return "datafd";
    case Transport::Unix:
        return "unix";
    case Transport::Tcp:
        return "tcp";
    }
    return "?";
}

std::optional<Transport> transportFromName(std::string_view name) noexcept
{
    for (const Transport t : {Transport::DataFd, Transport::Unix, Transport::Tcp})
    {
        if (name == transportName(t))
        {
            return t;
        }
    }
    return std::nullopt;
}

TempDir::TempDir()
{
    const char* base = std::getenv("TMPDIR");
    std::string templ = fmt::format("{}/vtpm-bench.XXXXXX", base != nullptr ? base : "/tmp");
    if (::mkdtemp(templ.data()) == nullptr)
    {
        throw BenchError(fmt::format("mkdtemp {}: {}", templ, std::strerror(errno)));
    }
    path_ = templ;
}

TempDir::~TempDir()
{
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
}

MemoryUsage readMemoryUsage(pid_t pid)
{
    std::ifstream in(fmt::format("/proc/{}/smaps_rollup", pid));
    if (!in)
    {
        throw BenchError(fmt::format("cannot read /proc/{}/smaps_rollup", pid));
    }
    MemoryUsage usage;
    std::string key;
    std::uint64_t value = 0;
    std::string line;
    while (std::getline(in, line))
    {
        std::istringstream fields(line);
        if (!(fields >> key >> value))
        {
            continue;
        }
        if (key == "Rss:")
        {
            usage.rss = value;
        }
        else if (key == "Pss:")
        {
            usage.pss = value;
        }
        else if (key == "Anonymous:")
        {
            usage.anonymous = value;
        }
    }
    return usage;
}

DaemonInstance::DaemonInstance(DaemonConfig config, std::filesystem::path stateDir) :
    config_(std::move(config)), stateDir_(std::move(stateDir))
{
    if (stateDir_.empty())
    {
        stateDir_ = dir_.path() / "state";
        std::filesystem::create_directory(stateDir_);
    }
}

DaemonInstance::~DaemonInstance()
{
    data_.reset();
    ctrl_.reset();
    if (pid_ > 0)
    {
        ::kill(pid_, SIGTERM);
        try
        {
            reap(2.0);
        }
        catch (const BenchError&)
        {
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, nullptr, 0);
        }
    }
}

void DaemonInstance::spawn()
{
    std::vector<std::string> args = {config_.exe, "socket"};
    if (config_.version == protocol::TpmVersion::Tpm2)
    {
        args.emplace_back("--tpm2");
    }
    args.emplace_back("--tpmstate");
    args.emplace_back(fmt::format("dir={}", stateDir_.string()));
    args.emplace_back("--ctrl");
    args.emplace_back(fmt::format("type=unixio,path={}", ctrlPath()));
    if (config_.transport == Transport::Unix)
    {
        args.emplace_back("--server");
        args.emplace_back(fmt::format("type=unixio,path={}", (dir_.path() / "data.sock").string()));
    }
    else if (config_.transport == Transport::Tcp)
    {
        tcpPort_ = freeTcpPort();
        args.emplace_back("--server");
        args.emplace_back(fmt::format("type=tcp,port={},bindaddr=127.0.0.1", tcpPort_));
    }
    args.insert(args.end(), config_.extraArgs.begin(), config_.extraArgs.end());

    std::vector<char*> argv;
    for (std::string& a : args)
    {
        argv.push_back(a.data());
    }
    argv.push_back(nullptr);

    const std::string log = (dir_.path() / "daemon.log").string();
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
    const int err =
        ::posix_spawn(&pid_, config_.exe.c_str(), &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (err != 0)
    {
        pid_ = -1;
        throw BenchError(fmt::format("cannot start {}: {}", config_.exe, std::strerror(err)));
    }
}

void DaemonInstance::checkAlive()
{
    int status = 0;
    if (pid_ > 0 && ::waitpid(pid_, &status, WNOHANG) == pid_)
    {
        pid_ = -1;
        throw BenchError(
            fmt::format("{} exited early (status {}); log:\n{}", config_.exe, status, logTail()));
    }
}

void DaemonInstance::connectControl()
{
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline)
    {
        if (UniqueFd fd = connectUnix(ctrlPath()))
        {
            ctrl_ = std::make_unique<CtrlClient>(std::move(fd));
            return;
        }
        checkAlive();
        std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
    throw BenchError(
        fmt::format("{}: control socket never accepted; log:\n{}", config_.exe, logTail()));
}

std::uint32_t DaemonInstance::getCapability()
{
    return ctrl_->getCapability();
}

void DaemonInstance::attachData()
{
    UniqueFd fd;
    switch (config_.transport)
    {
    case Transport::DataFd:
        fd = ctrl_->setDataFd();
        break;
    case Transport::Unix:
        fd = connectUnixRetry((dir_.path() / "data.sock").string(), 10.0);
        break;
    case Transport::Tcp:
        fd = connectTcp(tcpPort_, 10.0);
        break;
    }
    if (!fd)
    {
        checkAlive();
        throw BenchError(
            fmt::format("cannot connect to the {} data channel", transportName(config_.transport)));
    }
    data_ = std::make_unique<SocketChannel>(std::move(fd));
}

void DaemonInstance::init()
{
    ctrl_->init(0);
}

void DaemonInstance::tpmStartup()
{
    const bool tpm2 = config_.version == protocol::TpmVersion::Tpm2;
    const Bytes command = tpm2 ? tpm2::startup() : tpm12::startupClear();
    expectSuccess(data().transact(command), config_.version, tpm2 ? "TPM2_Startup" : "TPM_Startup");
}

void DaemonInstance::bringUp()
{
    spawn();
    connectControl();
    (void)getCapability();
    attachData();
    init();
    tpmStartup();
}

TpmChannel& DaemonInstance::data()
{
    if (!data_)
    {
        throw BenchError("data channel not attached");
    }
    return *data_;
}

void DaemonInstance::reap(double timeoutSeconds)
{
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::duration<double>(timeoutSeconds);
    while (std::chrono::steady_clock::now() < deadline)
    {
        int status = 0;
        const pid_t r = ::waitpid(pid_, &status, WNOHANG);
        if (r == pid_)
        {
            pid_ = -1;
            if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            {
                throw BenchError(fmt::format("{} ended with status {:#x}; log:\n{}", config_.exe,
                                             status, logTail()));
            }
            return;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    throw BenchError(fmt::format("{} did not exit", config_.exe));
}

void DaemonInstance::shutdown()
{
    if (!ctrl_)
    {
        connectControl();
    }
    data_.reset();
    ctrl_->shutdown();
    ctrl_.reset();
    reap(10.0);
}

std::string DaemonInstance::logTail() const
{
    std::ifstream in(dir_.path() / "daemon.log");
    std::stringstream all;
    all << in.rdbuf();
    std::string text = all.str();
    constexpr std::size_t kTail = 2000;
    return text.size() > kTail ? text.substr(text.size() - kTail) : text;
}

} // namespace vtpm::bench

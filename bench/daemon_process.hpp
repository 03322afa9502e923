#pragma once

#include "bench/channel.hpp"
#include "protocol/tpm_version.hpp"

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <sys/types.h>

// Launching an swtpm-compatible daemon ("<exe> socket ...", the same argv for vtpmd and swtpm)
// on a temporary directory and bringing its TPM up the way QEMU does (protocol.md §9.1-9.2).
namespace vtpm::bench
{

enum class Transport
{
    DataFd, // CMD_SET_DATAFD socketpair on the UNIX control socket (QEMU/libvirt)
    Unix,   // --server type=unixio,path=...
    Tcp,    // --server type=tcp,port=...
};

std::string_view transportName(Transport t) noexcept;
std::optional<Transport> transportFromName(std::string_view name) noexcept;

// mkdtemp under $TMPDIR (or /tmp), removed recursively on destruction.
class TempDir
{
public:
    TempDir();
    ~TempDir();
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    [[nodiscard]] const std::filesystem::path& path() const noexcept { return path_; }

private:
    std::filesystem::path path_;
};

struct DaemonConfig
{
    std::string exe;
    protocol::TpmVersion version = protocol::TpmVersion::Tpm2;
    Transport transport = Transport::DataFd;
    std::vector<std::string> extraArgs; // appended verbatim (e.g. a durability option)
};

// Memory figures of one process from /proc/PID/smaps_rollup, in KiB.
struct MemoryUsage
{
    std::uint64_t rss = 0;
    std::uint64_t pss = 0;
    std::uint64_t anonymous = 0; // "Anonymous:": private anonymous memory (no fork sharing here)
};
MemoryUsage readMemoryUsage(pid_t pid);

// One daemon process with its control connection and data channel. The steps are separate
// so start-up can be timed milestone by milestone; bringUp() runs them all.
class DaemonInstance
{
public:
    // stateDir: empty for a fresh directory inside the instance's temp dir.
    DaemonInstance(DaemonConfig config, std::filesystem::path stateDir = {});
    ~DaemonInstance();
    DaemonInstance(const DaemonInstance&) = delete;
    DaemonInstance& operator=(const DaemonInstance&) = delete;

    void spawn();
    void connectControl(); // waits until the control socket accepts
    std::uint32_t getCapability();
    void attachData(); // SET_DATAFD, or connect to the data socket
    void init();       // CMD_INIT(0)
    void tpmStartup(); // TPM2_Startup(CLEAR) / TPM_Startup(ST_CLEAR)
    void bringUp();    // all of the above
    // CMD_SHUTDOWN and wait for the exit; throws if the daemon does not exit cleanly.
    void shutdown();

    [[nodiscard]] pid_t pid() const noexcept { return pid_; }
    [[nodiscard]] const std::filesystem::path& stateDir() const noexcept { return stateDir_; }
    [[nodiscard]] std::string ctrlPath() const { return (dir_.path() / "ctrl.sock").string(); }
    TpmChannel& data();
    // The daemon's log (stdout+stderr), for error messages.
    [[nodiscard]] std::string logTail() const;

private:
    void checkAlive();
    void reap(double timeoutSeconds);

    DaemonConfig config_;
    TempDir dir_;
    std::filesystem::path stateDir_;
    std::uint16_t tcpPort_ = 0;
    pid_t pid_ = -1;
    std::unique_ptr<CtrlClient> ctrl_;
    std::unique_ptr<SocketChannel> data_;
};

} // namespace vtpm::bench

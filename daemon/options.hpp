#pragma once

#include "protocol/tpm_version.hpp"
#include "state/key.hpp"
#include "state/storage.hpp"

#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>

#include <sys/types.h>

namespace vtpm::daemon
{

// A command line vtpmd cannot run with; main() prints what() and exits with status 2.
struct UsageError : std::runtime_error
{
    using std::runtime_error::runtime_error;
};

// One socket endpoint of --ctrl or --server (protocol.md §2.1).
struct Endpoint
{
    enum class Kind
    {
        UnixPath,     // bind + listen on path
        UnixFd,       // inherited listening UNIX socket
        UnixClientFd, // inherited, already connected control client (--ctrl only)
        TcpPort,      // bind + listen on bindAddr:port
        TcpFd,        // --ctrl: inherited listening socket; --server: connected data stream
    };

    Kind kind = Kind::UnixPath;
    std::filesystem::path path;         // UnixPath: absolute
    std::optional<mode_t> mode;         // UnixPath: chmod after bind (daemon default: 0600)
    std::optional<uid_t> uid;           // UnixPath: chown after bind
    std::optional<gid_t> gid;           // UnixPath: chown after bind
    int fd = -1;                        // *Fd kinds
    std::uint16_t port = 0;             // TcpPort
    std::string bindAddr = "127.0.0.1"; // TcpPort; contains ':' => IPv6 (syntax checked)
    std::string ifname;                 // TcpPort; IPv6 only, required for link-local
};

struct CtrlOptions
{
    Endpoint endpoint;
    bool terminate = false; // exit when the control client goes away
};

// --server type=tcp,fd=N (and -f N) is an already CONNECTED data stream and implies
// Options::terminate; --server type=unixio,fd=N is a listening socket.
struct ServerOptions
{
    Endpoint endpoint;
    bool disconnect = false; // close the data connection after every response
};

enum class StartupType
{
    Clear,
    State,
    Deactivated, // TPM 1.2 only; rejected together with --tpm2
    None,
};

// --flags (protocol.md §8.1). startup-clear/state/deactivated also set notNeedInit.
struct Flags
{
    bool notNeedInit = false;
    std::optional<StartupType> startup;
    bool disableAutoShutdown = false;
};

// --locality (protocol.md §8.6).
struct LocalityOptions
{
    bool rejectLocality4 = false;
    bool allowSetLocality = false;
};

// --tpmstate dir=... | backend-uri=dir://..., or the TPM_PATH environment variable.
// Also backend-uri=file:///img (a linear image file or block device, protocol.md §7.3), and
// vtpmd's durability settings (doc/durability.md).
struct StateOptions
{
    std::filesystem::path dir; // absolute: the directory, or the image file with fileBackend
    bool fileBackend = false;
    std::optional<mode_t> mode;
    bool lock = true; // default: true for a directory, false for an image (as swtpm)
    state::FsyncPolicy fsync = state::FsyncPolicy::Deferred; // fsync[=always|deferred|never]
    bool backup = true; // keep the last good copy and fall back to it when the current is damaged
};

// --migration [incoming][,release-lock-outgoing] (protocol.md §7.7, §9.3): state on shared
// storage changes hands between two daemons during a live migration.
struct MigrationOptions
{
    bool incoming = false;            // don't lock the state until the blobs arrive
    bool releaseLockOutgoing = false; // unlock once the last blob went out
};

// --pid file=P | fd=N: exactly one of the two is set.
struct PidOptions
{
    std::filesystem::path file; // absolute
    int fd = -1;
};

enum class LogLevel
{
    Off,
    Error,
    Warn,
    Info,
    Debug,
    Trace,
};

// --log. swtpm's numeric levels count indentation depth of its messages, so they map as:
//   0 -> Off, 1 -> Info (the default: errors, warnings and start/stop notices),
//   2, 3 -> Debug, 4 -> Trace, N >= 5 -> Trace with libtpmsDebug = N - 4.
// Names off|error|warn|info|debug|trace are accepted too (libtpmsDebug stays 0).
// file=- suppresses all logging (level Off, no file), as in swtpm.
// Neither file nor fd: log to stderr at the given level.
struct LogOptions
{
    std::filesystem::path file; // absolute; empty => fd or stderr
    int fd = -1;
    LogLevel level = LogLevel::Info;
    unsigned libtpmsDebug = 0; // 0 = libtpms debug output off
    std::string prefix;        // prepended to every log line
    bool truncate = false;     // truncate file instead of appending
};

enum class Action
{
    Run,
    Help,
    Version,
    PrintCapabilities,
    PrintStates,
};

struct Options
{
    Action action = Action::Run;
    protocol::TpmVersion tpmVersion = protocol::TpmVersion::Tpm12; // --tpm2
    std::optional<CtrlOptions> ctrl;
    std::optional<ServerOptions> server;
    bool terminate = false; // -t/--terminate; implied by -f and --server type=tcp,fd=
    std::optional<StateOptions> tpmstate;
    Flags flags;
    LocalityOptions locality;
    MigrationOptions migration;
    std::optional<state::KeySpec> key;          // --key: state encryption at rest
    std::optional<state::KeySpec> migrationKey; // --migration-key: wraps GET/SET_STATEBLOB
    std::optional<PidOptions> pid;
    std::optional<LogOptions> log; // absent => errors to stderr only
    // --status unixio,path=P[,mode=] | unixio,fd=N (vtpmd only): a read-only socket that
    // answers every connection with one JSON health report, without touching the control
    // channel QEMU holds.
    std::optional<Endpoint> status;
    bool daemonize = false;        // --daemon
    std::string runas;             // --runas user (resolved by the daemon)
};

// Parses the command line of `vtpmd socket [options]` with swtpm's grammar (argv as main()
// got it: argv[0] program, argv[1] "socket"). `vtpmd -h|--help|-v|--version` is accepted
// without a mode. Reads only the environment (TPM_PATH, TPM_PORT) and the cwd (relative
// paths are made absolute because --daemon chdirs to /). Throws UsageError with a one-line
// message naming the option and the bad value. Uses getopt_long, so it is not reentrant.
Options parseOptions(std::span<char* const> argv);

// The --help text: swtpm's layout, listing only what vtpmd supports.
std::string usageText(std::string_view program);

} // namespace vtpm::daemon

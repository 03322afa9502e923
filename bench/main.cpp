// vtpm-bench: raw-protocol benchmark client for swtpm-compatible daemons (vtpmd, swtpm), plus
// the "limit" measurements (libtpms in-process, bare echo). See BENCHMARKS.md and --help.

#include "bench/daemon_process.hpp"
#include "bench/echo_server.hpp"
#include "bench/libtpms_shim.hpp"
#include "bench/workloads.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include <signal.h>

namespace vtpm::bench
{
namespace
{

constexpr const char* kUsage = R"(Usage: vtpm-bench MODE [options]

Modes:
  run      time workloads against a daemon: one it starts (--exec, fresh temporary state per
           workload) or a running one (--ctrl/--unix/--tcp)
  limit    the same workloads through libtpms in-process (no socket, state kept in memory)
  echo     round trip to a bare echo server thread over --transport
  startup  exec -> control socket accepting -> GET_CAPABILITY -> INIT -> first Startup
           (fresh and existing state), median of --runs
  memory   RSS/PSS/Anonymous of idle initialised instances (--instances 1,100)
  smoke    a few hundred operations through every path against --exec; exit 1 on any error
  list     print the workload names

Options:
  --exec PATH          daemon binary, started as "PATH socket [--tpm2] --tpmstate dir=..
                       --ctrl type=unixio,path=.. [--server ..]" (vtpmd and swtpm alike)
  --daemon-arg ARG     extra daemon argument (repeatable)
  --transport T        datafd (default; CMD_SET_DATAFD socketpair as QEMU), unix or tcp
  --ctrl PATH          running daemon's UNIX control socket (CMD_INIT is sent; without
                       --unix/--tcp the data channel is passed with CMD_SET_DATAFD)
  --unix PATH | --tcp PORT   running daemon's data socket
  --tpm12              the running daemon emulates TPM 1.2
  --workloads LIST     comma-separated names, or all (default), tpm2, tpm12
  --ops N              timed operations per workload (default: per workload, see list)
  --scale F            multiply the default operation counts by F
  --runs N             start-up repetitions (default 10)
  --instances LIST     memory: instance counts (default 1,100)
  --label L            name printed for the daemon (default: basename of --exec)
  --tsv                machine-readable lines instead of a table
)";

struct Args
{
    std::string mode;
    std::string exe;
    std::vector<std::string> daemonArgs;
    Transport transport = Transport::DataFd;
    std::string ctrlPath;
    std::string unixPath;
    std::uint16_t tcpPort = 0;
    bool tpm12 = false;
    std::string workloads = "all";
    std::optional<unsigned> ops;
    double scale = 1.0;
    unsigned runs = 10;
    std::vector<unsigned> instances = {1, 100};
    std::string label;
    bool tsv = false;
};

class UsageError : public std::runtime_error
{
public:
    using std::runtime_error::runtime_error;
};

unsigned parseUnsigned(std::string_view text, std::string_view what)
{
    unsigned value = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc{} || end != text.data() + text.size())
    {
        throw UsageError(fmt::format("{}: not a number: {}", what, text));
    }
    return value;
}

std::vector<std::string> splitList(std::string_view text)
{
    std::vector<std::string> out;
    while (!text.empty())
    {
        const auto comma = text.find(',');
        out.emplace_back(text.substr(0, comma));
        text = comma == std::string_view::npos ? std::string_view{} : text.substr(comma + 1);
    }
    return out;
}

Args parseArgs(std::span<char*> argv)
{
    if (argv.size() < 2)
    {
        throw UsageError("no mode given");
    }
    Args a;
    a.mode = argv[1];
    for (std::size_t i = 2; i < argv.size(); ++i)
    {
        const std::string_view opt = argv[i];
        auto value = [&]() -> std::string_view
        {
            if (i + 1 >= argv.size())
            {
                throw UsageError(fmt::format("{} needs a value", opt));
            }
            return argv[++i];
        };
        if (opt == "--exec")
        {
            a.exe = value();
        }
        else if (opt == "--daemon-arg")
        {
            a.daemonArgs.emplace_back(value());
        }
        else if (opt == "--transport")
        {
            const auto v = value();
            const auto t = transportFromName(v);
            if (!t)
            {
                throw UsageError(fmt::format("unknown transport {}", v));
            }
            a.transport = *t;
        }
        else if (opt == "--ctrl")
        {
            a.ctrlPath = value();
        }
        else if (opt == "--unix")
        {
            a.unixPath = value();
        }
        else if (opt == "--tcp")
        {
            a.tcpPort = static_cast<std::uint16_t>(parseUnsigned(value(), opt));
        }
        else if (opt == "--tpm12")
        {
            a.tpm12 = true;
        }
        else if (opt == "--workloads")
        {
            a.workloads = value();
        }
        else if (opt == "--ops")
        {
            a.ops = parseUnsigned(value(), opt);
        }
        else if (opt == "--scale")
        {
            a.scale = std::stod(std::string(value()));
        }
        else if (opt == "--runs")
        {
            a.runs = std::max(1U, parseUnsigned(value(), opt));
        }
        else if (opt == "--instances")
        {
            a.instances.clear();
            for (const auto& n : splitList(value()))
            {
                a.instances.push_back(std::max(1U, parseUnsigned(n, opt)));
            }
        }
        else if (opt == "--label")
        {
            a.label = value();
        }
        else if (opt == "--tsv")
        {
            a.tsv = true;
        }
        else
        {
            throw UsageError(fmt::format("unknown option {}", opt));
        }
    }
    if (a.label.empty())
    {
        a.label = a.exe.empty() ? "daemon" : std::filesystem::path(a.exe).filename().string();
    }
    return a;
}

std::vector<const WorkloadInfo*> selectWorkloads(const std::string& spec)
{
    std::vector<const WorkloadInfo*> out;
    for (const auto& name : splitList(spec))
    {
        if (name == "all" || name == "tpm2" || name == "tpm12")
        {
            for (const WorkloadInfo& w : allWorkloads())
            {
                const bool tpm2 = w.version == protocol::TpmVersion::Tpm2;
                if (name == "all" || (name == "tpm2") == tpm2)
                {
                    out.push_back(&w);
                }
            }
            continue;
        }
        const WorkloadInfo* w = findWorkload(name);
        if (w == nullptr)
        {
            throw UsageError(fmt::format("unknown workload {} (see vtpm-bench list)", name));
        }
        out.push_back(w);
    }
    return out;
}

unsigned opsFor(const Args& a, const WorkloadInfo& w)
{
    if (a.ops)
    {
        return *a.ops;
    }
    return std::max(1U, static_cast<unsigned>(static_cast<double>(w.defaultOps) * a.scale));
}

unsigned warmupFor(const Args& a, const WorkloadInfo& w)
{
    return a.scale < 1.0 ? std::min(w.warmup, 2U) : w.warmup;
}

void printHeader(const Args& a)
{
    if (!a.tsv)
    {
        fmt::print("{:<10} {:<30} {:<7} {:>6} {:>10} {:>9} {:>9} {:>9} {:>9}\n", "daemon",
                   "workload", "via", "ops", "ops/s", "p50 us", "p90 us", "p99 us", "max us");
    }
}

void printResult(const Args& a, std::string_view label, const WorkloadInfo* w, std::string_view via,
                 const RunStats& s)
{
    const std::string_view name = w != nullptr ? w->name : "echo";
    if (a.tsv)
    {
        fmt::print("result\t{}\t{}\t{}\t{}\t{:.1f}\t{:.2f}\t{:.2f}\t{:.2f}\t{:.2f}\n", label, name,
                   via, s.ops, s.opsPerSecond, s.p50, s.p90, s.p99, s.max);
    }
    else
    {
        fmt::print("{:<10} {:<30} {:<7} {:>6} {:>10.0f} {:>9.1f} {:>9.1f} {:>9.1f} {:>9.1f}\n",
                   label, w != nullptr ? w->label : "echo round trip", via, s.ops, s.opsPerSecond,
                   s.p50, s.p90, s.p99, s.max);
    }
    std::fflush(stdout);
}

DaemonConfig configFor(const Args& a, protocol::TpmVersion version)
{
    if (a.exe.empty())
    {
        throw UsageError("--exec is required for this mode");
    }
    return DaemonConfig{
        .exe = a.exe, .version = version, .transport = a.transport, .extraArgs = a.daemonArgs};
}

// run --exec: a fresh daemon (and fresh state) per workload, shut down cleanly afterwards.
void runSpawned(const Args& a)
{
    printHeader(a);
    for (const WorkloadInfo* w : selectWorkloads(a.workloads))
    {
        DaemonInstance daemon(configFor(a, w->version));
        daemon.bringUp();
        const RunStats s = runWorkload(*w, daemon.data(), opsFor(a, *w), warmupFor(a, *w));
        daemon.shutdown();
        printResult(a, a.label, w, transportName(a.transport), s);
    }
}

// run --ctrl/--unix/--tcp: an already running daemon, e.g. one traced by strace.
void runAttached(const Args& a)
{
    const auto version = a.tpm12 ? protocol::TpmVersion::Tpm12 : protocol::TpmVersion::Tpm2;
    std::unique_ptr<CtrlClient> ctrl;
    if (!a.ctrlPath.empty())
    {
        UniqueFd fd = connectUnix(a.ctrlPath);
        if (!fd)
        {
            throw BenchError(fmt::format("cannot connect to {}", a.ctrlPath));
        }
        ctrl = std::make_unique<CtrlClient>(std::move(fd));
    }
    UniqueFd dataFd;
    std::string via;
    if (!a.unixPath.empty())
    {
        dataFd = connectUnixRetry(a.unixPath, 5.0);
        via = "unix";
    }
    else if (a.tcpPort != 0)
    {
        dataFd = connectTcp(a.tcpPort, 5.0);
        via = "tcp";
    }
    else if (ctrl)
    {
        dataFd = ctrl->setDataFd();
        via = "datafd";
    }
    if (!dataFd)
    {
        throw UsageError("give --ctrl, --unix or --tcp (or --exec)");
    }
    SocketChannel channel(std::move(dataFd));
    if (ctrl)
    {
        ctrl->init(0);
    }
    const Bytes startup = a.tpm12 ? tpm12::startupClear() : tpm2::startup();
    const std::uint32_t code = responseCode(channel.transact(startup), version);
    constexpr std::uint32_t kTpm2Initialize = 0x100;
    constexpr std::uint32_t kTpm12InvalidPostInit = 0x26;
    if (code != 0 && code != kTpm2Initialize && code != kTpm12InvalidPostInit)
    {
        throw BenchError(fmt::format("Startup: TPM response code {}", hex(code)));
    }
    printHeader(a);
    for (const WorkloadInfo* w : selectWorkloads(a.workloads))
    {
        if (w->version == version)
        {
            printResult(a, a.label, w, via,
                        runWorkload(*w, channel, opsFor(a, *w), warmupFor(a, *w)));
        }
    }
}

void runLimit(const Args& a)
{
    printHeader(a);
    for (const WorkloadInfo* w : selectWorkloads(a.workloads))
    {
        LibtpmsChannel engine(w->version);
        const Bytes startup =
            w->version == protocol::TpmVersion::Tpm2 ? tpm2::startup() : tpm12::startupClear();
        expectSuccess(engine.transact(startup), w->version, "Startup");
        printResult(a, "limit", w, "inproc",
                    runWorkload(*w, engine, opsFor(a, *w), warmupFor(a, *w)));
    }
}

void runEchoMode(const Args& a)
{
    printHeader(a);
    EchoServer server(a.transport);
    SocketChannel channel(server.connect());
    const Bytes frame = tpm2::getRandom(32);
    const unsigned ops = a.ops.value_or(std::max(1U, static_cast<unsigned>(5000 * a.scale)));
    printResult(a, "echo", nullptr, transportName(a.transport),
                runEcho(channel, frame, ops, std::min(ops, 100U)));
}

double median(std::vector<double> v)
{
    std::sort(v.begin(), v.end());
    return v.empty() ? 0 : v[v.size() / 2];
}

void runStartup(const Args& a)
{
    constexpr std::array kMilestones = {"accept", "getcap", "init", "startup"};
    const auto version = a.tpm12 ? protocol::TpmVersion::Tpm12 : protocol::TpmVersion::Tpm2;
    TempDir existing;
    const auto existingState = existing.path() / "state";
    std::filesystem::create_directory(existingState);
    {
        DaemonInstance first(configFor(a, version), existingState); // creates the state
        first.bringUp();
        first.shutdown();
    }
    for (const bool fresh : {true, false})
    {
        std::array<std::vector<double>, kMilestones.size()> ms;
        for (unsigned r = 0; r < a.runs; ++r)
        {
            DaemonInstance d(configFor(a, version),
                             fresh ? std::filesystem::path{} : existingState);
            const std::int64_t t0 = monotonicNs();
            auto mark = [&](std::size_t i)
            {
                ms[i].push_back(static_cast<double>(monotonicNs() - t0) / 1e6);
            };
            d.spawn();
            d.connectControl();
            mark(0);
            (void)d.getCapability();
            mark(1);
            d.attachData();
            d.init();
            mark(2);
            d.tpmStartup();
            mark(3);
            d.shutdown();
        }
        for (std::size_t i = 0; i < kMilestones.size(); ++i)
        {
            const double m = median(ms[i]);
            if (a.tsv)
            {
                fmt::print("startup\t{}\t{}\t{}\t{:.2f}\n", a.label, fresh ? "fresh" : "existing",
                           kMilestones[i], m);
            }
            else
            {
                fmt::print("{:<10} start-up {:<8} exec -> {:<8} {:>8.2f} ms (median of {})\n",
                           a.label, fresh ? "fresh" : "existing", kMilestones[i], m, a.runs);
            }
        }
    }
}

void runMemory(const Args& a)
{
    const auto version = a.tpm12 ? protocol::TpmVersion::Tpm12 : protocol::TpmVersion::Tpm2;
    for (const unsigned count : a.instances)
    {
        std::vector<std::unique_ptr<DaemonInstance>> daemons;
        for (unsigned i = 0; i < count; ++i)
        {
            daemons.push_back(std::make_unique<DaemonInstance>(configFor(a, version)));
            daemons.back()->bringUp();
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(500)); // let them settle idle
        std::vector<double> rss;
        std::vector<double> pss;
        std::vector<double> anon;
        for (const auto& d : daemons)
        {
            const MemoryUsage m = readMemoryUsage(d->pid());
            rss.push_back(static_cast<double>(m.rss));
            pss.push_back(static_cast<double>(m.pss));
            anon.push_back(static_cast<double>(m.anonymous));
        }
        if (a.tsv)
        {
            fmt::print("memory\t{}\t{}\t{:.0f}\t{:.0f}\t{:.0f}\n", a.label, count, median(rss),
                       median(pss), median(anon));
        }
        else
        {
            fmt::print("{:<10} {:>3} idle instance(s), per instance (median): RSS {:.0f} KiB, "
                       "PSS {:.0f} KiB, Anonymous {:.0f} KiB\n",
                       a.label, count, median(rss), median(pss), median(anon));
        }
        std::fflush(stdout);
        for (const auto& d : daemons)
        {
            d->shutdown();
        }
    }
}

// Every path once with small counts, against the real daemon: fails on any error.
void runSmoke(Args a)
{
    a.scale = 0.01;
    a.workloads = "all";
    runSpawned(a);
    for (const Transport t : {Transport::Unix, Transport::Tcp})
    {
        Args b = a;
        b.transport = t;
        b.workloads = "getrandom,nv-write";
        runSpawned(b);
    }
    Args l = a;
    l.workloads = "getrandom,pcr-extend,nv-write,sign-ecc,tpm12-extend";
    runLimit(l);
    for (const Transport t : {Transport::DataFd, Transport::Unix, Transport::Tcp})
    {
        Args e = a;
        e.transport = t;
        e.ops = 50;
        runEchoMode(e);
    }
    Args s = a;
    s.runs = 1;
    runStartup(s);
    Args m = a;
    m.instances = {2};
    runMemory(m);
    fmt::print("smoke: OK\n");
}

int benchMain(std::span<char*> argv)
{
    ::signal(SIGPIPE, SIG_IGN);
    Args a;
    try
    {
        a = parseArgs(argv);
    }
    catch (const UsageError& e)
    {
        fmt::print(stderr, "vtpm-bench: {}\n{}", e.what(), kUsage);
        return 2;
    }
    try
    {
        if (a.mode == "run")
        {
            if (!a.exe.empty())
            {
                runSpawned(a);
            }
            else
            {
                runAttached(a);
            }
        }
        else if (a.mode == "limit")
        {
            runLimit(a);
        }
        else if (a.mode == "echo")
        {
            runEchoMode(a);
        }
        else if (a.mode == "startup")
        {
            runStartup(a);
        }
        else if (a.mode == "memory")
        {
            runMemory(a);
        }
        else if (a.mode == "smoke")
        {
            runSmoke(a);
        }
        else if (a.mode == "list")
        {
            for (const WorkloadInfo& w : allWorkloads())
            {
                fmt::print("{:<14} {:<30} TPM {} ({} ops)\n", w.name, w.label,
                           protocol::versionName(w.version), w.defaultOps);
            }
        }
        else if (a.mode == "-h" || a.mode == "--help" || a.mode == "help")
        {
            fmt::print("{}", kUsage);
        }
        else
        {
            fmt::print(stderr, "vtpm-bench: unknown mode {}\n{}", a.mode, kUsage);
            return 2;
        }
    }
    catch (const UsageError& e)
    {
        fmt::print(stderr, "vtpm-bench: {}\n", e.what());
        return 2;
    }
    catch (const std::exception& e)
    {
        fmt::print(stderr, "vtpm-bench: FAILED: {}\n", e.what());
        return 1;
    }
    return 0;
}

} // namespace
} // namespace vtpm::bench

int main(int argc, char** argv)
{
    return vtpm::bench::benchMain(std::span(argv, static_cast<std::size_t>(argc)));
}

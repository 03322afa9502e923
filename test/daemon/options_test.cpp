#include "daemon/options.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <initializer_list>
#include <optional>
#include <string>
#include <vector>

#include <unistd.h>

using namespace vtpm::daemon;
using Catch::Matchers::Contains;
using vtpm::protocol::TpmVersion;

namespace
{

// Sets (or unsets, for nullopt) an environment variable for one scope.
class ScopedEnv
{
public:
    ScopedEnv(const char* name, const std::optional<std::string>& value) : name_(name)
    {
        if (const char* old = std::getenv(name)) // NOLINT(concurrency-mt-unsafe): one thread
        {
            old_ = old;
        }
        apply(value);
    }
    ~ScopedEnv() { apply(old_); }
    ScopedEnv(const ScopedEnv&) = delete;
    ScopedEnv& operator=(const ScopedEnv&) = delete;
    ScopedEnv(ScopedEnv&&) = delete;
    ScopedEnv& operator=(ScopedEnv&&) = delete;

private:
    void apply(const std::optional<std::string>& value)
    {
        if (value)
        {
            ::setenv(name_, value->c_str(), 1); // NOLINT(concurrency-mt-unsafe)
        }
        else
        {
            ::unsetenv(name_); // NOLINT(concurrency-mt-unsafe)
        }
    }

    const char* name_;
    std::optional<std::string> old_;
};

// Every test starts without TPM_PATH/TPM_PORT so the runner's environment cannot leak in.
struct CleanEnv
{
    ScopedEnv tpmPathEnv{"TPM_PATH", std::nullopt};
    ScopedEnv tpmPortEnv{"TPM_PORT", std::nullopt};
};

// Calls parseOptions with a main()-style argv: "vtpmd", then `prefix`, then `args`.
Options parseArgs(const std::vector<std::string>& prefix, std::initializer_list<std::string> args)
{
    std::vector<std::string> storage{"vtpmd"};
    storage.insert(storage.end(), prefix.begin(), prefix.end());
    storage.insert(storage.end(), args.begin(), args.end());
    std::vector<char*> argv(storage.size() + 1, nullptr); // main's argv ends with a nullptr
    std::transform(storage.begin(), storage.end(), argv.begin(),
                   [](std::string& s) { return s.data(); });
    return parseOptions(std::span<char* const>(argv.data(), storage.size()));
}

Options parse(std::initializer_list<std::string> args)
{
    return parseArgs({}, args);
}

// `extra` after a minimal valid command line: mode, state dir and a control channel.
Options parseRun(std::initializer_list<std::string> extra)
{
    return parseArgs({"socket", "--tpmstate", "dir=/s", "--ctrl", "type=unixio,path=/c"}, extra);
}

// The UsageError message of a command line that must be rejected.
template <typename Parse>
std::string errorOf(Parse parseFn, std::initializer_list<std::string> args)
{
    try
    {
        parseFn(args);
    }
    catch (const UsageError& e)
    {
        return e.what();
    }
    FAIL("expected a UsageError");
    return {};
}

std::string parseError(std::initializer_list<std::string> args)
{
    return errorOf(parse, args);
}

std::string runError(std::initializer_list<std::string> extra)
{
    return errorOf(parseRun, extra);
}

std::filesystem::path cwd()
{
    return std::filesystem::current_path();
}

} // namespace

TEST_CASE_METHOD(CleanEnv, "libvirt's command line", "[options]")
{
    const Options o =
        parse({"socket", "--ctrl", "type=unixio,path=/x/c.sock,mode=0600", "--tpmstate",
               "dir=/x/st,mode=0600", "--log", "file=/x/l.log", "--terminate", "--tpm2"});
    CHECK(o.action == Action::Run);
    CHECK(o.tpmVersion == TpmVersion::Tpm2);
    REQUIRE(o.ctrl);
    CHECK(o.ctrl->endpoint.kind == Endpoint::Kind::UnixPath);
    CHECK(o.ctrl->endpoint.path == "/x/c.sock");
    CHECK(o.ctrl->endpoint.mode == 0600U);
    CHECK_FALSE(o.ctrl->endpoint.uid);
    CHECK_FALSE(o.ctrl->terminate);
    CHECK_FALSE(o.server);
    REQUIRE(o.tpmstate);
    CHECK(o.tpmstate->dir == "/x/st");
    CHECK(o.tpmstate->mode == 0600U);
    CHECK(o.tpmstate->lock);
    REQUIRE(o.log);
    CHECK(o.log->file == "/x/l.log");
    CHECK(o.log->fd == -1);
    CHECK(o.log->level == LogLevel::Info);
    CHECK(o.log->libtpmsDebug == 0);
    CHECK(o.terminate);
    CHECK_FALSE(o.daemonize);
    CHECK_FALSE(o.pid);
}

TEST_CASE_METHOD(CleanEnv, "tpm2-tools style TCP command line", "[options]")
{
    const Options o = parse({"socket", "--tpmstate", "dir=/s", "--server", "type=tcp,port=2321",
                             "--ctrl", "type=tcp,port=2322", "--flags", "not-need-init"});
    REQUIRE(o.server);
    CHECK(o.server->endpoint.kind == Endpoint::Kind::TcpPort);
    CHECK(o.server->endpoint.port == 2321);
    CHECK(o.server->endpoint.bindAddr == "127.0.0.1");
    CHECK_FALSE(o.server->disconnect);
    REQUIRE(o.ctrl);
    CHECK(o.ctrl->endpoint.kind == Endpoint::Kind::TcpPort);
    CHECK(o.ctrl->endpoint.port == 2322);
    CHECK(o.flags.notNeedInit);
    CHECK_FALSE(o.flags.startup);
    CHECK_FALSE(o.terminate);
    CHECK(o.tpmVersion == TpmVersion::Tpm12);
}

TEST_CASE_METHOD(CleanEnv, "getopt forms: --opt=value, short options, grouping, abbreviation",
                 "[options]")
{
    const Options o = parse({"socket", "--tpms=dir=/s", "-td", "-p2321", "-r", "tss"});
    CHECK(o.tpmstate->dir == "/s"); // --tpms: unique abbreviation, as getopt_long allows
    CHECK(o.terminate);
    CHECK(o.daemonize);
    CHECK(o.runas == "tss");
    REQUIRE(o.server);
    CHECK(o.server->endpoint.port == 2321);
    CHECK(o.server->disconnect);
}

TEST_CASE_METHOD(CleanEnv, "abbreviated option given twice is still a duplicate", "[options]")
{
    CHECK_THAT(parseError({"socket", "--tpmstate=dir=/a", "--tpms", "dir=/b", "-p", "1"}),
               Contains("--tpmstate") && Contains("more than once"));
}

TEST_CASE_METHOD(CleanEnv, "--ctrl forms", "[options]")
{
    SECTION("unixio path with owner and terminate")
    {
        const Options o =
            parse({"socket", "--tpmstate", "dir=/s", "--ctrl",
                   "type=unixio,path=/run/c.sock,mode=0660,uid=107,gid=108,terminate"});
        REQUIRE(o.ctrl);
        CHECK(o.ctrl->endpoint.kind == Endpoint::Kind::UnixPath);
        CHECK(o.ctrl->endpoint.mode == 0660U);
        CHECK(o.ctrl->endpoint.uid == 107U);
        CHECK(o.ctrl->endpoint.gid == 108U);
        CHECK(o.ctrl->terminate);
    }
    SECTION("unixio listening fd")
    {
        const Options o = parse({"socket", "--tpmstate", "dir=/s", "--ctrl", "type=unixio,fd=5"});
        CHECK(o.ctrl->endpoint.kind == Endpoint::Kind::UnixFd);
        CHECK(o.ctrl->endpoint.fd == 5);
    }
    SECTION("unixio connected client fd")
    {
        const Options o =
            parse({"socket", "--tpmstate", "dir=/s", "--ctrl", "type=unixio,clientfd=0"});
        CHECK(o.ctrl->endpoint.kind == Endpoint::Kind::UnixClientFd);
        CHECK(o.ctrl->endpoint.fd == 0);
    }
    SECTION("tcp with IPv6 bind address")
    {
        const Options o =
            parse({"socket", "--tpmstate", "dir=/s", "--ctrl", "type=tcp,port=2322,bindaddr=::1"});
        CHECK(o.ctrl->endpoint.kind == Endpoint::Kind::TcpPort);
        CHECK(o.ctrl->endpoint.bindAddr == "::1");
    }
    SECTION("tcp link-local with interface")
    {
        const Options o = parse({"socket", "--tpmstate", "dir=/s", "--ctrl",
                                 "type=tcp,port=2322,bindaddr=fe80::1,ifname=eth0"});
        CHECK(o.ctrl->endpoint.ifname == "eth0");
    }
    SECTION("tcp listening fd")
    {
        const Options o = parse({"socket", "--tpmstate", "dir=/s", "--ctrl", "type=tcp,fd=7"});
        CHECK(o.ctrl->endpoint.kind == Endpoint::Kind::TcpFd);
        CHECK(o.ctrl->endpoint.fd == 7);
        CHECK_FALSE(o.terminate); // only a --server tcp fd implies terminate
    }
}

TEST_CASE_METHOD(CleanEnv, "--ctrl errors", "[options]")
{
    CHECK_THAT(runError({"--server", "port=1", "--ctrl", "type=unixio,path=/c"}),
               Contains("--ctrl") && Contains("more than once"));
    auto ctrlError = [](const std::string& arg)
    {
        return parseError({"socket", "--tpmstate", "dir=/s", "--ctrl", arg});
    };
    CHECK_THAT(ctrlError("path=/c"), Contains("--ctrl") && Contains("type="));
    CHECK_THAT(ctrlError("type=udp,port=1"), Contains("--ctrl") && Contains("'udp'"));
    CHECK_THAT(ctrlError("type=unixio,path=/c,fd=3"),
               Contains("--ctrl") && Contains("mutually exclusive"));
    CHECK_THAT(ctrlError("type=unixio,fd=3,clientfd=4"), Contains("mutually exclusive"));
    CHECK_THAT(ctrlError("type=unixio"), Contains("--ctrl") && Contains("path="));
    CHECK_THAT(ctrlError("type=unixio,path=/c,port=1"), Contains("'port'"));
    CHECK_THAT(ctrlError("type=unixio,fd=3,mode=0600"), Contains("'mode'"));
    CHECK_THAT(ctrlError("type=tcp"), Contains("--ctrl") && Contains("port="));
    CHECK_THAT(ctrlError("type=tcp,clientfd=3"), Contains("'clientfd'") && Contains("tcp"));
    CHECK_THAT(ctrlError("type=tcp,path=/c,port=1"), Contains("'path'"));
    CHECK_THAT(ctrlError("type=tcp,fd=3,port=1"), Contains("'port'"));
    CHECK_THAT(ctrlError("type=tcp,port=1,bindaddr=localhost"), Contains("'localhost'"));
    CHECK_THAT(ctrlError("type=tcp,port=1,bindaddr=1.2.3.4,ifname=eth0"), Contains("ifname"));
    CHECK_THAT(ctrlError("type=tcp,port=1,bindaddr=fe80::1"), Contains("ifname"));
    CHECK_THAT(ctrlError("type=tcp,port=1,bindaddr=::1,ifname=abcdefghijklmnopq"),
               Contains("too long"));
    CHECK_THAT(ctrlError("type=unixio,path=/" + std::string(120, 'a')), Contains("too long"));
    CHECK_THAT(ctrlError("type=unixio,path=/c,terminate=yes"),
               Contains("'terminate'") && Contains("no value"));
    // The control channel has no TPM_PORT fallback.
    ScopedEnv port("TPM_PORT", "2321");
    CHECK_THAT(ctrlError("type=tcp"), Contains("port="));
}

TEST_CASE_METHOD(CleanEnv, "--server forms", "[options]")
{
    SECTION("type defaults to tcp")
    {
        const Options o =
            parse({"socket", "--tpmstate", "dir=/s", "--server", "port=2321,disconnect"});
        CHECK(o.server->endpoint.kind == Endpoint::Kind::TcpPort);
        CHECK(o.server->endpoint.port == 2321);
        CHECK(o.server->disconnect);
    }
    SECTION("tcp with bind address")
    {
        const Options o = parse(
            {"socket", "--tpmstate", "dir=/s", "--server", "type=tcp,port=2321,bindaddr=0.0.0.0"});
        CHECK(o.server->endpoint.bindAddr == "0.0.0.0");
    }
    SECTION("tcp connected fd implies terminate")
    {
        const Options o = parse({"socket", "--tpmstate", "dir=/s", "--server", "type=tcp,fd=9"});
        CHECK(o.server->endpoint.kind == Endpoint::Kind::TcpFd);
        CHECK(o.server->endpoint.fd == 9);
        CHECK(o.terminate);
    }
    SECTION("unixio path")
    {
        const Options o = parse({"socket", "--tpmstate", "dir=/s", "--server",
                                 "type=unixio,path=/run/d.sock,mode=0770,uid=0,gid=0"});
        CHECK(o.server->endpoint.kind == Endpoint::Kind::UnixPath);
        CHECK(o.server->endpoint.path == "/run/d.sock");
        CHECK(o.server->endpoint.mode == 0770U);
        CHECK(o.server->endpoint.uid == 0U);
        CHECK(o.server->endpoint.gid == 0U);
    }
    SECTION("unixio listening fd does not imply terminate")
    {
        const Options o = parse({"socket", "--tpmstate", "dir=/s", "--server", "type=unixio,fd=4"});
        CHECK(o.server->endpoint.kind == Endpoint::Kind::UnixFd);
        CHECK(o.server->endpoint.fd == 4);
        CHECK_FALSE(o.terminate);
    }
}

TEST_CASE_METHOD(CleanEnv, "--server errors", "[options]")
{
    auto serverError = [](const std::string& arg)
    {
        return parseError({"socket", "--tpmstate", "dir=/s", "--server", arg});
    };
    CHECK_THAT(serverError("type=tcp"), Contains("--server") && Contains("TPM_PORT"));
    CHECK_THAT(serverError("type=unixio,clientfd=3"), Contains("unknown key 'clientfd'"));
    CHECK_THAT(serverError("type=unixio,path=/d,fd=3"), Contains("mutually exclusive"));
    CHECK_THAT(serverError("port=2321,fd=3"), Contains("'port'"));
    CHECK_THAT(serverError("port=2321,disconnect=true"), Contains("'disconnect'"));
    CHECK_THAT(
        parseError({"socket", "--tpmstate", "dir=/s", "--server", "port=1", "--server", "port=2"}),
        Contains("--server") && Contains("more than once"));
}

TEST_CASE_METHOD(CleanEnv, "TPM_PORT fallback for --server", "[options][env]")
{
    ScopedEnv port("TPM_PORT", "2400");
    const Options o = parse({"socket", "--tpmstate", "dir=/s", "--server", "type=tcp"});
    CHECK(o.server->endpoint.port == 2400);

    // An explicit port wins over the environment.
    CHECK(
        parse({"socket", "--tpmstate", "dir=/s", "--server", "port=2401"}).server->endpoint.port ==
        2401);

    ScopedEnv bad("TPM_PORT", "70000");
    CHECK_THAT(parseError({"socket", "--tpmstate", "dir=/s", "--server", "type=tcp"}),
               Contains("TPM_PORT") && Contains("70000"));
}

TEST_CASE_METHOD(CleanEnv, "legacy -p and -f", "[options]")
{
    SECTION("-p means --server type=tcp,port=P,disconnect")
    {
        const Options o = parse({"socket", "--tpmstate", "dir=/s", "-p", "2321"});
        CHECK(o.server->endpoint.kind == Endpoint::Kind::TcpPort);
        CHECK(o.server->endpoint.port == 2321);
        CHECK(o.server->endpoint.bindAddr == "127.0.0.1");
        CHECK(o.server->disconnect);
        CHECK_FALSE(o.terminate);
    }
    SECTION("--port long form")
    {
        CHECK(parse({"socket", "--tpmstate", "dir=/s", "--port", "10"}).server->endpoint.port ==
              10);
    }
    SECTION("-f is a connected stream and implies terminate")
    {
        const Options o = parse({"socket", "--tpmstate", "dir=/s", "--fd", "3"});
        CHECK(o.server->endpoint.kind == Endpoint::Kind::TcpFd);
        CHECK(o.server->endpoint.fd == 3);
        CHECK_FALSE(o.server->disconnect);
        CHECK(o.terminate);
    }
    SECTION("conflicts and bad values")
    {
        CHECK_THAT(parseError({"socket", "--tpmstate", "dir=/s", "-f", "2"}),
                   Contains("-f/--fd") && Contains("'2'"));
        CHECK_THAT(parseError({"socket", "--tpmstate", "dir=/s", "-p", "0"}),
                   Contains("-p/--port") && Contains("'0'"));
        CHECK_THAT(parseError({"socket", "--tpmstate", "dir=/s", "-p", "1", "--server", "port=2"}),
                   Contains("--server") && Contains("-p/--port"));
        CHECK_THAT(parseError({"socket", "--tpmstate", "dir=/s", "-f", "3", "--server", "port=2"}),
                   Contains("--server") && Contains("-f/--fd"));
        CHECK_THAT(parseError({"socket", "--tpmstate", "dir=/s", "-f", "3", "-p", "2"}),
                   Contains("-p/--port") && Contains("-f/--fd"));
        CHECK_THAT(parseError({"socket", "--tpmstate", "dir=/s", "-p", "1", "-p", "2"}),
                   Contains("-p/--port") && Contains("more than once"));
        CHECK_THAT(parseError({"socket", "--tpmstate", "dir=/s", "-p"}),
                   Contains("-p/--port") && Contains("missing argument"));
    }
}

TEST_CASE_METHOD(CleanEnv, "--tpmstate forms", "[options]")
{
    SECTION("backend-uri=dir:// means the same as dir=")
    {
        const Options o = parse({"socket", "-p", "1", "--tpmstate", "backend-uri=dir:///v/st"});
        CHECK(o.tpmstate->dir == "/v/st");
        CHECK(o.tpmstate->lock);
        CHECK_FALSE(o.tpmstate->mode);
    }
    SECTION("lock spellings")
    {
        CHECK(parse({"socket", "-p", "1", "--tpmstate", "dir=/s,lock"}).tpmstate->lock);
        CHECK(parse({"socket", "-p", "1", "--tpmstate", "dir=/s,lock=true"}).tpmstate->lock);
        CHECK_FALSE(parse({"socket", "-p", "1", "--tpmstate", "dir=/s,lock=false"}).tpmstate->lock);
    }
    SECTION("errors")
    {
        auto stateError = [](const std::string& arg)
        {
            return parseError({"socket", "-p", "1", "--tpmstate", arg});
        };
        CHECK_THAT(stateError("backend-uri=nbd:///v/st.img"),
                   Contains("--tpmstate") && Contains("unsupported state backend"));
        CHECK_THAT(stateError("backend-uri=/v/st"), Contains("unsupported state backend"));
        CHECK_THAT(stateError("backend-uri=dir://"), Contains("--tpmstate") && Contains("empty"));
        CHECK_THAT(stateError("dir=/a,backend-uri=dir:///b"), Contains("mutually exclusive"));
        CHECK_THAT(stateError("mode=0600"), Contains("--tpmstate") && Contains("dir="));
        CHECK_THAT(stateError("dir=/s,lock=yes"), Contains("'yes'") && Contains("'lock'"));
        CHECK_THAT(stateError("dir=/s,backup=maybe"), Contains("backup"));
        CHECK_THAT(
            parseError({"socket", "-p", "1", "--tpmstate", "dir=/a", "--tpmstate", "dir=/b"}),
            Contains("--tpmstate") && Contains("more than once"));
    }
}

TEST_CASE_METHOD(CleanEnv, "TPM_PATH fallback and missing state", "[options][env]")
{
    CHECK_THAT(parseError({"socket", "-p", "1"}), Contains("--tpmstate") && Contains("TPM_PATH"));

    ScopedEnv path("TPM_PATH", "/env/st");
    CHECK(parse({"socket", "-p", "1"}).tpmstate->dir == "/env/st");
    // --tpmstate wins over the environment.
    CHECK(parse({"socket", "-p", "1", "--tpmstate", "dir=/opt"}).tpmstate->dir == "/opt");

    ScopedEnv relative("TPM_PATH", "rel/st");
    CHECK(parse({"socket", "-p", "1"}).tpmstate->dir == cwd() / "rel/st");

    ScopedEnv empty("TPM_PATH", "");
    CHECK_THAT(parseError({"socket", "-p", "1"}), Contains("--tpmstate"));
}

TEST_CASE_METHOD(CleanEnv, "relative paths become absolute against the cwd", "[options]")
{
    const Options o =
        parse({"socket", "--tpmstate", "dir=st", "--ctrl", "type=unixio,path=c.sock", "--server",
               "type=unixio,path=sub/d.sock", "--pid", "file=v.pid", "--log", "file=../v.log"});
    CHECK(o.tpmstate->dir == cwd() / "st");
    CHECK(o.ctrl->endpoint.path == cwd() / "c.sock");
    CHECK(o.server->endpoint.path == cwd() / "sub/d.sock");
    CHECK(o.pid->file == cwd() / "v.pid");
    CHECK(o.log->file == cwd() / "../v.log");
    CHECK(o.tpmstate->dir.is_absolute());

    const Options uri = parse({"socket", "-p", "1", "--tpmstate", "backend-uri=dir://st2"});
    CHECK(uri.tpmstate->dir == cwd() / "st2");
}

TEST_CASE_METHOD(CleanEnv, "--flags", "[options]")
{
    auto flags = [](const std::string& arg)
    {
        return parseRun({"--flags", arg}).flags;
    };

    const Flags none = parseRun({}).flags;
    CHECK_FALSE(none.notNeedInit);
    CHECK_FALSE(none.startup);
    CHECK_FALSE(none.disableAutoShutdown);

    CHECK(flags("not-need-init").notNeedInit);
    CHECK(flags("disable-auto-shutdown").disableAutoShutdown);

    const Flags clear = flags("startup-clear");
    CHECK(clear.startup == StartupType::Clear);
    CHECK(clear.notNeedInit);
    CHECK(flags("startup-state").startup == StartupType::State);
    CHECK(flags("startup-state").notNeedInit);
    CHECK(flags("startup-deactivated").startup == StartupType::Deactivated);
    CHECK(flags("startup-deactivated").notNeedInit);

    const Flags startupNone = flags("startup-none");
    CHECK(startupNone.startup == StartupType::None);
    CHECK_FALSE(startupNone.notNeedInit);

    SECTION("priority clear > state > deactivated > none")
    {
        CHECK(flags("startup-none,startup-deactivated,startup-state,startup-clear").startup ==
              StartupType::Clear);
        CHECK(flags("startup-none,startup-state,startup-deactivated").startup ==
              StartupType::State);
        CHECK(flags("startup-none,startup-deactivated").startup == StartupType::Deactivated);
        const Flags all = flags("not-need-init,startup-none,disable-auto-shutdown");
        CHECK(all.notNeedInit);
        CHECK(all.startup == StartupType::None);
        CHECK(all.disableAutoShutdown);
    }
    SECTION("startup-deactivated does not exist for TPM 2")
    {
        CHECK_THAT(runError({"--tpm2", "--flags", "startup-deactivated"}),
                   Contains("--flags") && Contains("startup-deactivated"));
        CHECK_THAT(runError({"--flags", "startup-deactivated", "--tpm2"}),
                   Contains("startup-deactivated"));
        // A higher-priority startup type hides it, as in swtpm.
        CHECK(parseRun({"--tpm2", "--flags", "startup-deactivated,startup-clear"}).flags.startup ==
              StartupType::Clear);
    }
    SECTION("errors")
    {
        CHECK_THAT(runError({"--flags", "not-need-init,bogus"}),
                   Contains("--flags") && Contains("unknown flag 'bogus'"));
        CHECK_THAT(runError({"--flags", "not-need-init,not-need-init"}),
                   Contains("more than once"));
        CHECK_THAT(runError({"--flags", "startup-clear=1"}), Contains("takes no value"));
        CHECK_THAT(runError({"--flags", "not-need-init,"}), Contains("empty item"));
        CHECK_THAT(runError({"--flags", ""}), Contains("--flags") && Contains("empty"));
        CHECK_THAT(runError({"--flags", "not-need-init", "--flags", "startup-clear"}),
                   Contains("--flags") && Contains("more than once"));
    }
}

TEST_CASE_METHOD(CleanEnv, "--locality", "[options]")
{
    const LocalityOptions both =
        parseRun({"--locality", "reject-locality-4,allow-set-locality"}).locality;
    CHECK(both.rejectLocality4);
    CHECK(both.allowSetLocality);
    const LocalityOptions one = parseRun({"--locality", "allow-set-locality"}).locality;
    CHECK_FALSE(one.rejectLocality4);
    CHECK(one.allowSetLocality);
    CHECK_THAT(runError({"--locality", "reject-locality-3"}),
               Contains("--locality") && Contains("reject-locality-3"));
}

TEST_CASE_METHOD(CleanEnv, "--pid", "[options]")
{
    CHECK(parseRun({"--pid", "file=/run/v.pid"}).pid->file == "/run/v.pid");
    const PidOptions fd = *parseRun({"--pid", "fd=6"}).pid;
    CHECK(fd.fd == 6);
    CHECK(fd.file.empty());
    CHECK_THAT(runError({"--pid", "file=/a,fd=3"}),
               Contains("--pid") && Contains("mutually exclusive"));
    CHECK_THAT(runError({"--pid", "fd=-1"}), Contains("--pid") && Contains("'-1'"));
    CHECK_THAT(runError({"--pid", "file="}), Contains("--pid") && Contains("needs a value"));
    CHECK_THAT(runError({"--pid", "file"}), Contains("needs a value"));
}

TEST_CASE_METHOD(CleanEnv, "--log levels and keys", "[options]")
{
    auto log = [](const std::string& arg)
    {
        return *parseRun({"--log", arg}).log;
    };

    SECTION("numeric levels")
    {
        CHECK(log("file=/l,level=0").level == LogLevel::Off);
        CHECK(log("file=/l,level=1").level == LogLevel::Info);
        CHECK(log("file=/l,level=2").level == LogLevel::Debug);
        CHECK(log("file=/l,level=3").level == LogLevel::Debug);
        CHECK(log("file=/l,level=4").level == LogLevel::Trace);
        CHECK(log("file=/l,level=4").libtpmsDebug == 0);
        const LogOptions five = log("file=/l,level=5");
        CHECK(five.level == LogLevel::Trace);
        CHECK(five.libtpmsDebug == 1);
        CHECK(log("file=/l,level=20").libtpmsDebug == 16);
    }
    SECTION("named levels")
    {
        CHECK(log("fd=2,level=off").level == LogLevel::Off);
        CHECK(log("fd=2,level=error").level == LogLevel::Error);
        CHECK(log("fd=2,level=warn").level == LogLevel::Warn);
        CHECK(log("fd=2,level=info").level == LogLevel::Info);
        CHECK(log("fd=2,level=debug").level == LogLevel::Debug);
        CHECK(log("fd=2,level=trace").level == LogLevel::Trace);
        CHECK(log("fd=2,level=trace").libtpmsDebug == 0);
    }
    SECTION("other keys")
    {
        const LogOptions o = log("fd=2,prefix=vtpm: ,truncate");
        CHECK(o.fd == 2);
        CHECK(o.file.empty());
        CHECK(o.prefix == "vtpm: ");
        CHECK(o.truncate);
        CHECK(o.level == LogLevel::Info);
        // Neither file nor fd: stderr at the given level.
        const LogOptions stderrOnly = log("level=4");
        CHECK(stderrOnly.file.empty());
        CHECK(stderrOnly.fd == -1);
        CHECK(stderrOnly.level == LogLevel::Trace);
        // file=- switches logging off, whatever the level.
        const LogOptions off = log("file=-,level=9");
        CHECK(off.file.empty());
        CHECK(off.level == LogLevel::Off);
        CHECK(off.libtpmsDebug == 0);
    }
    SECTION("errors")
    {
        CHECK_THAT(runError({"--log", "file=/l,level=loud"}),
                   Contains("--log") && Contains("'loud'"));
        CHECK_THAT(runError({"--log", "file=/l,level=-1"}), Contains("'-1'"));
        CHECK_THAT(runError({"--log", "file=/l,level=99999999999"}), Contains("'99999999999'"));
        CHECK_THAT(runError({"--log", "file=/l,fd=3"}), Contains("mutually exclusive"));
        CHECK_THAT(runError({"--log", "file=/l,level=1,level=2"}),
                   Contains("'level'") && Contains("more than once"));
        CHECK_THAT(runError({"--log", "file=/l,colour"}), Contains("unknown key 'colour'"));
    }
}

TEST_CASE_METHOD(CleanEnv, "number parsing is strict", "[options]")
{
    auto ctrlError = [](const std::string& arg)
    {
        return parseError({"socket", "--tpmstate", "dir=/s", "--ctrl", arg});
    };
    CHECK_THAT(ctrlError("type=tcp,port=2321x"), Contains("--ctrl") && Contains("'2321x'"));
    CHECK_THAT(ctrlError("type=tcp,port=65536"), Contains("'65536'"));
    CHECK_THAT(ctrlError("type=tcp,port=0"), Contains("'0'"));
    CHECK_THAT(ctrlError("type=tcp,port=+1"), Contains("'+1'"));
    CHECK_THAT(ctrlError("type=tcp,port= 1"), Contains("' 1'"));
    CHECK_THAT(ctrlError("type=tcp,port=0x10"), Contains("'0x10'"));
    CHECK_THAT(ctrlError("type=tcp,fd=-3"), Contains("'-3'"));
    CHECK_THAT(ctrlError("type=tcp,fd=2147483648"), Contains("'2147483648'"));
    CHECK_THAT(ctrlError("type=unixio,path=/c,mode=0800"), Contains("'0800'"));
    CHECK_THAT(ctrlError("type=unixio,path=/c,mode=01777"), Contains("'01777'"));
    CHECK_THAT(ctrlError("type=unixio,path=/c,mode=rw"), Contains("'rw'"));
    CHECK_THAT(ctrlError("type=unixio,path=/c,uid=4294967295"), Contains("'4294967295'"));
    CHECK_THAT(ctrlError("type=unixio,path=/c,gid=root"), Contains("'root'"));
    CHECK_THAT(ctrlError("type=unixio,path="), Contains("'path'") && Contains("needs a value"));
    CHECK_THAT(ctrlError("type=unixio,path=/c,path=/d"), Contains("more than once"));
    CHECK_THAT(ctrlError("type=unixio,,path=/c"), Contains("empty item"));

    // Modes are octal with or without the leading 0; port 65535 and fd 0 are fine.
    const Options o = parse({"socket", "--tpmstate", "dir=/s,mode=640", "--ctrl",
                             "type=unixio,path=/c,mode=0", "--server", "port=65535"});
    CHECK(o.tpmstate->mode == 0640U);
    CHECK(o.ctrl->endpoint.mode == 0U);
    CHECK(o.server->endpoint.port == 65535);
}

TEST_CASE_METHOD(CleanEnv, "run requirements", "[options]")
{
    CHECK_THAT(parseError({"socket", "--tpmstate", "dir=/s"}),
               Contains("nothing to serve") && Contains("--ctrl") && Contains("--server"));
    CHECK_THAT(parseError({"socket", "--ctrl", "type=unixio,path=/c"}), Contains("--tpmstate"));
    // Server only and control only are both fine.
    CHECK(parse({"socket", "--tpmstate", "dir=/s", "--server", "port=1"}).action == Action::Run);
    CHECK(parse({"socket", "--tpmstate", "dir=/s", "--ctrl", "type=unixio,fd=3"}).action ==
          Action::Run);
}

TEST_CASE_METHOD(CleanEnv, "actions", "[options]")
{
    CHECK(parse({"socket", "--help"}).action == Action::Help);
    CHECK(parse({"socket", "-h"}).action == Action::Help);
    CHECK(parse({"--help"}).action == Action::Help);
    CHECK(parse({"socket", "-v"}).action == Action::Version);
    CHECK(parse({"--version"}).action == Action::Version);
    // -h acts at once, as in swtpm: what follows is not looked at.
    CHECK(parse({"socket", "-h", "--bogus"}).action == Action::Help);

    const Options caps = parse({"socket", "--print-capabilities", "--tpm2"});
    CHECK(caps.action == Action::PrintCapabilities);
    CHECK(caps.tpmVersion == TpmVersion::Tpm2);

    const Options states = parse({"socket", "--print-states", "--tpmstate", "dir=/s"});
    CHECK(states.action == Action::PrintStates);
    CHECK(states.tpmstate->dir == "/s");
    CHECK_THAT(parseError({"socket", "--print-states"}),
               Contains("--print-states") && Contains("--tpmstate"));

    ScopedEnv path("TPM_PATH", "/env/st");
    const Options envStates = parse({"socket", "--print-states", "--tpm2"});
    CHECK(envStates.action == Action::PrintStates);
    CHECK(envStates.tpmstate->dir == "/env/st");
}

TEST_CASE_METHOD(CleanEnv, "daemon, runas and boolean options", "[options]")
{
    const Options o =
        parseRun({"--daemon", "--runas", "tss", "-t", "--terminate", "--tpm2", "--tpm2"});
    CHECK(o.daemonize);
    CHECK(o.runas == "tss");
    CHECK(o.terminate);
    CHECK(o.tpmVersion == TpmVersion::Tpm2);
    CHECK_THAT(runError({"--runas", "a", "-r", "b"}),
               Contains("--runas") && Contains("more than once"));
    CHECK_THAT(runError({"--runas", ""}), Contains("--runas"));
}

TEST_CASE_METHOD(CleanEnv, "top-level errors", "[options]")
{
    CHECK_THAT(parseError({}), Contains("socket"));
    CHECK_THAT(parseError({"chardev", "--tpm2"}),
               Contains("'chardev'") && Contains("only 'socket'"));
    CHECK_THAT(parseError({"cuse"}), Contains("'cuse'") && Contains("only 'socket'"));
    CHECK_THAT(parseError({"sockets"}), Contains("'sockets'"));
    CHECK_THAT(runError({"--key", "file=/k,mode=aes-512"}), Contains("--key"));
    CHECK_THAT(runError({"--migration-key=pwdfd=x"}), Contains("--migration-key"));
    CHECK_THAT(runError({"--migration", "outgoing"}), Contains("--migration"));
    CHECK_THAT(runError({"--seccomp", "action=none"}), Contains("'--seccomp'"));
    CHECK_THAT(runError({"--chroot", "/x"}), Contains("'--chroot'"));
    CHECK_THAT(runError({"-x"}), Contains("unknown option '-x'"));
    CHECK_THAT(runError({"-tx"}), Contains("'-x'"));
    CHECK_THAT(runError({"--print"}),
               Contains("ambiguous option '--print'") && Contains("--print-states"));
    CHECK_THAT(runError({"--tpm2=yes"}), Contains("--tpm2") && Contains("no argument"));
    CHECK_THAT(runError({"--ctrl"}), Contains("--ctrl") && Contains("missing argument"));
    CHECK_THAT(runError({"stray"}), Contains("unexpected argument 'stray'"));
}

TEST_CASE_METHOD(CleanEnv, "parsing is repeatable", "[options]")
{
    // getopt keeps global state; every call must start afresh.
    for (int i = 0; i < 3; ++i)
    {
        CHECK(parse({"socket", "-tp2321", "--tpmstate", "dir=/s"}).server->endpoint.port == 2321);
        CHECK_THAT(parseError({"socket", "-t", "-q"}), Contains("'-q'"));
    }
}

TEST_CASE("usage text", "[options]")
{
    const std::string text = usageText("vtpmd");
    CHECK_THAT(text, Contains("Usage: vtpmd socket [options]"));
    for (const char* option : {"--ctrl",
                               "--server",
                               "--tpmstate",
                               "--tpm2",
                               "--flags",
                               "--locality",
                               "--pid",
                               "--log",
                               "--runas",
                               "--daemon",
                               "--port",
                               "--fd",
                               "--terminate",
                               "--print-capabilities",
                               "--print-states",
                               "--help",
                               "--version",
                               "clientfd=",
                               "backend-uri=dir://",
                               "disable-auto-shutdown",
                               "TPM_PATH",
                               "TPM_PORT"})
    {
        CAPTURE(option);
        CHECK_THAT(text, Contains(option));
    }
    CHECK_THAT(text, Contains("--key") && Contains("--migration-key"));
    CHECK_THAT(text, !Contains("--seccomp") && !Contains("--chroot"));
    std::size_t start = 0;
    while (start < text.size())
    {
        const std::size_t end = text.find('\n', start);
        CHECK(std::min(end, text.size()) - start <= 100);
        start = end == std::string::npos ? text.size() : end + 1;
    }
}

TEST_CASE_METHOD(CleanEnv, "--migration flags", "[options]")
{
    CHECK_FALSE(parseRun({}).migration.incoming);
    CHECK_FALSE(parseRun({}).migration.releaseLockOutgoing);
    const Options both = parseRun({"--migration", "incoming,release-lock-outgoing"});
    CHECK(both.migration.incoming);
    CHECK(both.migration.releaseLockOutgoing);
    const Options out = parseRun({"--migration", "release-lock-outgoing"});
    CHECK_FALSE(out.migration.incoming);
    CHECK(out.migration.releaseLockOutgoing);
    CHECK_THAT(runError({"--migration", "incoming=yes"}), Contains("--migration"));
}

TEST_CASE_METHOD(CleanEnv, "--tpmstate backends and durability", "[options]")
{
    const Options dflt = parseRun({});
    CHECK_FALSE(dflt.tpmstate->fileBackend);
    CHECK(dflt.tpmstate->lock);
    CHECK(dflt.tpmstate->backup);
    CHECK(dflt.tpmstate->fsync == vtpm::state::FsyncPolicy::Deferred);

    const Options file = parseArgs({"socket", "--ctrl", "type=unixio,path=/c"},
                                   {"--tpmstate", "backend-uri=file:///img/tpm.img"});
    CHECK(file.tpmstate->fileBackend);
    CHECK(file.tpmstate->dir == "/img/tpm.img");
    CHECK_FALSE(file.tpmstate->lock); // swtpm's default for images

    auto stateWith = [](std::string text)
    {
        return *parseArgs({"socket", "--ctrl", "type=unixio,path=/c"}, {"--tpmstate", text})
                    .tpmstate;
    };
    CHECK(stateWith("dir=/s,fsync").fsync == vtpm::state::FsyncPolicy::Always);
    CHECK(stateWith("dir=/s,fsync=never").fsync == vtpm::state::FsyncPolicy::Never);
    CHECK(stateWith("dir=/s,fsync=false").fsync == vtpm::state::FsyncPolicy::Never);
    CHECK(stateWith("dir=/s,fsync=deferred").fsync == vtpm::state::FsyncPolicy::Deferred);
    CHECK_FALSE(stateWith("dir=/s,backup=false").backup);
    CHECK(stateWith("backend-uri=file:///i,lock").lock);
    auto stateError = [](std::string text)
    {
        return errorOf([](auto args) { return parseArgs({"socket", "-p", "1"}, args); },
                       {"--tpmstate", text});
    };
    CHECK_THAT(stateError("dir=/s,fsync=sometimes"), Contains("fsync"));
    CHECK_THAT(stateError("backend-uri=nvme:///x"), Contains("unsupported"));
}

TEST_CASE_METHOD(CleanEnv, "--key and --migration-key", "[options]")
{
    const Options o = parseRun({"--key", "file=/k.hex,mode=aes-256-cbc", "--migration-key",
                                "pwdfile=/p,kdf=sha512"});
    REQUIRE(o.key);
    CHECK(o.key->source == vtpm::state::KeySpec::Source::File);
    CHECK(o.key->cipher == vtpm::state::KeyCipher::Aes256Cbc);
    REQUIRE(o.migrationKey);
    CHECK(o.migrationKey->source == vtpm::state::KeySpec::Source::PassphraseFile);
    CHECK(o.migrationKey->kdf == vtpm::state::KeySpec::Kdf::Sha512);
}

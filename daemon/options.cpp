#include "daemon/options.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <concepts>
#include <cstdlib>
#include <initializer_list>
#include <limits>
#include <optional>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include <arpa/inet.h>
#include <getopt.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

namespace vtpm::daemon
{
namespace
{

// Every message starts with the option it is about, so a user of a long libvirt or
// systemd command line can find the culprit.
[[noreturn]] void fail(std::string_view option, std::string_view what)
{
    std::string message(option);
    message += ": ";
    message += what;
    throw UsageError(message);
}

std::string inQuotes(std::string_view text)
{
    std::string out = "'";
    out += text;
    out += '\'';
    return out;
}

// ---------------------------------------------------------------------------------------
// key=value,... sub-option lists (swtpm's grammar for --ctrl, --server, --tpmstate, ...)
// ---------------------------------------------------------------------------------------

enum class KeyKind
{
    Value, // key=value, value non-empty
    Flag,  // bare key only (--flags/--locality words, terminate, disconnect, truncate)
    Bool,  // key, key=true or key=false
    Maybe, // key or key=value (value non-empty)
};

struct KeySpec
{
    std::string_view name;
    KeyKind kind = KeyKind::Value;
};

// The parsed list. Views point into argv or the environment, both of which outlive parsing.
class KeyValues
{
public:
    explicit KeyValues(std::string_view option) : option_(option) {}

    [[nodiscard]] std::string_view option() const { return option_; }

    [[nodiscard]] bool has(std::string_view key) const { return find(key) != nullptr; }

    // The value of a KeyKind::Value key, or nullopt when the key is absent.
    [[nodiscard]] std::optional<std::string_view> value(std::string_view key) const
    {
        const Entry* entry = find(key);
        return entry != nullptr ? std::optional(entry->value) : std::nullopt;
    }

    // A Flag/Bool key: false when absent or written as key=false.
    [[nodiscard]] bool enabled(std::string_view key) const
    {
        const Entry* entry = find(key);
        return entry != nullptr && entry->enabled;
    }

    void add(std::string_view key, std::string_view value, bool enabled)
    {
        entries_.push_back(Entry{key, value, enabled});
    }

private:
    struct Entry
    {
        std::string_view key;
        std::string_view value;
        bool enabled = false;
    };

    [[nodiscard]] const Entry* find(std::string_view key) const
    {
        const auto it = std::find_if(entries_.begin(), entries_.end(),
                                     [key](const Entry& e) { return e.key == key; });
        return it != entries_.end() ? &*it : nullptr;
    }

    std::string_view option_;
    std::vector<Entry> entries_;
};

// Splits "a=1,b,c=x" and checks every item against the allowed keys. Values cannot contain
// commas (as in swtpm); a value may contain '=' (only the first one separates).
KeyValues parseKeyValues(std::string_view option, std::string_view text,
                         std::span<const KeySpec> allowed, std::string_view noun = "key")
{
    if (text.empty())
    {
        fail(option, "empty argument");
    }
    KeyValues result(option);
    std::size_t start = 0;
    while (true)
    {
        const std::size_t comma = text.find(',', start);
        const std::string_view item =
            text.substr(start, comma == std::string_view::npos ? comma : comma - start);
        if (item.empty())
        {
            fail(option, "empty item in " + inQuotes(text));
        }
        const std::size_t eq = item.find('=');
        const std::string_view key = item.substr(0, eq);
        const bool hasValue = eq != std::string_view::npos;
        const std::string_view value = hasValue ? item.substr(eq + 1) : std::string_view{};

        const auto spec = std::find_if(allowed.begin(), allowed.end(),
                                       [key](const KeySpec& s) { return s.name == key; });
        if (spec == allowed.end())
        {
            fail(option, "unknown " + std::string(noun) + " " + inQuotes(key));
        }
        if (result.has(key))
        {
            fail(option, std::string(noun) + " " + inQuotes(key) + " given more than once");
        }
        bool enabled = true;
        switch (spec->kind)
        {
        case KeyKind::Value:
            if (!hasValue || value.empty())
            {
                fail(option, std::string(noun) + " " + inQuotes(key) + " needs a value");
            }
            break;
        case KeyKind::Flag:
            if (hasValue)
            {
                fail(option, std::string(noun) + " " + inQuotes(key) + " takes no value");
            }
            break;
        case KeyKind::Maybe:
            if (hasValue && value.empty())
            {
                fail(option, std::string(noun) + " " + inQuotes(key) + " has an empty value");
            }
            break;
        case KeyKind::Bool:
            if (hasValue && value != "true" && value != "false")
            {
                fail(option, "invalid value " + inQuotes(value) + " for " + inQuotes(key) +
                                 " (expected true or false)");
            }
            enabled = !hasValue || value == "true";
            break;
        }
        result.add(key, value, enabled);
        if (comma == std::string_view::npos)
        {
            break;
        }
        start = comma + 1;
    }
    return result;
}

// Rejects every present key of `keys`; `context` says what they do not go with.
void rejectKeys(const KeyValues& kv, std::initializer_list<std::string_view> keys,
                std::string_view context)
{
    for (const std::string_view key : keys)
    {
        if (kv.has(key))
        {
            fail(kv.option(), inQuotes(key) + " is not valid with " + std::string(context));
        }
    }
}

// Exactly one of `keys` must be present; returns it.
std::string_view requireOneOf(const KeyValues& kv, std::initializer_list<std::string_view> keys,
                              std::string_view context)
{
    std::string_view found;
    std::string names;
    for (const std::string_view key : keys)
    {
        names += names.empty() ? "" : " or ";
        names += std::string(key) + "=";
        if (kv.has(key))
        {
            if (!found.empty())
            {
                fail(kv.option(),
                     std::string(found) + "= and " + std::string(key) + "= are mutually exclusive");
            }
            found = key;
        }
    }
    if (found.empty())
    {
        fail(kv.option(), std::string(context) + " needs " + names);
    }
    return found;
}

// ---------------------------------------------------------------------------------------
// Values
// ---------------------------------------------------------------------------------------

// Whole-string unsigned parse: from_chars already refuses signs and blanks, we refuse
// trailing junk and anything outside [min, max].
template <std::unsigned_integral T>
T parseUnsigned(std::string_view option, std::string_view what, std::string_view text, T min, T max,
                std::string_view expected, int base = 10)
{
    unsigned long long value = 0;
    const char* last = text.data() + text.size();
    const auto [ptr, ec] = std::from_chars(text.data(), last, value, base);
    if (ec != std::errc{} || ptr != last || value < static_cast<unsigned long long>(min) ||
        value > static_cast<unsigned long long>(max))
    {
        fail(option, "invalid " + std::string(what) + " " + inQuotes(text) + " (expected " +
                         std::string(expected) + ")");
    }
    return static_cast<T>(value);
}

mode_t parseMode(std::string_view option, std::string_view text)
{
    return parseUnsigned<mode_t>(option, "mode", text, 0, 0777, "an octal mode up to 0777", 8);
}

int parseFd(std::string_view option, std::string_view what, std::string_view text, unsigned min = 0)
{
    constexpr auto kMaxFd = static_cast<unsigned>(std::numeric_limits<int>::max());
    const std::string expected = "a file descriptor >= " + std::to_string(min);
    return static_cast<int>(parseUnsigned<unsigned>(option, what, text, min, kMaxFd, expected));
}

std::uint16_t parsePort(std::string_view option, std::string_view text)
{
    return parseUnsigned<std::uint16_t>(option, "port", text, 1, 65535, "1..65535");
}

// (uid_t)-1 means "leave unchanged" to chown(), so it cannot be asked for.
template <std::unsigned_integral T>
T parseId(std::string_view option, std::string_view what, std::string_view text)
{
    constexpr T kMax = std::numeric_limits<T>::max() - 1;
    return parseUnsigned<T>(option, what, text, 0, kMax, "a number 0.." + std::to_string(kMax));
}

// Relative paths are taken against the cwd at parse time: --daemon later chdirs to /.
std::filesystem::path absolutePath(std::string_view text)
{
    return std::filesystem::absolute(std::filesystem::path(text));
}

// The address syntax is checked here so a typo is a usage error, not a bind() failure later.
void checkBindAddress(std::string_view option, const std::string& addr, const std::string& ifname)
{
    const bool v6 = addr.find(':') != std::string::npos;
    if (v6)
    {
        in6_addr parsed{};
        if (inet_pton(AF_INET6, addr.c_str(), &parsed) != 1)
        {
            fail(option, "invalid IPv6 bindaddr " + inQuotes(addr));
        }
        // fe80::/10 addresses are ambiguous without an interface (RFC 4291 §2.5.6).
        const bool linkLocal = parsed.s6_addr[0] == 0xfe && (parsed.s6_addr[1] & 0xc0) == 0x80;
        if (linkLocal && ifname.empty())
        {
            fail(option, "link-local bindaddr " + inQuotes(addr) + " needs ifname=");
        }
    }
    else
    {
        in_addr parsed{};
        if (inet_pton(AF_INET, addr.c_str(), &parsed) != 1)
        {
            fail(option, "invalid IPv4 bindaddr " + inQuotes(addr));
        }
        if (!ifname.empty())
        {
            fail(option, "ifname= needs an IPv6 bindaddr");
        }
    }
    if (ifname.size() >= IF_NAMESIZE)
    {
        fail(option, "interface name " + inQuotes(ifname) + " is too long");
    }
}

// ---------------------------------------------------------------------------------------
// Endpoints
// ---------------------------------------------------------------------------------------

void parseUnixPath(const KeyValues& kv, Endpoint& ep)
{
    ep.kind = Endpoint::Kind::UnixPath;
    ep.path = absolutePath(*kv.value("path"));
    // bind() would fail with a less helpful error; sun_path needs room for the NUL.
    if (ep.path.native().size() >= sizeof(sockaddr_un{}.sun_path))
    {
        fail(kv.option(), "socket path " + inQuotes(ep.path.native()) + " is too long");
    }
    if (const auto mode = kv.value("mode"))
    {
        ep.mode = parseMode(kv.option(), *mode);
    }
    if (const auto uid = kv.value("uid"))
    {
        ep.uid = parseId<uid_t>(kv.option(), "uid", *uid);
    }
    if (const auto gid = kv.value("gid"))
    {
        ep.gid = parseId<gid_t>(kv.option(), "gid", *gid);
    }
}

Endpoint parseUnixEndpoint(const KeyValues& kv, bool allowClientFd)
{
    rejectKeys(kv, {"port", "bindaddr", "ifname"}, "type=unixio");
    Endpoint ep;
    const std::string_view which = allowClientFd
                                       ? requireOneOf(kv, {"path", "fd", "clientfd"}, "type=unixio")
                                       : requireOneOf(kv, {"path", "fd"}, "type=unixio");
    if (which == "path")
    {
        parseUnixPath(kv, ep);
        return ep;
    }
    rejectKeys(kv, {"mode", "uid", "gid"}, std::string(which) + "=");
    ep.fd = parseFd(kv.option(), which, *kv.value(which));
    ep.kind = which == "fd" ? Endpoint::Kind::UnixFd : Endpoint::Kind::UnixClientFd;
    return ep;
}

// `defaultPort` is TPM_PORT for --server; --ctrl has no default.
Endpoint parseTcpEndpoint(const KeyValues& kv, const char* defaultPort)
{
    rejectKeys(kv, {"path", "mode", "uid", "gid", "clientfd"}, "type=tcp");
    Endpoint ep;
    if (kv.has("fd"))
    {
        rejectKeys(kv, {"port", "bindaddr", "ifname"}, "fd=");
        ep.kind = Endpoint::Kind::TcpFd;
        ep.fd = parseFd(kv.option(), "fd", *kv.value("fd"));
        return ep;
    }
    ep.kind = Endpoint::Kind::TcpPort;
    if (const auto port = kv.value("port"))
    {
        ep.port = parsePort(kv.option(), *port);
    }
    else if (defaultPort != nullptr && *defaultPort != '\0')
    {
        ep.port = parsePort(std::string(kv.option()) + " (from TPM_PORT)", defaultPort);
    }
    else
    {
        fail(kv.option(), defaultPort == nullptr ? "type=tcp needs port= or fd="
                                                 : "type=tcp needs port= or fd= (or TPM_PORT)");
    }
    if (const auto addr = kv.value("bindaddr"))
    {
        ep.bindAddr = *addr;
    }
    if (const auto ifname = kv.value("ifname"))
    {
        ep.ifname = *ifname;
    }
    checkBindAddress(kv.option(), ep.bindAddr, ep.ifname);
    return ep;
}

std::string_view parseType(const KeyValues& kv, std::optional<std::string_view> fallback)
{
    const auto type = kv.value("type") ? kv.value("type") : fallback;
    if (!type)
    {
        fail(kv.option(), "missing type= (expected unixio or tcp)");
    }
    if (*type != "unixio" && *type != "tcp")
    {
        fail(kv.option(), "invalid type " + inQuotes(*type) + " (expected unixio or tcp)");
    }
    return *type;
}

CtrlOptions parseCtrl(std::string_view text)
{
    static constexpr std::array kKeys{
        KeySpec{"type"},
        KeySpec{"path"},
        KeySpec{"mode"},
        KeySpec{"uid"},
        KeySpec{"gid"},
        KeySpec{"fd"},
        KeySpec{"clientfd"},
        KeySpec{"port"},
        KeySpec{"bindaddr"},
        KeySpec{"ifname"},
        KeySpec{"terminate", KeyKind::Flag},
    };
    const KeyValues kv = parseKeyValues("--ctrl", text, kKeys);
    CtrlOptions ctrl;
    ctrl.endpoint = parseType(kv, std::nullopt) == "unixio" ? parseUnixEndpoint(kv, true)
                                                            : parseTcpEndpoint(kv, nullptr);
    ctrl.terminate = kv.enabled("terminate");
    return ctrl;
}

ServerOptions parseServer(std::string_view text)
{
    static constexpr std::array kKeys{
        KeySpec{"type"},   KeySpec{"path"},
        KeySpec{"mode"},   KeySpec{"uid"},
        KeySpec{"gid"},    KeySpec{"fd"},
        KeySpec{"port"},   KeySpec{"bindaddr"},
        KeySpec{"ifname"}, KeySpec{"disconnect", KeyKind::Flag},
    };
    const KeyValues kv = parseKeyValues("--server", text, kKeys);
    ServerOptions server;
    if (parseType(kv, "tcp") == "unixio")
    {
        server.endpoint = parseUnixEndpoint(kv, false);
    }
    else
    {
        // Parsing runs once in main() before any thread exists.
        const char* envPort = std::getenv("TPM_PORT"); // NOLINT(concurrency-mt-unsafe)
        server.endpoint = parseTcpEndpoint(kv, envPort != nullptr ? envPort : "");
    }
    server.disconnect = kv.enabled("disconnect");
    return server;
}

StateOptions parseStateDir(std::string_view option, std::string_view dir)
{
    if (dir.empty())
    {
        fail(option, "empty state directory");
    }
    StateOptions state;
    state.dir = absolutePath(dir);
    return state;
}

state::FsyncPolicy parseFsync(std::string_view option, std::string_view value)
{
    if (value.empty() || value == "true")
    {
        return state::FsyncPolicy::Always; // swtpm's bare "fsync"
    }
    if (value == "false")
    {
        return state::FsyncPolicy::Never;
    }
    const auto policy = state::parseFsyncPolicy(value);
    if (!policy)
    {
        fail(option, "invalid fsync policy " + inQuotes(value) +
                         " (expected always, deferred or never)");
    }
    return *policy;
}

StateOptions parseTpmstate(std::string_view text)
{
    static constexpr std::array kKeys{
        KeySpec{"dir"},
        KeySpec{"backend-uri"},
        KeySpec{"mode"},
        KeySpec{"lock", KeyKind::Bool},
        KeySpec{"fsync", KeyKind::Maybe},
        KeySpec{"backup", KeyKind::Bool},
    };
    constexpr std::string_view kOption = "--tpmstate";
    constexpr std::string_view kDirScheme = "dir://";
    constexpr std::string_view kFileScheme = "file://";
    const KeyValues kv = parseKeyValues(kOption, text, kKeys);
    StateOptions state;
    if (requireOneOf(kv, {"dir", "backend-uri"}, kOption) == "dir")
    {
        state = parseStateDir(kOption, *kv.value("dir"));
    }
    else
    {
        const std::string_view uri = *kv.value("backend-uri");
        if (uri.starts_with(kDirScheme))
        {
            state = parseStateDir(kOption, uri.substr(kDirScheme.size()));
        }
        else if (uri.starts_with(kFileScheme))
        {
            state = parseStateDir(kOption, uri.substr(kFileScheme.size()));
            state.fileBackend = true;
        }
        else
        {
            fail(kOption, "unsupported state backend " + inQuotes(uri) +
                              " (expected dir:// or file://)");
        }
    }
    if (const auto mode = kv.value("mode"))
    {
        state.mode = parseMode(kOption, *mode);
    }
    state.lock = kv.has("lock") ? kv.enabled("lock") : !state.fileBackend;
    if (kv.has("fsync"))
    {
        state.fsync = parseFsync(kOption, *kv.value("fsync"));
    }
    state.backup = !kv.has("backup") || kv.enabled("backup");
    return state;
}

state::KeySpec parseKey(std::string_view option, std::string_view text)
{
    try
    {
        return state::parseKeySpec(option, text);
    }
    catch (const state::KeySpecError& e)
    {
        throw UsageError(e.what());
    }
}

Flags parseFlags(std::string_view text)
{
    static constexpr std::array kKeys{
        KeySpec{"not-need-init", KeyKind::Flag}, KeySpec{"startup-clear", KeyKind::Flag},
        KeySpec{"startup-state", KeyKind::Flag}, KeySpec{"startup-deactivated", KeyKind::Flag},
        KeySpec{"startup-none", KeyKind::Flag},  KeySpec{"disable-auto-shutdown", KeyKind::Flag},
    };
    // Several startup-* words: the first of this list wins (protocol.md §8.1).
    static constexpr std::array<std::pair<std::string_view, StartupType>, 4> kStartupPriority{{
        {"startup-clear", StartupType::Clear},
        {"startup-state", StartupType::State},
        {"startup-deactivated", StartupType::Deactivated},
        {"startup-none", StartupType::None},
    }};
    const KeyValues kv = parseKeyValues("--flags", text, kKeys, "flag");
    Flags flags;
    flags.notNeedInit = kv.enabled("not-need-init");
    for (const auto& [name, type] : kStartupPriority)
    {
        if (kv.enabled(name))
        {
            flags.startup = type;
            break;
        }
    }
    // Sending a Startup needs a running TPM; startup-none alone leaves CMD_INIT to the client.
    if (flags.startup && *flags.startup != StartupType::None)
    {
        flags.notNeedInit = true;
    }
    flags.disableAutoShutdown = kv.enabled("disable-auto-shutdown");
    return flags;
}

LocalityOptions parseLocality(std::string_view text)
{
    static constexpr std::array kKeys{
        KeySpec{"reject-locality-4", KeyKind::Flag},
        KeySpec{"allow-set-locality", KeyKind::Flag},
    };
    const KeyValues kv = parseKeyValues("--locality", text, kKeys, "flag");
    return LocalityOptions{.rejectLocality4 = kv.enabled("reject-locality-4"),
                           .allowSetLocality = kv.enabled("allow-set-locality")};
}

MigrationOptions parseMigration(std::string_view text)
{
    static constexpr std::array kKeys{
        KeySpec{"incoming", KeyKind::Flag},
        KeySpec{"release-lock-outgoing", KeyKind::Flag},
    };
    const KeyValues kv = parseKeyValues("--migration", text, kKeys);
    return MigrationOptions{.incoming = kv.enabled("incoming"),
                            .releaseLockOutgoing = kv.enabled("release-lock-outgoing")};
}

Endpoint parseStatus(std::string_view text)
{
    static constexpr std::array kKeys{
        KeySpec{"type"}, KeySpec{"path"}, KeySpec{"mode"},
        KeySpec{"uid"},  KeySpec{"gid"},  KeySpec{"fd"},
    };
    const KeyValues kv = parseKeyValues("--status", text, kKeys);
    if (parseType(kv, "unixio") != "unixio")
    {
        fail("--status", "only type=unixio is supported");
    }
    return parseUnixEndpoint(kv, false);
}

PidOptions parsePid(std::string_view text)
{
    static constexpr std::array kKeys{KeySpec{"file"}, KeySpec{"fd"}};
    const KeyValues kv = parseKeyValues("--pid", text, kKeys);
    PidOptions pid;
    if (requireOneOf(kv, {"file", "fd"}, "--pid") == "file")
    {
        pid.file = absolutePath(*kv.value("file"));
    }
    else
    {
        pid.fd = parseFd("--pid", "fd", *kv.value("fd"));
    }
    return pid;
}

// See the mapping documented at LogOptions.
void parseLogLevel(std::string_view text, LogOptions& log)
{
    static constexpr std::array<std::pair<std::string_view, LogLevel>, 6> kNames{{
        {"off", LogLevel::Off},
        {"error", LogLevel::Error},
        {"warn", LogLevel::Warn},
        {"info", LogLevel::Info},
        {"debug", LogLevel::Debug},
        {"trace", LogLevel::Trace},
    }};
    static constexpr std::array kByNumber{LogLevel::Off, LogLevel::Info, LogLevel::Debug,
                                          LogLevel::Debug, LogLevel::Trace};
    constexpr unsigned kFirstLibtpmsLevel = 5;

    for (const auto& [name, level] : kNames)
    {
        if (text == name)
        {
            log.level = level;
            return;
        }
    }
    if (text.empty() || text.find_first_not_of("0123456789") != std::string_view::npos)
    {
        fail("--log", "invalid level " + inQuotes(text) +
                          " (expected a number or off|error|warn|info|debug|trace)");
    }
    const auto level = parseUnsigned<unsigned>("--log", "level", text, 0,
                                               std::numeric_limits<unsigned>::max(), "a number");
    if (level < kFirstLibtpmsLevel)
    {
        log.level = kByNumber.at(level);
        return;
    }
    log.level = LogLevel::Trace;
    log.libtpmsDebug = level - (kFirstLibtpmsLevel - 1);
}

LogOptions parseLog(std::string_view text)
{
    static constexpr std::array kKeys{
        KeySpec{"file"},
        KeySpec{"fd"},
        KeySpec{"level"},
        KeySpec{"prefix"},
        KeySpec{"truncate", KeyKind::Flag},
    };
    const KeyValues kv = parseKeyValues("--log", text, kKeys);
    LogOptions log;
    if (kv.has("file") && kv.has("fd"))
    {
        fail("--log", "file= and fd= are mutually exclusive");
    }
    if (const auto level = kv.value("level"))
    {
        parseLogLevel(*level, log);
    }
    if (const auto prefix = kv.value("prefix"))
    {
        log.prefix = *prefix;
    }
    log.truncate = kv.enabled("truncate");
    if (const auto fd = kv.value("fd"))
    {
        log.fd = parseFd("--log", "fd", *fd);
    }
    else if (const auto file = kv.value("file"))
    {
        if (*file == "-")
        {
            // swtpm's way of switching logging off completely, whatever the level.
            log.level = LogLevel::Off;
            log.libtpmsDebug = 0;
        }
        else
        {
            log.file = absolutePath(*file);
        }
    }
    return log;
}

// ---------------------------------------------------------------------------------------
// Top level: getopt_long, as swtpm, so abbreviations, --opt=value, -pVALUE, grouped short
// flags and argument permutation behave exactly like the program we replace.
// ---------------------------------------------------------------------------------------

class Parser;
using Handler = void (Parser::*)(std::string_view arg);

// One row per command-line option: adding an option is adding a row and a handler.
struct OptionSpec
{
    const char* name; // long name without "--"
    char shortName;   // '\0' if none
    bool hasArg;
    bool repeatable; // false: a second occurrence is a usage error
    Handler handler;
};

class Parser
{
public:
    explicit Parser(std::span<char* const> argv) : argv_(argv) {}

    Options run();

    // Handlers, named after the option; `arg` is empty for options without an argument.
    void onTpm2(std::string_view /*arg*/) { opts_.tpmVersion = protocol::TpmVersion::Tpm2; }
    void onCtrl(std::string_view arg) { opts_.ctrl = parseCtrl(arg); }
    void onServer(std::string_view arg) { opts_.server = parseServer(arg); }
    void onTpmstate(std::string_view arg) { opts_.tpmstate = parseTpmstate(arg); }
    void onFlags(std::string_view arg) { opts_.flags = parseFlags(arg); }
    void onLocality(std::string_view arg) { opts_.locality = parseLocality(arg); }
    void onPid(std::string_view arg) { opts_.pid = parsePid(arg); }
    void onStatus(std::string_view arg) { opts_.status = parseStatus(arg); }
    void onMigration(std::string_view arg) { opts_.migration = parseMigration(arg); }
    void onKey(std::string_view arg) { opts_.key = parseKey("--key", arg); }
    void onMigrationKey(std::string_view arg)
    {
        opts_.migrationKey = parseKey("--migration-key", arg);
    }
    void onLog(std::string_view arg) { opts_.log = parseLog(arg); }
    void onPort(std::string_view arg) { legacyPort_ = parsePort("-p/--port", arg); }
    // The fd is a connected stream; 0..2 are stdio, never a TPM client (swtpm agrees).
    void onFd(std::string_view arg) { legacyFd_ = parseFd("-f/--fd", "fd", arg, 3); }
    void onTerminate(std::string_view /*arg*/) { opts_.terminate = true; }
    void onDaemon(std::string_view /*arg*/) { opts_.daemonize = true; }
    void onRunas(std::string_view arg)
    {
        if (arg.empty())
        {
            fail("-r/--runas", "empty user name");
        }
        opts_.runas = arg;
    }
    void onHelp(std::string_view /*arg*/) { opts_.action = Action::Help; }
    void onVersion(std::string_view /*arg*/) { opts_.action = Action::Version; }
    void onPrintCapabilities(std::string_view /*arg*/) { printCapabilities_ = true; }
    void onPrintStates(std::string_view /*arg*/) { printStates_ = true; }

private:
    Options finish();

    std::span<char* const> argv_;
    Options opts_;
    std::optional<std::uint16_t> legacyPort_;
    std::optional<int> legacyFd_;
    bool printCapabilities_ = false;
    bool printStates_ = false;
};

constexpr std::array kOptionTable{
    OptionSpec{"tpm2", '\0', false, true, &Parser::onTpm2},
    OptionSpec{"ctrl", '\0', true, false, &Parser::onCtrl},
    OptionSpec{"server", '\0', true, false, &Parser::onServer},
    OptionSpec{"tpmstate", '\0', true, false, &Parser::onTpmstate},
    OptionSpec{"flags", '\0', true, false, &Parser::onFlags},
    OptionSpec{"locality", '\0', true, false, &Parser::onLocality},
    OptionSpec{"pid", '\0', true, false, &Parser::onPid},
    OptionSpec{"log", '\0', true, false, &Parser::onLog},
    OptionSpec{"status", '\0', true, false, &Parser::onStatus},
    OptionSpec{"migration", '\0', true, false, &Parser::onMigration},
    OptionSpec{"key", '\0', true, false, &Parser::onKey},
    OptionSpec{"migration-key", '\0', true, false, &Parser::onMigrationKey},
    OptionSpec{"port", 'p', true, false, &Parser::onPort},
    OptionSpec{"fd", 'f', true, false, &Parser::onFd},
    OptionSpec{"terminate", 't', false, true, &Parser::onTerminate},
    OptionSpec{"daemon", 'd', false, true, &Parser::onDaemon},
    OptionSpec{"runas", 'r', true, false, &Parser::onRunas},
    OptionSpec{"help", 'h', false, true, &Parser::onHelp},
    OptionSpec{"version", 'v', false, true, &Parser::onVersion},
    OptionSpec{"print-capabilities", '\0', false, true, &Parser::onPrintCapabilities},
    OptionSpec{"print-states", '\0', false, true, &Parser::onPrintStates},
};

// getopt_long reports long-only options by `val`; these start above any char value.
constexpr int kLongOnlyBase = 256;

int getoptValue(std::size_t index)
{
    const OptionSpec& spec = kOptionTable.at(index);
    return spec.shortName != '\0' ? spec.shortName : kLongOnlyBase + static_cast<int>(index);
}

const OptionSpec* specByValue(int value)
{
    for (std::size_t i = 0; i < kOptionTable.size(); ++i)
    {
        if (value != 0 && getoptValue(i) == value)
        {
            return &kOptionTable.at(i);
        }
    }
    return nullptr;
}

std::string displayName(const OptionSpec& spec)
{
    std::string name;
    if (spec.shortName != '\0')
    {
        name = std::string("-") + spec.shortName + "/";
    }
    return name + "--" + spec.name;
}

// The argument getopt complained about, without any "=value" part.
std::string offendingArgument(const std::vector<char*>& args, int index)
{
    const auto at = static_cast<std::size_t>(index);
    if (index <= 0 || at >= args.size() || args.at(at) == nullptr)
    {
        return "?";
    }
    const std::string_view arg = args.at(at);
    return std::string(arg.substr(0, arg.find('=')));
}

// getopt_long accepts unique prefixes of long options, so "unknown" may really be "ambiguous".
std::string unknownLongOption(const std::string& arg)
{
    std::string candidates;
    if (arg.starts_with("--"))
    {
        std::string_view prefix{arg};
        prefix.remove_prefix(2);
        for (const OptionSpec& spec : kOptionTable)
        {
            if (std::string_view(spec.name).starts_with(prefix))
            {
                candidates += candidates.empty() ? "" : ", ";
                candidates += std::string("--") + spec.name;
            }
        }
    }
    if (candidates.find(',') != std::string::npos)
    {
        return "ambiguous option " + inQuotes(arg) + " (could be " + candidates + ")";
    }
    return "unknown option " + inQuotes(arg);
}

Options Parser::run()
{
    if (argv_.size() < 2)
    {
        throw UsageError("missing interface type: expected 'socket' (see --help)");
    }
    const std::string_view mode = argv_[1];
    if (mode == "-h" || mode == "--help")
    {
        opts_.action = Action::Help;
        return opts_;
    }
    if (mode == "-v" || mode == "--version")
    {
        opts_.action = Action::Version;
        return opts_;
    }
    if (mode == "chardev" || mode == "cuse")
    {
        throw UsageError("interface type " + inQuotes(mode) +
                         " is not supported; only 'socket' is");
    }
    if (mode != "socket")
    {
        throw UsageError("unknown interface type " + inQuotes(mode) +
                         "; only 'socket' is supported");
    }

    // getopt permutes its argv, so it gets a private copy starting at "socket" (its argv[0]).
    std::vector<char*> args(argv_.begin() + 1, argv_.end());
    args.push_back(nullptr);
    const int argc = static_cast<int>(args.size() - 1);

    std::vector<::option> longOptions;
    std::string shortOptions = ":"; // leading ':' reports a missing argument as ':'
    for (std::size_t i = 0; i < kOptionTable.size(); ++i)
    {
        const OptionSpec& spec = kOptionTable.at(i);
        longOptions.push_back(::option{spec.name, spec.hasArg ? required_argument : no_argument,
                                       nullptr, getoptValue(i)});
        if (spec.shortName != '\0')
        {
            shortOptions += spec.shortName;
            shortOptions += spec.hasArg ? ":" : "";
        }
    }
    longOptions.push_back(::option{nullptr, 0, nullptr, 0});

    std::array<bool, kOptionTable.size()> seen{};
    optind = 0; // 0, not 1: makes glibc reinitialise fully, so repeated calls work
    opterr = 0; // we report errors ourselves, by exception
    while (true)
    {
        // getopt's globals make this non-reentrant; it runs once, before any thread exists.
        // NOLINTBEGIN(concurrency-mt-unsafe)
        const int c =
            getopt_long(argc, args.data(), shortOptions.c_str(), longOptions.data(), nullptr);
        // NOLINTEND(concurrency-mt-unsafe)
        if (c == -1)
        {
            break;
        }
        if (c == ':')
        {
            const OptionSpec* spec = specByValue(optopt);
            throw UsageError((spec != nullptr ? displayName(*spec) : "option") +
                             ": missing argument");
        }
        if (c == '?')
        {
            // optopt names the option when it is known but was given a value it cannot take
            // (--tpm2=x) or when it is an unknown short option; 0 for unknown long ones.
            if (const OptionSpec* spec = specByValue(optopt))
            {
                throw UsageError(displayName(*spec) + ": takes no argument");
            }
            if (optopt != 0)
            {
                throw UsageError("unknown option '-" + std::string(1, static_cast<char>(optopt)) +
                                 "'");
            }
            throw UsageError(unknownLongOption(offendingArgument(args, optind - 1)));
        }
        const OptionSpec* spec = specByValue(c);
        if (spec == nullptr) // cannot happen: getopt only returns values we gave it
        {
            throw UsageError("internal error: unexpected option code " + std::to_string(c));
        }
        const auto index = static_cast<std::size_t>(spec - kOptionTable.data());
        if (!spec->repeatable && seen.at(index))
        {
            throw UsageError(displayName(*spec) + ": given more than once");
        }
        seen.at(index) = true;
        (this->*spec->handler)(optarg != nullptr ? std::string_view(optarg) : std::string_view{});
        // Like swtpm, -h and -v act at once; later options are not looked at.
        if (opts_.action == Action::Help || opts_.action == Action::Version)
        {
            return opts_;
        }
    }
    if (optind < argc)
    {
        throw UsageError("unexpected argument " +
                         inQuotes(args.at(static_cast<std::size_t>(optind))));
    }
    return finish();
}

// Checks that need the whole command line.
Options Parser::finish()
{
    if (legacyPort_ && legacyFd_)
    {
        throw UsageError("-p/--port and -f/--fd are mutually exclusive");
    }
    if ((legacyPort_ || legacyFd_) && opts_.server)
    {
        throw UsageError(std::string("--server cannot be combined with ") +
                         (legacyPort_ ? "-p/--port" : "-f/--fd"));
    }
    if (legacyPort_)
    {
        ServerOptions server;
        server.endpoint.kind = Endpoint::Kind::TcpPort;
        server.endpoint.port = *legacyPort_;
        server.disconnect = true;
        opts_.server = server;
    }
    if (legacyFd_)
    {
        ServerOptions server;
        server.endpoint.kind = Endpoint::Kind::TcpFd;
        server.endpoint.fd = *legacyFd_;
        opts_.server = server;
    }
    // A connected data stream cannot be re-accepted, so losing it ends the process.
    if (opts_.server && opts_.server->endpoint.kind == Endpoint::Kind::TcpFd)
    {
        opts_.terminate = true;
    }
    if (opts_.tpmVersion == protocol::TpmVersion::Tpm2 &&
        opts_.flags.startup == StartupType::Deactivated)
    {
        throw UsageError("--flags: startup-deactivated does not exist for a TPM 2 (--tpm2)");
    }
    if (!opts_.tpmstate)
    {
        const char* env = std::getenv("TPM_PATH"); // NOLINT(concurrency-mt-unsafe): see run()
        if (env != nullptr && *env != '\0')
        {
            opts_.tpmstate = parseStateDir("TPM_PATH", env);
        }
    }

    if (printCapabilities_)
    {
        opts_.action = Action::PrintCapabilities;
        return opts_;
    }
    if (printStates_)
    {
        if (!opts_.tpmstate)
        {
            throw UsageError("--print-states: needs --tpmstate or TPM_PATH");
        }
        opts_.action = Action::PrintStates;
        return opts_;
    }
    if (!opts_.tpmstate)
    {
        throw UsageError("--tpmstate: missing state directory (give --tpmstate dir=PATH or set "
                         "TPM_PATH)");
    }
    if (!opts_.ctrl && !opts_.server)
    {
        throw UsageError("nothing to serve: give --ctrl, --server, -p/--port or -f/--fd");
    }
    return opts_;
}

} // namespace

Options parseOptions(std::span<char* const> argv)
{
    return Parser(argv).run();
}

std::string usageText(std::string_view program)
{
    std::string text = "Usage: ";
    text += program;
    text += " socket [options]\n       ";
    text += program;
    text += " -h|--help | -v|--version\n";
    text += R"(
vTPM daemon speaking the swtpm socket-mode protocol. Options:

-p|--port <port> : serve the data channel on TCP <port> at 127.0.0.1 and close the
                   connection after each response (like --server port=<port>,disconnect)
-f|--fd <fd>     : use the already connected stream socket <fd> (>= 3) as the data
                   channel; implies --terminate
-t|--terminate   : exit once the data connection is lost
-d|--daemon      : detach and run in the background (the working directory becomes /)
--ctrl type=unixio,path=<path>[,mode=0...][,uid=<uid>][,gid=<gid>][,terminate]
--ctrl type=unixio,fd=<fd>|clientfd=<fd>[,terminate]
--ctrl type=tcp,port=<port>[,bindaddr=<address>[,ifname=<ifname>]]|fd=<fd>[,terminate]
                 : control channel. path= creates a listening UNIX socket whose
                   permissions (octal mode) and owner can be set; fd= is an
                   inherited listening socket; clientfd= an inherited, connected
                   UNIX client. TCP binds to 127.0.0.1 unless bindaddr= is given;
                   an IPv6 link-local address needs ifname=. terminate ends the
                   daemon when the control client disconnects
--server [type=tcp][,port=<port>[,bindaddr=<address>[,ifname=<ifname>]]][,disconnect]
--server type=tcp,fd=<fd>
--server type=unixio,path=<path>[,mode=0...][,uid=<uid>][,gid=<gid>][,disconnect]
--server type=unixio,fd=<fd>[,disconnect]
                 : data channel. Without port= the TPM_PORT environment variable
                   gives the port. type=tcp,fd= is an already connected stream
                   (implies --terminate); type=unixio,fd= a listening socket.
                   disconnect closes the connection after each response
--tpmstate dir=<dir>|backend-uri=dir://<dir>|backend-uri=file://<file>
           [,mode=0...][,lock[=true|false]][,fsync[=always|deferred|never]]
           [,backup[=true|false]]
                 : where the TPM state lives (required to run; the TPM_PATH
                   environment variable is used when absent): a directory of
                   swtpm-compatible files, or one image file or block device
                   in swtpm's linear layout. mode sets the octal permissions
                   of new state files (default 0600); lock takes a lock on
                   the state (default: true for dir, false for file). fsync:
                   always = durable against power loss before a command is
                   answered; deferred (default) = durable against a killed
                   daemon at once and against power loss a few ms later, off
                   the command path; never = no fsync. backup (default true)
                   keeps the last good copy of each blob and falls back to it
                   loudly if the current one is damaged
--key file=<path>|fd=<fd>[,mode=aes-128-cbc|aes-256-cbc][,format=hex|binary][,remove]
--key pwdfile=<path>|pwdfd=<fd>[,mode=...][,kdf=pbkdf2|sha512][,remove]
                 : encrypt the state at rest (AES-CBC + HMAC-SHA256, swtpm's
                   format); a key file holds 32 or 64 hex digits (format=hex)
                   or the raw bytes; a passphrase is turned into a key with
                   PBKDF2-SHA512 (or SHA-512); remove deletes the file after
                   reading it
--migration-key <same as --key>
                 : encrypt state blobs handed out for migration
                   (CMD_GET_STATEBLOB) and decrypt incoming ones
--tpm2           : emulate a TPM 2.0 (default: TPM 1.2)
--flags [not-need-init][,startup-clear|startup-state|startup-deactivated|startup-none]
        [,disable-auto-shutdown]
                 : not-need-init: start the TPM without waiting for CMD_INIT;
                   startup-*: also send TPM_Startup of that type at launch
                   (implies not-need-init, except startup-none; deactivated is
                   TPM 1.2 only); disable-auto-shutdown: no TPM2_Shutdown on exit
--locality [reject-locality-4][,allow-set-locality]
                 : refuse locality 4 on the control channel; accept the in-band
                   SetLocality command on the data channel
--migration [incoming][,release-lock-outgoing]
                 : live migration on shared storage: incoming defers locking
                   the state until the migrated state arrives;
                   release-lock-outgoing unlocks it once the last state blob
                   was sent, so the destination can take it over
--pid file=<path>|fd=<fd>
                 : write the process ID to <path> or <fd>
--log [file=<path>|fd=<fd>][,level=<n>|<name>][,prefix=<string>][,truncate]
                 : log to <path> (appended unless truncate; '-' disables
                   logging) or <fd> instead of stderr. Levels: 0 off,
                   1 info (default), 2-3 debug, 4 trace, 5 and up trace plus
                   libtpms debug output of depth n-4; or one of
                   off|error|warn|info|debug|trace. prefix starts every line
--status [type=unixio,]path=<path>[,mode=0...][,uid=<uid>][,gid=<gid>]|fd=<fd>
                 : vtpmd only: a UNIX socket that answers each connection with
                   one JSON health report (TPM running, VM attached, commands
                   served, last command, errors) and closes it; never touches
                   the control channel
-r|--runas <user>: drop privileges to <user> once sockets and files are open
--print-capabilities
                 : print the supported features as JSON and exit
--print-states   : print the TPM state blobs present in the state directory as
                   JSON and exit
-v|--version     : print the version and exit
-h|--help        : print this help and exit
)";
    return text;
}

} // namespace vtpm::daemon

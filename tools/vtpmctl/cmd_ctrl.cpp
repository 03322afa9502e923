// vtpmctl ctrl: the control-channel operations an operator needs (swtpm_ioctl's job).

#include "protocol/blob_type.hpp"
#include "state/unique_fd.hpp"
#include "tools/vtpmctl/commands.hpp"
#include "tools/vtpmctl/ctrl_client.hpp"
#include "tools/vtpmctl/daemon_process.hpp"
#include "tools/vtpmctl/exit_codes.hpp"
#include "tools/vtpmctl/instance_access.hpp"
#include "tools/vtpmctl/status_query.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>

#include <fcntl.h>
#include <unistd.h>

namespace vtpm::tools
{

namespace
{

namespace rc = protocol::rc;
using protocol::CtrlCode;

// libtpms TPMLIB_INFO_TPMSPECIFICATION | TPMATTRIBUTES | TPMFEATURES.
constexpr std::uint64_t kInfoFlags = 0x1 | 0x2 | 0x4;

struct Session
{
    std::string name;
    fs::path socket;
    std::chrono::milliseconds timeout;
};

std::string resultText(protocol::TpmResult result)
{
    char hex[16];
    std::snprintf(hex, sizeof(hex), "0x%x", result);
    const std::string_view name = protocol::resultName(result);
    return name.empty() ? std::string(hex) : std::string(hex) + " " + std::string(name);
}

// One request; anything but a reply throws with what to do. The reply may carry an error
// result: callers decide, since some results (TPM running for SET_STATEBLOB) need advice.
protocol::Bytes exchange(const Session& s, CtrlCode code, const protocol::Bytes& request)
{
    const CtrlReply reply = ctrlRequest(s.socket, code, request, s.timeout);
    switch (reply.outcome)
    {
    case CtrlOutcome::Replied:
        return reply.bytes;
    case CtrlOutcome::NoDaemon:
        throw CommandError(ExitCode::NotRunning, "nothing listens on " + s.socket.string() +
                                                     "; start " + s.name + " with 'vtpmctl start " +
                                                     s.name + "'");
    case CtrlOutcome::Busy:
        throw CommandError(ExitCode::Busy,
                           "the control channel of " + s.name + " did not answer within " +
                               std::to_string(s.timeout.count()) +
                               " ms; another client (QEMU) probably holds it. Stop the VM, or "
                               "use 'vtpmctl status " +
                               s.name + "' for health");
    case CtrlOutcome::Failed:
        break;
    }
    throw CommandError(ExitCode::Failed, "the control connection to " + s.name +
                                             " failed; see its log and 'vtpmctl status " + s.name +
                                             "'");
}

void requireSuccess(const protocol::Bytes& reply, std::string_view command,
                    const std::string& advice = {})
{
    const auto result = protocol::parseResult(reply).value_or(rc::kFail);
    if (result != rc::kSuccess)
    {
        throw CommandError(ExitCode::Failed,
                           std::string(command) + " failed: " + resultText(result) +
                               (advice.empty() ? "; see the instance's vtpmd.log" : advice));
    }
}

protocol::BlobType blobTypeOf(const std::string& name)
{
    if (name == "permanent")
    {
        return protocol::BlobType::Permanent;
    }
    if (name == "volatile")
    {
        return protocol::BlobType::Volatile;
    }
    if (name == "savestate")
    {
        return protocol::BlobType::SaveState;
    }
    throw CommandError(ExitCode::Usage,
                       "unknown blob type '" + name + "'; use permanent, volatile or savestate");
}

void printCaps(const Session& s)
{
    const auto reply =
        exchange(s, CtrlCode::GetCapability, protocol::encodeRequest(CtrlCode::GetCapability));
    const auto caps = protocol::parseCapabilityReply(reply);
    if (!caps)
    {
        requireSuccess(reply, "CMD_GET_CAPABILITY");
        throw CommandError(ExitCode::Failed, "malformed CMD_GET_CAPABILITY reply");
    }
    struct Named
    {
        std::uint32_t bit;
        const char* name;
    };
    namespace cap = protocol::cap;
    static constexpr Named kCaps[] = {
        {cap::kInit, "init"},
        {cap::kShutdown, "shutdown"},
        {cap::kGetTpmEstablished, "get-tpmestablished"},
        {cap::kSetLocality, "set-locality"},
        {cap::kHashing, "hashing"},
        {cap::kCancelTpmCmd, "cancel-tpm-cmd"},
        {cap::kStoreVolatile, "store-volatile"},
        {cap::kResetTpmEstablished, "reset-tpmestablished"},
        {cap::kGetStateBlob, "get-stateblob"},
        {cap::kSetStateBlob, "set-stateblob"},
        {cap::kStop, "stop"},
        {cap::kGetConfig, "get-config"},
        {cap::kSetDataFd, "set-datafd"},
        {cap::kSetBufferSize, "set-buffersize"},
        {cap::kGetInfo, "get-info"},
        {cap::kSendCommandHeader, "send-command-header"},
        {cap::kLockStorage, "lock-storage"},
    };
    std::string names;
    for (const Named& n : kCaps)
    {
        if ((caps->caps & n.bit) != 0)
        {
            names += names.empty() ? "" : " ";
            names += n.name;
        }
    }
    std::printf("capabilities: 0x%08x (%s)\n", caps->caps, names.c_str());
}

void printInfo(const Session& s)
{
    std::string json;
    std::uint32_t total = 0;
    do
    {
        const auto reply =
            exchange(s, CtrlCode::GetInfo,
                     protocol::encodeRequest(protocol::GetInfoRequest{
                         .flags = kInfoFlags, .offset = static_cast<std::uint32_t>(json.size())}));
        const auto info = protocol::parseInfoReply(reply);
        if (!info)
        {
            requireSuccess(reply, "CMD_GET_INFO");
            throw CommandError(ExitCode::Failed, "malformed CMD_GET_INFO reply");
        }
        total = info->totalLength;
        if (info->chunk.empty())
        {
            break;
        }
        json.append(info->chunk.begin(), info->chunk.end());
    } while (json.size() < total && json.size() + 1 < total);
    while (!json.empty() && json.back() == '\0')
    {
        json.pop_back();
    }
    std::printf("%s\n", json.c_str());
}

void saveBlob(const Session& s, const CtrlOptions& options)
{
    const auto type = static_cast<std::uint32_t>(blobTypeOf(options.blobType));
    protocol::Bytes blob;
    for (;;)
    {
        const auto reply = exchange(s, CtrlCode::GetStateBlob,
                                    protocol::encodeRequest(protocol::GetStateBlobRequest{
                                        .stateFlags = protocol::stateflag::kDecrypted,
                                        .type = type,
                                        .offset = static_cast<std::uint32_t>(blob.size())}));
        const auto parsed = protocol::parseStateBlobReply(reply);
        requireSuccess(reply, "CMD_GET_STATEBLOB",
                       "; the TPM must be running ('vtpmctl ctrl " + s.name +
                           " init') and have this blob (savestate exists for TPM 1.2 only)");
        if (!parsed)
        {
            throw CommandError(ExitCode::Failed, "malformed CMD_GET_STATEBLOB reply");
        }
        blob.insert(blob.end(), parsed->data.begin(), parsed->data.end());
        if (parsed->data.empty() || parsed->data.size() >= parsed->totalLength)
        {
            break;
        }
    }
    const fs::path tmp = options.file.string() + ".tmp." + std::to_string(::getpid());
    state::UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    if (!fd || ::write(fd.get(), blob.data(), blob.size()) != static_cast<ssize_t>(blob.size()) ||
        ::fsync(fd.get()) != 0 || fd.close() != 0 ||
        ::rename(tmp.c_str(), options.file.c_str()) != 0)
    {
        const int error = errno;
        ::unlink(tmp.c_str());
        throw CommandError(ExitCode::Failed, "cannot write " + options.file.string() + ": " +
                                                 std::strerror(error) +
                                                 "; choose a writable location");
    }
    std::printf("saved %s blob of %s (%zu bytes, unencrypted) to %s\n", options.blobType.c_str(),
                s.name.c_str(), blob.size(), options.file.c_str());
}

void loadBlob(const Session& s, const CtrlOptions& options)
{
    const auto type = static_cast<std::uint32_t>(blobTypeOf(options.blobType));
    std::ifstream in(options.file, std::ios::binary);
    if (!in)
    {
        throw CommandError(ExitCode::Failed, "cannot read " + options.file.string() + ": " +
                                                 std::strerror(errno) + "; check the path");
    }
    const protocol::Bytes blob{std::istreambuf_iterator<char>(in),
                               std::istreambuf_iterator<char>()};
    if (blob.size() > protocol::kMaxStateBlobSize)
    {
        throw CommandError(ExitCode::Failed, options.file.string() + " is larger than " +
                                                 std::to_string(protocol::kMaxStateBlobSize) +
                                                 " bytes; it is not a state blob");
    }
    const auto reply = exchange(s, CtrlCode::SetStateBlob,
                                protocol::encodeRequest(protocol::SetStateBlobRequest{
                                    .stateFlags = 0, .type = type, .blob = blob}));
    const auto result = protocol::parseResult(reply).value_or(rc::kFail);
    if (result == rc::kBadOrdinal)
    {
        throw CommandError(ExitCode::Failed, "CMD_SET_STATEBLOB refused: the TPM is running; run "
                                             "'vtpmctl ctrl " +
                                                 s.name + " stop' first, then load, then 'ctrl " +
                                                 s.name + " init'");
    }
    requireSuccess(reply, "CMD_SET_STATEBLOB", "; is the file a blob of this TPM type?");
    std::printf("loaded %s blob (%zu bytes) into %s; run 'vtpmctl ctrl %s init' to start the TPM\n",
                options.blobType.c_str(), blob.size(), s.name.c_str(), s.name.c_str());
}

void simpleCommand(const Session& s, CtrlCode code, const protocol::Bytes& request,
                   std::string_view command, const char* done)
{
    requireSuccess(exchange(s, code, request), command);
    std::printf("%s: %s\n", s.name.c_str(), done);
}

} // namespace

void runCtrl(const GlobalOptions& global, const CtrlOptions& options)
{
    const Instance instance = openInstance(global, options.name);
    const Session s{.name = options.name,
                    .socket = instance.paths.ctrlSocket,
                    .timeout = timeoutFrom(options.timeoutSeconds)};
    const PidProbe probe = probePid(instance.paths);
    if (probe.state != PidState::Alive)
    {
        throw CommandError(ExitCode::NotRunning, options.name +
                                                     " is not running; start it with "
                                                     "'vtpmctl start " +
                                                     options.name + "'");
    }
    // A request queued behind QEMU's connection would run whenever QEMU lets go, maybe much
    // later: refuse instead of queueing when the health report says the channel is taken.
    const auto report = queryStatus({instance.paths.statusSocket}, s.timeout).front();
    if (report && report->value("controlConnected", false))
    {
        throw CommandError(ExitCode::Busy,
                           "another client (QEMU) holds the control channel of " + options.name +
                               "; vtpmd serves one at a time. Stop the VM first, or use "
                               "'vtpmctl status " +
                               options.name + "' for health");
    }
    const std::string& op = options.operation;
    if (op == "init")
    {
        simpleCommand(s, CtrlCode::Init, protocol::encodeRequest(protocol::InitRequest{}),
                      "CMD_INIT", "TPM initialised");
    }
    else if (op == "stop")
    {
        simpleCommand(s, CtrlCode::Stop, protocol::encodeRequest(CtrlCode::Stop), "CMD_STOP",
                      "TPM stopped (vtpmd keeps running)");
    }
    else if (op == "shutdown")
    {
        simpleCommand(s, CtrlCode::Shutdown, protocol::encodeRequest(CtrlCode::Shutdown),
                      "CMD_SHUTDOWN", "vtpmd is shutting down (state saved)");
    }
    else if (op == "caps")
    {
        printCaps(s);
    }
    else if (op == "info")
    {
        printInfo(s);
    }
    else if (op == "save")
    {
        saveBlob(s, options);
    }
    else if (op == "load")
    {
        loadBlob(s, options);
    }
    else
    {
        throw CommandError(ExitCode::Usage,
                           "unknown ctrl operation '" + op + "'; see 'vtpmctl ctrl --help'");
    }
}

} // namespace vtpm::tools

#include "daemon/data_handler.hpp"

#include "protocol/tpm_frame.hpp"

#include <spdlog/spdlog.h>

namespace vtpm::daemon
{

using protocol::Bytes;
using protocol::ByteView;
using protocol::TpmVersion;
namespace rc = protocol::rc;

namespace
{

constexpr std::size_t kSetLocalityMinSize = protocol::kTpmHeaderSize + 1;
constexpr std::uint8_t kMaxLocality = 4;

} // namespace

DataHandler::DataHandler(TpmEngine& engine, StateStore& store, const Options& options,
                         DaemonControl& daemon) :
    engine_(engine), store_(store), options_(options), daemon_(daemon)
{
}

ByteView DataHandler::generated(Bytes bytes)
{
    scratch_ = std::move(bytes);
    return scratch_;
}

ByteView DataHandler::sizeError()
{
    ++badFrames_;
    return generated(protocol::commandSizeResponse(engine_.version()));
}

ByteView DataHandler::setLocality(ByteView command)
{
    const TpmVersion version = engine_.version();
    const bool tpm2 = version == TpmVersion::Tpm2;
    if (command.size() < kSetLocalityMinSize)
    {
        return generated(protocol::errorResponse(
            version, tpm2 ? rc::kTpm2Insufficient : rc::kBadParamSize));
    }
    if (!options_.locality.allowSetLocality)
    {
        return generated(protocol::notRunningResponse(version));
    }
    const std::uint8_t locality = command[protocol::kTpmHeaderSize];
    if (locality > kMaxLocality ||
        (locality == kMaxLocality && options_.locality.rejectLocality4))
    {
        return generated(
            protocol::errorResponse(version, tpm2 ? rc::kTpm2Locality : rc::kBadLocality));
    }
    engine_.setLocality(locality);
    return generated(protocol::errorResponse(version, rc::kSuccess));
}

ByteView DataHandler::execute(std::span<std::uint8_t> frame, std::size_t prefixSize)
{
    ++served_;
    const std::span<std::uint8_t> command = frame.subspan(prefixSize);
    const auto header = protocol::parseTpmHeader(command);
    lastCommand_ = header ? header->code : 0;
    lastCommandTime_ = std::chrono::system_clock::now(); // vDSO: no system call
    if (prefixSize != 0)
    {
        // The prefix's locality applies to this and later commands, unchecked, as in swtpm.
        engine_.setLocality(protocol::sendCommandLocality(frame));
    }
    if (header && spdlog::should_log(spdlog::level::debug))
    {
        const auto name = protocol::tpmCommandName(engine_.version(), header->code);
        spdlog::debug("data: {} (0x{:x}), {} bytes, locality {}",
                      name.empty() ? "unknown command" : name, header->code, command.size(),
                      engine_.locality());
    }
    ByteView response;
    std::string lockError;
    if (engine_.running() && !store_.writable() && !store_.ensureLocked(&lockError))
    {
        // The state was handed over (or never taken, incoming): executing would write state
        // another daemon owns. Like swtpm, give up rather than corrupt it (§7.7).
        spdlog::critical("cannot lock the TPM state before a command: {}", lockError);
        daemon_.requestExit("state lock lost");
        response = generated(protocol::notRunningResponse(engine_.version()));
    }
    else if (!engine_.running())
    {
        response = generated(protocol::notRunningResponse(engine_.version()));
    }
    else if (header && header->code == protocol::cc::kSetLocality)
    {
        response = setLocality(command);
    }
    else
    {
        response = engine_.process(command);
    }
    if (prefixSize != 0)
    {
        return generated(protocol::wrapSendCommandResponse(response));
    }
    return response;
}

} // namespace vtpm::daemon

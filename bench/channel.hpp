#pragma once

#include "bench/tpm_commands.hpp"
#include "protocol/ctrl_messages.hpp"
#include "state/unique_fd.hpp"

#include <array>
#include <cstdint>
#include <string>

// How the benchmark talks to a TPM: a data channel that carries one command at a time, and the
// control channel of protocol.md §2.4 used to start the TPM and hand over a socketpair (§2.5).
namespace vtpm::bench
{

using state::UniqueFd;

// Largest response: the TPM buffer (4096) plus room for a TCG prefix frame.
inline constexpr std::size_t kResponseBufferSize = 4096 + 16;

// One command in flight: send it, wait for the complete response, return a view of it that
// stays valid until the next call. Implementations do not allocate per command.
class TpmChannel
{
public:
    virtual ~TpmChannel() = default;
    virtual ByteView transact(ByteView command) = 0;
};

// Data channel over a connected stream socket (UNIX, TCP or a socketpair end). One write for
// the command; reads until the header's size is complete (normally one read).
class SocketChannel final : public TpmChannel
{
public:
    explicit SocketChannel(UniqueFd fd) : fd_(std::move(fd)) {}
    ByteView transact(ByteView command) override;
    [[nodiscard]] int fd() const noexcept { return fd_.get(); }

private:
    UniqueFd fd_;
    std::array<std::uint8_t, kResponseBufferSize> buffer_{};
};

// Control-channel client, strictly lock-step as swtpm requires (§2.4 item 4).
class CtrlClient
{
public:
    explicit CtrlClient(UniqueFd fd) : fd_(std::move(fd)) {}

    // CMD_GET_CAPABILITY; returns the capability mask.
    std::uint32_t getCapability();
    // CMD_INIT with the given flags; throws unless the result is TPM_SUCCESS.
    void init(std::uint32_t flags = 0);
    // CMD_SET_DATAFD with one end of a new socketpair; returns the other end.
    UniqueFd setDataFd();
    // CMD_SHUTDOWN (the daemon exits after replying).
    void shutdown();

private:
    // Reads the 4-byte result and, on success, the rest of a fixed reply of `size` bytes.
    std::uint32_t readReply(std::span<std::uint8_t> reply, const char* what);
    void sendAll(ByteView bytes);

    UniqueFd fd_;
};

UniqueFd connectUnix(const std::string& path);
// Connects to a UNIX socket, retrying while it does not exist or refuses, until the deadline.
// Returns an invalid fd on timeout.
UniqueFd connectUnixRetry(const std::string& path, double timeoutSeconds);
UniqueFd connectTcp(std::uint16_t port, double timeoutSeconds);
// A currently free TCP port on 127.0.0.1 (bound and released; racy but fine for a benchmark).
std::uint16_t freeTcpPort();

// Writes all bytes, reads exactly out.size() bytes; throw BenchError on error or EOF.
void writeAll(int fd, ByteView bytes);
void readExact(int fd, std::span<std::uint8_t> out);

} // namespace vtpm::bench

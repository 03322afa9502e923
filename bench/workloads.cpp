#include "bench/workloads.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <numeric>

#include <time.h>

namespace vtpm::bench
{

using protocol::TpmVersion;

namespace
{

constexpr std::uint16_t kRandomBytes = 32;
constexpr std::size_t kHashBytes = 64;
constexpr std::uint16_t kNvBytes = 32;
constexpr std::uint32_t kTpm12Pcr = 10;

constexpr std::array kWorkloads = {
    WorkloadInfo{"getrandom", "TPM2_GetRandom(32)", TpmVersion::Tpm2, 3000, 100},
    WorkloadInfo{"pcr-extend", "TPM2_PCR_Extend(sha256)", TpmVersion::Tpm2, 3000, 100},
    WorkloadInfo{"pcr-read", "TPM2_PCR_Read(sha256)", TpmVersion::Tpm2, 3000, 100},
    WorkloadInfo{"hash", "TPM2_Hash(64 B)", TpmVersion::Tpm2, 3000, 100},
    WorkloadInfo{"getcap", "TPM2_GetCapability", TpmVersion::Tpm2, 3000, 100},
    WorkloadInfo{"nv-write", "TPM2_NV_Write(32 B)", TpmVersion::Tpm2, 300, 10},
    WorkloadInfo{"sign-rsa", "TPM2_Sign RSA-2048", TpmVersion::Tpm2, 300, 10},
    WorkloadInfo{"sign-ecc", "TPM2_Sign ECC P-256", TpmVersion::Tpm2, 1000, 20},
    WorkloadInfo{"create-rsa", "TPM2_CreatePrimary RSA-2048", TpmVersion::Tpm2, 10, 1},
    WorkloadInfo{"create-ecc", "TPM2_CreatePrimary ECC P-256", TpmVersion::Tpm2, 200, 5},
    WorkloadInfo{"tpm12-getcap", "TPM_GetCapability (1.2)", TpmVersion::Tpm12, 3000, 100},
    WorkloadInfo{"tpm12-extend", "TPM_Extend (1.2)", TpmVersion::Tpm12, 3000, 100},
};

std::uint32_t createSigningKey(TpmChannel& channel, tpm2::KeyType type)
{
    const ByteView response = channel.transact(tpm2::createPrimarySigningKey(type));
    expectSuccess(response, TpmVersion::Tpm2, "TPM2_CreatePrimary");
    return createdHandle(response);
}

void flushCreated(TpmChannel& channel, ByteView created)
{
    const std::uint32_t handle = createdHandle(created);
    expectSuccess(channel.transact(tpm2::flushContext(handle)), TpmVersion::Tpm2,
                  "TPM2_FlushContext");
}

void defineNvIndex(TpmChannel& channel)
{
    const Bytes define = tpm2::nvDefineSpace(tpm2::kBenchNvIndex, kNvBytes);
    if (responseCode(channel.transact(define), TpmVersion::Tpm2) == tpm2::kRcNvDefined)
    {
        // Left over from an earlier run on the same state: start from a fresh index.
        expectSuccess(channel.transact(tpm2::nvUndefineSpace(tpm2::kBenchNvIndex)),
                      TpmVersion::Tpm2, "TPM2_NV_UndefineSpace");
        expectSuccess(channel.transact(define), TpmVersion::Tpm2, "TPM2_NV_DefineSpace");
    }
}

void writeCounter(Bytes& command, std::size_t offset, std::uint32_t value) noexcept
{
    for (std::size_t i = 0; i < 4; ++i)
    {
        command[offset + i] = static_cast<std::uint8_t>(value >> (8U * (3 - i)));
    }
}

// TPM_RC_RETRY / TPM_RC_TESTING: the first use of an algorithm after TPM2_Startup runs its
// self-test and asks the caller to resend (Part 1 §12.3). Only tolerated during warm-up.
bool mustResend(ByteView response, TpmVersion version)
{
    constexpr std::uint32_t kRcRetry = 0x922;
    constexpr std::uint32_t kRcTesting = 0x90a;
    if (version != TpmVersion::Tpm2)
    {
        return false;
    }
    const std::uint32_t code = responseCode(response, version);
    return code == kRcRetry || code == kRcTesting;
}

double percentile(const std::vector<std::int64_t>& sorted, double q)
{
    const auto n = static_cast<double>(sorted.size());
    auto rank = static_cast<std::size_t>(std::ceil(q * n));
    rank = std::clamp<std::size_t>(rank, 1, sorted.size());
    return static_cast<double>(sorted[rank - 1]) / 1000.0;
}

} // namespace

std::span<const WorkloadInfo> allWorkloads() noexcept
{
    return kWorkloads;
}

const WorkloadInfo* findWorkload(std::string_view name) noexcept
{
    const auto it = std::find_if(kWorkloads.begin(), kWorkloads.end(),
                                 [name](const WorkloadInfo& w) { return w.name == name; });
    return it == kWorkloads.end() ? nullptr : &*it;
}

PreparedWorkload prepareWorkload(const WorkloadInfo& workload, TpmChannel& channel)
{
    const std::string_view n = workload.name;
    PreparedWorkload p;
    if (n == "getrandom")
    {
        p.command = tpm2::getRandom(kRandomBytes);
    }
    else if (n == "pcr-extend")
    {
        p.command = tpm2::pcrExtendSha256(tpm2::kBenchPcr);
    }
    else if (n == "pcr-read")
    {
        p.command = tpm2::pcrReadSha256(tpm2::kBenchPcr);
    }
    else if (n == "hash")
    {
        p.command = tpm2::hashSha256(kHashBytes);
    }
    else if (n == "getcap")
    {
        p.command = tpm2::getCapabilityManufacturer();
    }
    else if (n == "nv-write")
    {
        defineNvIndex(channel);
        p.command = tpm2::nvWrite(tpm2::kBenchNvIndex, kNvBytes);
        p.counterOffset = p.command.size() - sizeof(std::uint16_t) - kNvBytes; // data[0..3]
    }
    else if (n == "sign-rsa")
    {
        p.command = tpm2::signDigest(createSigningKey(channel, tpm2::KeyType::Rsa2048));
    }
    else if (n == "sign-ecc")
    {
        p.command = tpm2::signDigest(createSigningKey(channel, tpm2::KeyType::EccP256));
    }
    else if (n == "create-rsa" || n == "create-ecc")
    {
        p.command = tpm2::createPrimarySigningKey(n == "create-rsa" ? tpm2::KeyType::Rsa2048
                                                                    : tpm2::KeyType::EccP256);
        p.afterEach = &flushCreated;
    }
    else if (n == "tpm12-getcap")
    {
        p.command = tpm12::getCapabilityPcrCount();
    }
    else if (n == "tpm12-extend")
    {
        p.command = tpm12::extend(kTpm12Pcr);
    }
    else
    {
        throw BenchError(fmt::format("unknown workload {}", n));
    }
    return p;
}

std::int64_t monotonicNs() noexcept
{
    timespec ts{};
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

RunStats summarise(std::vector<std::int64_t>& latenciesNs)
{
    RunStats s;
    if (latenciesNs.empty())
    {
        return s;
    }
    std::sort(latenciesNs.begin(), latenciesNs.end());
    const auto total = std::accumulate(latenciesNs.begin(), latenciesNs.end(), std::int64_t{0});
    s.ops = static_cast<unsigned>(latenciesNs.size());
    s.opsPerSecond = total > 0 ? static_cast<double>(s.ops) * 1e9 / static_cast<double>(total) : 0;
    s.p50 = percentile(latenciesNs, 0.50);
    s.p90 = percentile(latenciesNs, 0.90);
    s.p99 = percentile(latenciesNs, 0.99);
    s.max = static_cast<double>(latenciesNs.back()) / 1000.0;
    return s;
}

RunStats runWorkload(const WorkloadInfo& workload, TpmChannel& channel, unsigned ops,
                     unsigned warmup)
{
    PreparedWorkload p = prepareWorkload(workload, channel);
    const ByteView command = p.command;
    std::uint32_t counter = 0;
    for (unsigned i = 0; i < warmup; ++i)
    {
        if (p.counterOffset != 0)
        {
            writeCounter(p.command, p.counterOffset, ++counter);
        }
        ByteView response = channel.transact(command);
        for (int resend = 0; resend < 10 && mustResend(response, workload.version); ++resend)
        {
            response = channel.transact(command);
        }
        expectSuccess(response, workload.version, workload.label);
        if (p.afterEach)
        {
            p.afterEach(channel, response);
        }
    }
    std::vector<std::int64_t> latencies;
    latencies.reserve(ops);
    for (unsigned i = 0; i < ops; ++i)
    {
        if (p.counterOffset != 0)
        {
            writeCounter(p.command, p.counterOffset, ++counter);
        }
        const std::int64_t start = monotonicNs();
        const ByteView response = channel.transact(command);
        const std::int64_t end = monotonicNs();
        expectSuccess(response, workload.version, workload.label);
        latencies.push_back(end - start);
        if (p.afterEach)
        {
            p.afterEach(channel, response);
        }
    }
    return summarise(latencies);
}

RunStats runEcho(TpmChannel& channel, ByteView frame, unsigned ops, unsigned warmup)
{
    std::vector<std::int64_t> latencies;
    latencies.reserve(ops);
    for (unsigned i = 0; i < warmup + ops; ++i)
    {
        const std::int64_t start = monotonicNs();
        const ByteView echoed = channel.transact(frame);
        const std::int64_t end = monotonicNs();
        if (echoed.size() != frame.size())
        {
            throw BenchError("echo returned a different size");
        }
        if (i >= warmup)
        {
            latencies.push_back(end - start);
        }
    }
    return summarise(latencies);
}

} // namespace vtpm::bench

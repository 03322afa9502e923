#pragma once

#include "bench/channel.hpp"
#include "protocol/tpm_version.hpp"

#include <functional>
#include <span>
#include <string_view>
#include <vector>

// The benchmark workloads: what is set up once (untimed), the one pre-marshalled command that
// is timed, and an optional untimed follow-up per operation (FlushContext after CreatePrimary).
namespace vtpm::bench
{

struct WorkloadInfo
{
    std::string_view name;  // command-line name, e.g. "getrandom"
    std::string_view label; // table label, e.g. "TPM2_GetRandom(32)"
    protocol::TpmVersion version = protocol::TpmVersion::Tpm2;
    unsigned defaultOps = 0;
    unsigned warmup = 0;
};

// Every workload, TPM 2.0 first.
std::span<const WorkloadInfo> allWorkloads() noexcept;
const WorkloadInfo* findWorkload(std::string_view name) noexcept;

struct PreparedWorkload
{
    Bytes command;
    std::function<void(TpmChannel&, ByteView)> afterEach; // untimed; may be empty
    // If non-zero: a 4-byte operation counter is written here before each operation, so the
    // payload differs every time (libtpms skips the NV commit when NV_Write data is unchanged).
    std::size_t counterOffset = 0;
};

// Runs the untimed set-up on a started TPM (TPM2_Startup / TPM_Startup already answered).
PreparedWorkload prepareWorkload(const WorkloadInfo& workload, TpmChannel& channel);

// Latency summary of one run; times in microseconds.
struct RunStats
{
    unsigned ops = 0;
    double opsPerSecond = 0; // ops / sum of timed latencies
    double p50 = 0;
    double p90 = 0;
    double p99 = 0;
    double max = 0;
};

RunStats summarise(std::vector<std::int64_t>& latenciesNs);

// Warm-up (untimed), then `ops` timed round trips, CLOCK_MONOTONIC around each; every response
// code is checked.
RunStats runWorkload(const WorkloadInfo& workload, TpmChannel& channel, unsigned ops,
                     unsigned warmup);

// Timed round trips of an arbitrary frame (the echo limit); checks the echoed size only.
RunStats runEcho(TpmChannel& channel, ByteView frame, unsigned ops, unsigned warmup);

std::int64_t monotonicNs() noexcept;

} // namespace vtpm::bench

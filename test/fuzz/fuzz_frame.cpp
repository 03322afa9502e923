#include "protocol/byte_io.hpp"
#include "protocol/tpm_frame.hpp"
#include "protocol/tpm_version.hpp"
#include "test/fuzz/fuzz_target.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>

// Data-channel framing target: the input is whatever a client wrote so far. Invariants of
// probeFrame (for both TPM families and several buffer sizes), parseTpmHeader and the TCG
// send-command prefix helpers.
using namespace vtpm::protocol;

namespace
{

constexpr std::size_t kMaxSizes[] = {0,
                                     1,
                                     kTpmHeaderSize,
                                     kTpmHeaderSize + 1,
                                     2808,
                                     3072,
                                     3968,
                                     kMaxTpmBufferSize,
                                     kMaxTpmBufferSize + kSendCommandPrefixSize,
                                     std::numeric_limits<std::uint32_t>::max(),
                                     std::numeric_limits<std::size_t>::max()};

bool looksLikePrefix(ByteView input)
{
    if (input.size() < kTpmHeaderSize)
    {
        return false;
    }
    ByteReader in(input);
    const auto first = in.read<std::uint32_t>();
    const auto tag = static_cast<std::uint16_t>(first >> 16U);
    return first == kSendCommandCode && tag != tag::kTpm2NoSessions && tag != tag::kTpm2Sessions;
}

void checkProbe(ByteView input, TpmVersion version, std::size_t maxSize)
{
    const FrameProbe p = probeFrame(input, version, maxSize);
    const std::size_t prefix = p.prefixSize;

    FUZZ_CHECK(prefix == 0 || prefix == kSendCommandPrefixSize);
    FUZZ_CHECK(p.needed >= kTpmHeaderSize + prefix);
    if (prefix != 0)
    {
        FUZZ_CHECK(version == TpmVersion::Tpm2); // TPM 1.2 never sees a prefix
        FUZZ_CHECK(looksLikePrefix(input));
        FUZZ_CHECK(sendCommandLocality(input) == input[4]);
    }
    else if (input.size() >= kTpmHeaderSize && version == TpmVersion::Tpm2)
    {
        FUZZ_CHECK(!looksLikePrefix(input));
    }

    const auto header =
        input.size() >= prefix ? parseTpmHeader(input.subspan(prefix)) : std::nullopt;
    switch (p.status)
    {
    case FrameStatus::NeedMore:
        FUZZ_CHECK(p.needed > input.size());
        if (header)
        {
            FUZZ_CHECK(header->size >= kTpmHeaderSize && header->size <= maxSize);
            FUZZ_CHECK(p.needed == prefix + header->size);
        }
        else
        {
            FUZZ_CHECK(p.needed == prefix + kTpmHeaderSize);
        }
        break;
    case FrameStatus::Complete:
        FUZZ_CHECK(p.needed <= input.size());
        FUZZ_CHECK(header.has_value());
        FUZZ_CHECK(header->size >= kTpmHeaderSize && header->size <= maxSize);
        FUZZ_CHECK(p.needed == prefix + header->size);
        {
            // The same frame alone is still complete; one byte less is not.
            const FrameProbe alone = probeFrame(input.first(p.needed), version, maxSize);
            FUZZ_CHECK(alone.status == FrameStatus::Complete && alone.needed == p.needed &&
                       alone.prefixSize == prefix);
            const FrameProbe shorter = probeFrame(input.first(p.needed - 1), version, maxSize);
            FUZZ_CHECK(shorter.status == FrameStatus::NeedMore);
            FUZZ_CHECK(shorter.needed <= p.needed);
        }
        break;
    case FrameStatus::Oversized:
        FUZZ_CHECK(header.has_value());
        FUZZ_CHECK(header->size > maxSize);
        FUZZ_CHECK(p.needed == prefix + header->size);
        FUZZ_CHECK(p.needed - prefix > maxSize);
        break;
    case FrameStatus::Invalid:
        FUZZ_CHECK(header.has_value());
        FUZZ_CHECK(header->size < kTpmHeaderSize);
        FUZZ_CHECK(p.needed == prefix + kTpmHeaderSize);
        FUZZ_CHECK(p.needed <= input.size());
        break;
    }

    // Without a prefix both families frame identically.
    if (prefix == 0 && version == TpmVersion::Tpm2)
    {
        const FrameProbe other = probeFrame(input, TpmVersion::Tpm12, maxSize);
        FUZZ_CHECK(other.status == p.status && other.needed == p.needed && other.prefixSize == 0);
    }
}

void checkHeader(ByteView input)
{
    const auto header = parseTpmHeader(input);
    FUZZ_CHECK(header.has_value() == (input.size() >= kTpmHeaderSize));
    if (!header)
    {
        return;
    }
    ByteWriter out;
    writeTpmHeader(out, *header);
    const Bytes again = std::move(out).take();
    FUZZ_CHECK(std::ranges::equal(again, input.first(kTpmHeaderSize)));
}

void checkResponses(ByteView input)
{
    const Bytes wrapped = wrapSendCommandResponse(input);
    FUZZ_CHECK(wrapped.size() == input.size() + 8);
    ByteReader in(wrapped);
    FUZZ_CHECK(in.read<std::uint32_t>() == static_cast<std::uint32_t>(input.size()));
    FUZZ_CHECK(std::ranges::equal(in.bytes(input.size()), input));
    FUZZ_CHECK(in.read<std::uint32_t>() == 0 && in.ok() && in.remaining() == 0);

    if (input.size() >= 6)
    {
        ByteReader words(input);
        const auto code = words.read<std::uint32_t>();
        const auto type = words.read<std::uint16_t>();
        for (const TpmVersion v : {TpmVersion::Tpm12, TpmVersion::Tpm2})
        {
            const Bytes err = errorResponse(v, code);
            const FrameProbe p = probeFrame(err, v, kMaxTpmBufferSize);
            FUZZ_CHECK(p.status == FrameStatus::Complete && p.needed == kTpmHeaderSize);
            FUZZ_CHECK(parseTpmHeader(err)->code == code);
            (void)tpmCommandName(v, code);
        }
        FUZZ_CHECK(tpm2StartupCommand(type).size() == 12);
        FUZZ_CHECK(tpm2ShutdownCommand(type).size() == 12);
        FUZZ_CHECK(tpm12StartupCommand(type).size() == 12);
    }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    const ByteView input(data, size);
    for (const TpmVersion v : {TpmVersion::Tpm12, TpmVersion::Tpm2})
    {
        for (const std::size_t maxSize : kMaxSizes)
        {
            checkProbe(input, v, maxSize);
        }
    }
    checkHeader(input);
    (void)sendCommandLocality(input);
    checkResponses(input);
    return 0;
}

#include "protocol/byte_io.hpp"
#include "protocol/ctrl_messages.hpp"
#include "protocol/result_codes.hpp"
#include "test/fuzz/fuzz_target.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>

// Control-channel codec target. The input is one received control message (code + payload),
// and, separately, a candidate reply. Invariants:
//  * ctrlMessageNeeded never asks for less than the code, and a parse that succeeded never
//    needed more bytes than it was given;
//  * a parser accepts a payload exactly when the §3.1 rule (payloadSpec) says so;
//  * parse(encode(x)) == x for every parsed request and reply, and encode(x) reproduces the
//    consumed input bytes wherever the encoding is canonical.
using namespace vtpm::protocol;

namespace
{

bool sameBytes(ByteView a, ByteView b)
{
    return std::ranges::equal(a, b);
}

// The first n bytes of `input`, which must exist.
ByteView head(ByteView input, std::size_t n)
{
    FUZZ_CHECK(n <= input.size());
    return input.first(n);
}

bool ruleAccepts(const PayloadSpec& spec, std::size_t n)
{
    return spec.rule == PayloadRule::Exact ? n == spec.size : n >= spec.size;
}

void checkRequest(CtrlCode code, ByteView input)
{
    const ByteView payload = input.subspan(kCtrlCodeSize);
    const PayloadSpec spec = payloadSpec(code);
    const std::size_t needed = ctrlMessageNeeded(input);
    FUZZ_CHECK(needed >= kCtrlCodeSize);
    FUZZ_CHECK(!(spec.needsRunning && spec.needsStopped));
    FUZZ_CHECK(replyHeaderSize(code) >= kResultSize);
    bool parsed = false;

    switch (code)
    {
    case CtrlCode::Init:
        if (const auto r = parseInitRequest(payload))
        {
            parsed = true;
            const Bytes again = encodeRequest(*r);
            FUZZ_CHECK(sameBytes(again, input));
            FUZZ_CHECK(parseInitRequest(ByteView(again).subspan(4))->flags == r->flags);
        }
        break;
    case CtrlCode::SetLocality:
    case CtrlCode::ResetTpmEstablished:
        if (const auto r = parseLocalityRequest(payload))
        {
            parsed = true;
            FUZZ_CHECK(r->locality == payload[0]);
            const Bytes again = encodeRequest(code, *r);
            FUZZ_CHECK(again.size() == 8);
            FUZZ_CHECK(sameBytes(ByteView(again).first(5), head(input, 5)));
            FUZZ_CHECK(parseLocalityRequest(ByteView(again).subspan(4))->locality == r->locality);
        }
        break;
    case CtrlCode::HashData:
        if (const auto r = parseHashDataRequest(payload))
        {
            parsed = true;
            FUZZ_CHECK(needed == input.size()); // the length field covers exactly the input
            const Bytes again = encodeRequest(*r);
            FUZZ_CHECK(sameBytes(again, input));
            const auto r2 = parseHashDataRequest(ByteView(again).subspan(4));
            FUZZ_CHECK(r2 && sameBytes(r2->data, r->data));
        }
        break;
    case CtrlCode::GetStateBlob:
        if (const auto r = parseGetStateBlobRequest(payload))
        {
            parsed = true;
            const Bytes again = encodeRequest(*r);
            FUZZ_CHECK(sameBytes(again, head(input, 16)));
            const auto r2 = parseGetStateBlobRequest(ByteView(again).subspan(4));
            FUZZ_CHECK(r2 && r2->stateFlags == r->stateFlags && r2->type == r->type &&
                       r2->offset == r->offset);
        }
        break;
    case CtrlCode::SetStateBlob:
        if (const auto r = parseSetStateBlobRequest(payload))
        {
            parsed = true;
            FUZZ_CHECK(needed == input.size());
            const Bytes again = encodeRequest(*r);
            FUZZ_CHECK(sameBytes(again, input));
            const auto r2 = parseSetStateBlobRequest(ByteView(again).subspan(4));
            FUZZ_CHECK(r2 && r2->stateFlags == r->stateFlags && r2->type == r->type &&
                       sameBytes(r2->blob, r->blob));
        }
        break;
    case CtrlCode::SetBufferSize:
        if (const auto r = parseSetBufferSizeRequest(payload))
        {
            parsed = true;
            const Bytes again = encodeRequest(*r);
            FUZZ_CHECK(sameBytes(again, head(input, 8)));
            FUZZ_CHECK(parseSetBufferSizeRequest(ByteView(again).subspan(4))->bufferSize ==
                       r->bufferSize);
        }
        break;
    case CtrlCode::GetInfo:
        if (const auto r = parseGetInfoRequest(payload))
        {
            parsed = true;
            const Bytes again = encodeRequest(*r);
            FUZZ_CHECK(again.size() == 20);
            FUZZ_CHECK(sameBytes(ByteView(again).first(16), head(input, 16))); // pad is zeroed
            const auto r2 = parseGetInfoRequest(ByteView(again).subspan(4));
            FUZZ_CHECK(r2 && r2->flags == r->flags && r2->offset == r->offset);
        }
        break;
    case CtrlCode::LockStorage:
        if (const auto r = parseLockStorageRequest(payload))
        {
            parsed = true;
            const Bytes again = encodeRequest(*r);
            FUZZ_CHECK(sameBytes(again, head(input, 8)));
            FUZZ_CHECK(parseLockStorageRequest(ByteView(again).subspan(4))->retries == r->retries);
        }
        break;
    case CtrlCode::GetCapability:
    case CtrlCode::SetDataFd:
        parsed = true; // no payload check at all
        FUZZ_CHECK(sameBytes(encodeRequest(code), head(input, 4)));
        break;
    default:
        if (isEmptyPayload(payload))
        {
            parsed = true;
            FUZZ_CHECK(sameBytes(encodeRequest(code), input));
        }
        break;
    }

    if (spec.lengthPrefixed)
    {
        // Accepted exactly when the fixed part is there and the length field matches the rest.
        const bool fits = payload.size() >= spec.size &&
                          needed == input.size(); // needed = header + announced body
        FUZZ_CHECK(parsed == fits);
    }
    else
    {
        FUZZ_CHECK(parsed == ruleAccepts(spec, payload.size()));
    }
    if (parsed)
    {
        FUZZ_CHECK(needed <= input.size());
    }
    else if (!spec.lengthPrefixed)
    {
        // A rejected fixed-size payload is short (needed says so) or the wrong exact size.
        FUZZ_CHECK(needed > input.size() || spec.rule == PayloadRule::Exact ||
                   needed == kCtrlCodeSize);
    }
}

void checkReplies(ByteView input)
{
    if (const auto result = parseResult(input))
    {
        FUZZ_CHECK(sameBytes(encodeResult(*result), head(input, 4)));
    }
    else
    {
        FUZZ_CHECK(input.size() < kResultSize);
    }
    if (const auto r = parseCapabilityReply(input))
    {
        FUZZ_CHECK(sameBytes(encodeReply(*r), input));
    }
    if (const auto r = parseEstablishedReply(input))
    {
        const Bytes again = encodeReply(*r);
        FUZZ_CHECK(again.size() == kEstablishedReplySize);
        const auto r2 = parseEstablishedReply(again);
        FUZZ_CHECK(r2 && r2->result == r->result && r2->established == r->established);
    }
    if (const auto r = parseStateBlobReply(input))
    {
        const Bytes again = encodeReply(*r);
        FUZZ_CHECK(again.size() >= kStateBlobReplyHeaderSize);
        if (r->result == rc::kSuccess)
        {
            FUZZ_CHECK(sameBytes(again, input));
        }
        else
        {
            FUZZ_CHECK(r->data.empty());
            FUZZ_CHECK(again.size() == kStateBlobReplyHeaderSize);
            FUZZ_CHECK(sameBytes(ByteView(again).first(12), head(input, 12)));
        }
        const auto r2 = parseStateBlobReply(again);
        FUZZ_CHECK(r2 && r2->result == r->result && r2->stateFlags == r->stateFlags &&
                   r2->totalLength == r->totalLength && sameBytes(r2->data, r->data));
    }
    if (const auto r = parseConfigReply(input))
    {
        FUZZ_CHECK(sameBytes(encodeReply(*r), input));
    }
    if (const auto r = parseBufferSizeReply(input))
    {
        FUZZ_CHECK(sameBytes(encodeReply(*r), input));
    }
    if (const auto r = parseInfoReply(input))
    {
        const Bytes again = encodeReply(*r); // r2 borrows from it
        FUZZ_CHECK(sameBytes(again, input));
        const auto r2 = parseInfoReply(again);
        FUZZ_CHECK(r2 && r2->totalLength == r->totalLength && sameBytes(r2->chunk, r->chunk));
    }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    const ByteView input(data, size);
    const std::size_t needed = ctrlMessageNeeded(input);
    FUZZ_CHECK(needed >= kCtrlCodeSize);

    std::optional<CtrlCode> code;
    if (size >= kCtrlCodeSize)
    {
        ByteReader in(input);
        const auto wire = in.read<std::uint32_t>();
        code = ctrlCodeFromWire(wire);
        FUZZ_CHECK((ctrlCodeName(wire) == "CMD_UNKNOWN") == !code.has_value());
    }
    if (code)
    {
        checkRequest(*code, input);
    }
    else
    {
        FUZZ_CHECK(needed == kCtrlCodeSize); // truncated or unknown: just the code
    }
    checkReplies(input);
    return 0;
}

#include "state/stored_blob.hpp"

#include "protocol/blob_type.hpp"

#include <fmt/format.h>

#include <limits>
#include <stdexcept>

namespace vtpm::state
{

using protocol::ByteReader;
using protocol::Bytes;
using protocol::ByteView;
using protocol::ByteWriter;
namespace rc = protocol::rc;

namespace
{

BlobError makeError(protocol::TpmResult code, std::string message)
{
    return BlobError{.code = code, .message = std::move(message)};
}

void writeHeader(ByteWriter& out, std::uint16_t flags, std::uint32_t totLen)
{
    out.write(kBlobVersion).write(kBlobWrittenMinVersion);
    out.write(static_cast<std::uint16_t>(kBlobHeaderSize)).write(flags).write(totLen);
}

// Total length of header + TLVs with the given value sizes, or throws if it exceeds the u32
// totlen field. Inputs come from libtpms (kilobytes), so this only guards against misuse.
std::uint32_t checkedTotal(std::size_t bodySize)
{
    constexpr std::size_t kMax = std::numeric_limits<std::uint32_t>::max();
    if (bodySize > kMax - kBlobHeaderSize)
    {
        throw std::length_error("state blob too large for a 32-bit length");
    }
    return static_cast<std::uint32_t>(kBlobHeaderSize + bodySize);
}

// One protection layer of a blob (protocol.md §7.4/§7.5): either a plaintext element or an
// encrypted one. Without a key only the plaintext form can be opened; this is the single place
// where decryption will be added (tags encTag/kHmac/ivTag, key from the caller).
struct Layer
{
    std::uint16_t plainTag;
    std::string_view plainName;
    std::string_view keyName; // "state" or "migration", for messages
};

struct LayerResult
{
    ByteView value;
    std::optional<BlobError> error;
};

LayerResult openLayer(ByteView seq, std::uint8_t version, bool encrypted, const Layer& layer)
{
    if (encrypted)
    {
        return {.value = {},
                .error = makeError(rc::kKeyNotFound,
                                   fmt::format("blob is encrypted with a {} key, but no {} key "
                                               "is configured",
                                               layer.keyName, layer.keyName))};
    }
    if (version == kBlobLegacyVersion)
    {
        return {.value = seq, .error = std::nullopt}; // version 1 has no TLVs
    }
    const auto value = findTlv(seq, layer.plainTag);
    if (!value)
    {
        return {.value = {},
                .error = makeError(rc::kFail, fmt::format("blob has no {} element (tag {})",
                                                          layer.plainName, layer.plainTag))};
    }
    return {.value = *value, .error = std::nullopt};
}

constexpr Layer kStateLayer{.plainTag = tag::kData, .plainName = "DATA", .keyName = "state"};
constexpr Layer kMigrationLayer{
    .plainTag = tag::kMigrationData, .plainName = "MIGRATION_DATA", .keyName = "migration"};

} // namespace

HeaderResult parseBlobHeader(ByteView blob)
{
    HeaderResult result;
    ByteReader in(blob);
    // Braced init evaluates in order, so the fields are read front to back.
    const BlobHeader h{.version = in.read<std::uint8_t>(),
                       .minVersion = in.read<std::uint8_t>(),
                       .hdrSize = in.read<std::uint16_t>(),
                       .flags = in.read<std::uint16_t>(),
                       .totLen = in.read<std::uint32_t>()};
    if (!in.ok())
    {
        result.error = makeError(rc::kBadParameter,
                                 fmt::format("blob of {} bytes is shorter than its {}-byte header",
                                             blob.size(), kBlobHeaderSize));
        return result;
    }
    if (h.totLen != blob.size())
    {
        result.error =
            makeError(rc::kBadParameter, fmt::format("blob header says {} bytes, but there are {}",
                                                     h.totLen, blob.size()));
        return result;
    }
    if (h.minVersion > kBlobVersion)
    {
        result.error = makeError(rc::kBadVersion,
                                 fmt::format("blob needs format version {}, only {} is supported",
                                             h.minVersion, kBlobVersion));
        return result;
    }
    if (h.hdrSize != kBlobHeaderSize)
    {
        result.error = makeError(rc::kBadDataSize, fmt::format("blob header size is {}, not {}",
                                                               h.hdrSize, kBlobHeaderSize));
        return result;
    }
    if (h.version == 0)
    {
        result.error = makeError(rc::kBadVersion, "blob format version 0 does not exist");
        return result;
    }
    result.header = h;
    result.payload = in.rest();
    return result;
}

std::optional<ByteView> findTlv(ByteView seq, std::uint16_t wanted) noexcept
{
    ByteReader in(seq);
    while (in.remaining() > 0)
    {
        const auto elementTag = in.read<std::uint16_t>();
        const auto length = in.read<std::uint32_t>();
        const ByteView value = in.bytes(length);
        if (!in.ok())
        {
            return std::nullopt; // truncated element: nothing after it can be trusted
        }
        if (elementTag == wanted)
        {
            return value;
        }
    }
    return std::nullopt;
}

void appendTlv(ByteWriter& out, std::uint16_t tlvTag, ByteView value)
{
    if (value.size() > std::numeric_limits<std::uint32_t>::max())
    {
        throw std::length_error("TLV value too large for a 32-bit length");
    }
    out.write(tlvTag).write(static_cast<std::uint32_t>(value.size())).write(value);
}

Bytes encodeStoredBlob(ByteView plaintext)
{
    const std::uint32_t total = checkedTotal(kTlvHeaderSize + plaintext.size());
    ByteWriter out(total);
    writeHeader(out, 0, total);
    appendTlv(out, tag::kData, plaintext);
    return std::move(out).take();
}

DecodeResult decodeStoredBlob(ByteView blob)
{
    DecodeResult result;
    const HeaderResult parsed = parseBlobHeader(blob);
    if (parsed.error)
    {
        result.error = parsed.error;
        return result;
    }
    const bool encrypted = (parsed.header.flags & blobflag::kEncrypted) != 0;
    const LayerResult data =
        openLayer(parsed.payload, parsed.header.version, encrypted, kStateLayer);
    if (data.error)
    {
        result.error = data.error;
        return result;
    }
    result.plaintext.assign(data.value.begin(), data.value.end());
    return result;
}

MigrationBlob encodeMigrationBlob(ByteView plaintext)
{
    const std::size_t innerSize = kTlvHeaderSize + plaintext.size();
    const std::uint32_t total = checkedTotal(kTlvHeaderSize + innerSize);
    ByteWriter out(total);
    writeHeader(out, blobflag::kMigrationData, total);
    // The inner sequence is a single element, so the outer element's value can be written in
    // place: 4(len = 6 + |P|) then 1(len = |P|) then P.
    out.write(tag::kMigrationData).write(static_cast<std::uint32_t>(innerSize));
    appendTlv(out, tag::kData, plaintext);
    return MigrationBlob{.blob = std::move(out).take(), .stateFlags = 0};
}

MigrationDecodeResult decodeMigrationBlob(ByteView blob, std::uint32_t requestStateFlags)
{
    MigrationDecodeResult result;
    if (blob.empty())
    {
        result.empty = true;
        return result;
    }
    const HeaderResult parsed = parseBlobHeader(blob);
    if (parsed.error)
    {
        result.error = parsed.error;
        return result;
    }
    if (parsed.payload.empty())
    {
        result.empty = true;
        return result;
    }
    const BlobHeader& h = parsed.header;

    const LayerResult outer = openLayer(
        parsed.payload, h.version, (h.flags & blobflag::kMigrationEncrypted) != 0, kMigrationLayer);
    if (outer.error)
    {
        result.error = outer.error;
        if (outer.error->code == rc::kFail)
        {
            // The usual cause is a state file copied from disk instead of a GET_STATEBLOB
            // reply: say so, since the bare "no element" text would puzzle an operator.
            result.error->message += "; not a migration blob (a raw state file cannot be "
                                     "loaded with SET_STATEBLOB)";
        }
        return result;
    }

    // The request flag and the header flag are OR-ed, as swtpm does: QEMU passes the flag word
    // it got from the source, and either one alone means "state-key encrypted".
    const bool stateEncrypted = (requestStateFlags & protocol::stateflag::kEncrypted) != 0 ||
                                (h.flags & blobflag::kEncrypted) != 0;
    const LayerResult inner = openLayer(outer.value, h.version, stateEncrypted, kStateLayer);
    if (inner.error)
    {
        result.error = inner.error;
        return result;
    }
    result.plaintext.assign(inner.value.begin(), inner.value.end());
    return result;
}

} // namespace vtpm::state

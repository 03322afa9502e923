#include "state/stored_blob.hpp"

#include "protocol/blob_type.hpp"
#include "state/blob_crypto.hpp"

#include <fmt/format.h>
#include <openssl/crypto.h>

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

// Wipes a buffer of (possibly) plaintext state when it goes out of scope, so intermediate copies
// do not linger in freed heap memory.
class WipeOnExit
{
public:
    explicit WipeOnExit(Bytes& bytes) noexcept : bytes_(bytes) {}
    ~WipeOnExit() { OPENSSL_cleanse(bytes_.data(), bytes_.size()); }
    WipeOnExit(const WipeOnExit&) = delete;
    WipeOnExit& operator=(const WipeOnExit&) = delete;
    WipeOnExit(WipeOnExit&&) = delete;
    WipeOnExit& operator=(WipeOnExit&&) = delete;

private:
    Bytes& bytes_;
};

// One protection layer of a blob (protocol.md §7.4/§7.5): either a plaintext element or an
// encrypted one (tags in `crypt`, key from the caller).
struct Layer
{
    std::uint16_t plainTag;
    std::string_view plainName;
    std::string_view keyName; // "state" or "migration", for messages
    crypto::LayerTags crypt;
};

// The opened layer: borrowed from the input (plaintext element) or owned (decrypted).
struct LayerResult
{
    ByteView borrowed;
    Bytes owned;
    bool isOwned = false;
    std::optional<BlobError> error;

    [[nodiscard]] ByteView value() const noexcept { return isOwned ? ByteView(owned) : borrowed; }
};

LayerResult openLayer(ByteView seq, const BlobHeader& header, bool encrypted, const Key* key,
                      const Layer& layer)
{
    LayerResult result;
    if (encrypted)
    {
        if (key == nullptr)
        {
            result.error = makeError(rc::kKeyNotFound,
                                     fmt::format("blob is encrypted with a {} key, but no {} key "
                                                 "is configured",
                                                 layer.keyName, layer.keyName));
            return result;
        }
        crypto::DecryptResult decrypted =
            header.version == kBlobLegacyVersion
                ? crypto::decryptLegacyV1(seq, *key, layer.keyName)
                : crypto::decryptLayer(seq, header.flags, *key, layer.crypt, layer.keyName);
        if (decrypted.error)
        {
            result.error = std::move(decrypted.error);
            return result;
        }
        result.owned = std::move(decrypted.plaintext);
        result.isOwned = true;
        return result;
    }
    if (header.version == kBlobLegacyVersion)
    {
        result.borrowed = seq; // version 1 has no TLVs
        return result;
    }
    const auto value = findTlv(seq, layer.plainTag);
    if (!value)
    {
        result.error = makeError(rc::kFail, fmt::format("blob has no {} element (tag {})",
                                                        layer.plainName, layer.plainTag));
        return result;
    }
    result.borrowed = *value;
    return result;
}

constexpr Layer kStateLayer{.plainTag = tag::kData,
                            .plainName = "DATA",
                            .keyName = "state",
                            .crypt = crypto::kStateLayer};
constexpr Layer kMigrationLayer{.plainTag = tag::kMigrationData,
                                .plainName = "MIGRATION_DATA",
                                .keyName = "migration",
                                .crypt = crypto::kMigrationLayer};

std::uint16_t keyFlags(const Key& key, std::uint16_t encryptedFlag, std::uint16_t flag256)
{
    return static_cast<std::uint16_t>(encryptedFlag | (key.is256() ? flag256 : 0U));
}

// header ‖ body, with the total length checked.
Bytes withHeader(std::uint16_t flags, ByteView body)
{
    const std::uint32_t total = checkedTotal(body.size());
    ByteWriter out(total);
    writeHeader(out, flags, total);
    out.write(body);
    return std::move(out).take();
}

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

Bytes encodeStoredBlob(ByteView plaintext, const Key* stateKey)
{
    if (stateKey == nullptr)
    {
        const std::uint32_t total = checkedTotal(kTlvHeaderSize + plaintext.size());
        ByteWriter out(total);
        writeHeader(out, 0, total);
        appendTlv(out, tag::kData, plaintext);
        return std::move(out).take();
    }
    const std::uint32_t total = checkedTotal(crypto::encryptedSize(plaintext.size(), *stateKey));
    ByteWriter out(total);
    writeHeader(out, keyFlags(*stateKey, blobflag::kEncrypted, blobflag::kEncrypted256BitKey),
                total);
    crypto::appendEncrypted(out, plaintext, *stateKey, crypto::kStateLayer);
    if (out.size() != total)
    {
        throw std::logic_error("encrypted state blob size differs from its computed size");
    }
    return std::move(out).take();
}

DecodeResult decodeStoredBlob(ByteView blob, const Key* stateKey)
{
    DecodeResult result;
    const HeaderResult parsed = parseBlobHeader(blob);
    if (parsed.error)
    {
        result.error = parsed.error;
        return result;
    }
    const BlobHeader& h = parsed.header;
    const bool flagged = (h.flags & blobflag::kEncrypted) != 0;
    // With a key every blob is taken as encrypted (swtpm: "we assume the data are encrypted
    // when there's a key given"). A version-2 file that says it is plaintext would then fail
    // with a puzzling code, so name the real problem. Version-1 files did not always carry
    // the flag, so they are decrypted regardless.
    if (stateKey != nullptr && !flagged && h.version != kBlobLegacyVersion)
    {
        result.error = makeError(rc::kFail,
                                 "state blob is not encrypted, but a state key is configured "
                                 "(plaintext and encrypted storage are not converted "
                                 "automatically)");
        return result;
    }
    LayerResult data =
        openLayer(parsed.payload, h, stateKey != nullptr || flagged, stateKey, kStateLayer);
    if (data.error)
    {
        result.error = std::move(data.error);
        return result;
    }
    if (data.isOwned)
    {
        result.plaintext = std::move(data.owned);
    }
    else
    {
        result.plaintext.assign(data.borrowed.begin(), data.borrowed.end());
    }
    return result;
}

MigrationBlob encodeMigrationBlob(ByteView plaintext, const Key* stateKey, bool decrypted,
                                  const Key* migrationKey)
{
    MigrationBlob result;
    std::uint16_t flags = blobflag::kMigrationData;

    ByteWriter innerOut(kTlvHeaderSize + plaintext.size());
    if (stateKey != nullptr && !decrypted)
    {
        crypto::appendEncrypted(innerOut, plaintext, *stateKey, crypto::kStateLayer);
        flags |= keyFlags(*stateKey, blobflag::kEncrypted, blobflag::kEncrypted256BitKey);
        result.stateFlags = protocol::stateflag::kEncrypted;
    }
    else
    {
        appendTlv(innerOut, tag::kData, plaintext);
    }
    Bytes inner = std::move(innerOut).take();
    const WipeOnExit wipeInner(inner);

    ByteWriter bodyOut(kTlvHeaderSize + inner.size());
    if (migrationKey != nullptr)
    {
        crypto::appendEncrypted(bodyOut, inner, *migrationKey, crypto::kMigrationLayer);
        flags |= keyFlags(*migrationKey, blobflag::kMigrationEncrypted,
                          blobflag::kMigration256BitKey);
    }
    else
    {
        appendTlv(bodyOut, tag::kMigrationData, inner);
    }
    Bytes body = std::move(bodyOut).take();
    const WipeOnExit wipeBody(body);
    result.blob = withHeader(flags, body);
    return result;
}

MigrationDecodeResult decodeMigrationBlob(ByteView blob, std::uint32_t requestStateFlags,
                                          const Key* stateKey, const Key* migrationKey)
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

    const bool outerEncrypted = (h.flags & blobflag::kMigrationEncrypted) != 0;
    LayerResult outer = openLayer(parsed.payload, h, outerEncrypted, migrationKey, kMigrationLayer);
    const WipeOnExit wipeOuter(outer.owned);
    if (outer.error)
    {
        result.error = std::move(outer.error);
        if (!outerEncrypted && result.error->code == rc::kFail)
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
    LayerResult inner = openLayer(outer.value(), h, stateEncrypted, stateKey, kStateLayer);
    if (inner.error)
    {
        result.error = std::move(inner.error);
        return result;
    }
    if (inner.isOwned)
    {
        result.plaintext = std::move(inner.owned);
    }
    else
    {
        result.plaintext.assign(inner.borrowed.begin(), inner.borrowed.end());
    }
    return result;
}

} // namespace vtpm::state

#include "state/storage.hpp"

#include "state/dir_storage.hpp"
#include "state/file_storage.hpp"

#include <fmt/format.h>
#include <openssl/evp.h>

#include <algorithm>
#include <array>
#include <stdexcept>
#include <utility>

namespace vtpm::state
{

std::string_view fsyncPolicyName(FsyncPolicy policy) noexcept
{
    switch (policy)
    {
    case FsyncPolicy::Always:
        return "always";
    case FsyncPolicy::Deferred:
        return "deferred";
    case FsyncPolicy::Never:
        return "never";
    }
    return "";
}

std::optional<FsyncPolicy> parseFsyncPolicy(std::string_view text) noexcept
{
    for (FsyncPolicy policy : {FsyncPolicy::Always, FsyncPolicy::Deferred, FsyncPolicy::Never})
    {
        if (text == fsyncPolicyName(policy))
        {
            return policy;
        }
    }
    return std::nullopt;
}

StorageUri parseStorageUri(std::string_view uri)
{
    constexpr std::string_view kDir = "dir://";
    constexpr std::string_view kFile = "file://";
    StorageUri result;
    std::string_view rest;
    if (uri.starts_with(kDir))
    {
        result.kind = StorageUri::Kind::Dir;
        rest = uri.substr(kDir.size());
    }
    else if (uri.starts_with(kFile))
    {
        result.kind = StorageUri::Kind::File;
        rest = uri.substr(kFile.size());
    }
    else
    {
        throw std::invalid_argument(fmt::format(
            "backend-uri '{}': unsupported scheme (expected dir:///path or file:///path)", uri));
    }
    if (rest.empty() || rest.front() != '/')
    {
        throw std::invalid_argument(
            fmt::format("backend-uri '{}': the path must be absolute, as in {}/var/lib/...", uri,
                        uri.substr(0, uri.size() - rest.size())));
    }
    result.path = std::filesystem::path(rest).lexically_normal();
    return result;
}

std::unique_ptr<Storage> openStorage(const StorageUri& uri, const StorageOptions& options)
{
    if (uri.kind == StorageUri::Kind::File)
    {
        return std::make_unique<FileStorage>(uri.path, options);
    }
    return std::make_unique<DirStorage>(uri.path, options);
}

namespace
{

std::optional<std::array<std::uint8_t, kStorageDigestSize>> sha256(protocol::ByteView data)
{
    std::array<std::uint8_t, kStorageDigestSize> digest{};
    unsigned int size = 0;
    if (EVP_Digest(data.data(), data.size(), digest.data(), &size, EVP_sha256(), nullptr) != 1 ||
        size != digest.size())
    {
        return std::nullopt;
    }
    return digest;
}

BlobError corrupt(std::string message)
{
    return BlobError{.code = protocol::rc::kFail, .message = std::move(message)};
}

} // namespace

EncodeResult encodeForStorage(protocol::ByteView plaintext, const Key* stateKey,
                              std::string_view where)
{
    EncodeResult result;
    try
    {
        result.blob = encodeStoredBlob(plaintext, stateKey);
    }
    catch (const BlobEncryptError& e)
    {
        result.error = BlobError{.code = BlobEncryptError::code(),
                                 .message = fmt::format("{}: {}", where, e.what())};
        return result;
    }
    if (stateKey == nullptr)
    {
        const auto digest = sha256(plaintext);
        if (!digest)
        {
            result.error = BlobError{.code = protocol::rc::kFail,
                                     .message = fmt::format("{}: SHA-256 failed", where)};
            return result;
        }
        protocol::ByteWriter tail;
        appendTlv(tail, kStorageDigestTag, *digest);
        const protocol::Bytes element = std::move(tail).take();
        result.blob.insert(result.blob.end(), element.begin(), element.end());
        // Patch the header's total length (big-endian u32 at offset 6, protocol.md §7.4).
        const auto total = static_cast<std::uint32_t>(result.blob.size());
        for (std::size_t i = 0; i < 4; ++i)
        {
            result.blob.at(6 + i) = static_cast<std::uint8_t>(total >> (8U * (3 - i)));
        }
    }
    if (result.blob.size() > kMaxStateFileSize) // encryption adds up to ~100 bytes
    {
        result.blob.clear();
        result.error = BlobError{.code = protocol::rc::kFail,
                                 .message = fmt::format("{}: {} bytes of state exceed the limit",
                                                        where, plaintext.size())};
    }
    return result;
}

DecodeResult decodeFromStorage(protocol::ByteView blob, const Key* stateKey)
{
    DecodeResult decoded = decodeStoredBlob(blob, stateKey);
    if (decoded.error || stateKey != nullptr)
    {
        return decoded;
    }
    const HeaderResult header = parseBlobHeader(blob);
    if (header.error || header.header.version < kBlobVersion ||
        (header.header.flags & blobflag::kEncrypted) != 0)
    {
        return decoded; // legacy version 1: no elements to check
    }
    protocol::ByteReader in(header.payload);
    bool sawData = false;
    std::optional<protocol::ByteView> digest;
    while (in.remaining() > 0)
    {
        const auto tlvTag = in.read<std::uint16_t>();
        const auto length = in.read<std::uint32_t>();
        if (!in.ok() || length > in.remaining())
        {
            return DecodeResult{.plaintext = {},
                                .error = corrupt("an element runs past the end of the blob")};
        }
        const protocol::ByteView value = in.bytes(length);
        if (tlvTag == tag::kData && !sawData)
        {
            sawData = true;
        }
        else if (tlvTag == kStorageDigestTag && !digest)
        {
            digest = value;
        }
        else
        {
            return DecodeResult{
                .plaintext = {},
                .error = corrupt(fmt::format("unexpected element with tag {:#06x}", tlvTag))};
        }
    }
    if (digest)
    {
        // The digest covers the plaintext only; the header bytes it does not cover must be
        // exactly what encodeForStorage writes.
        if (header.header.version != kBlobVersion ||
            header.header.minVersion != kBlobWrittenMinVersion || header.header.flags != 0)
        {
            return DecodeResult{.plaintext = {},
                                .error = corrupt("unexpected blob header version or flags")};
        }
        const auto expected = sha256(decoded.plaintext);
        if (!expected || digest->size() != expected->size() ||
            !std::equal(digest->begin(), digest->end(), expected->begin()))
        {
            return DecodeResult{.plaintext = {},
                                .error = corrupt("SHA-256 of the state does not match")};
        }
    }
    return decoded;
}

} // namespace vtpm::state

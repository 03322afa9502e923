#include "state/blob_crypto.hpp"

#include "state/openssl_ptr.hpp"

#include <fmt/format.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include <algorithm>
#include <array>
#include <limits>
#include <stdexcept>

namespace vtpm::state::crypto
{

using protocol::Bytes;
using protocol::ByteView;
namespace rc = protocol::rc;

namespace
{

constexpr std::size_t kSha256Size = 32;
// OpenSSL lengths are int; stay well clear of the limit (state blobs are kilobytes anyway).
constexpr std::size_t kMaxCryptoInput = std::numeric_limits<int>::max() / 2;

using Iv = std::array<std::uint8_t, kAesBlockSize>;
using Digest = std::array<std::uint8_t, kSha256Size>;

BlobError makeError(protocol::TpmResult code, std::string message)
{
    ERR_clear_error(); // nothing in OpenSSL's queue concerns the next caller
    return BlobError{.code = code, .message = std::move(message)};
}

// A CBC context with OpenSSL's own padding off (we pad to the key length ourselves), or null.
ossl::CipherCtx newCbcCtx(const Key& key, const Iv& iv, bool encrypt)
{
    const ossl::Cipher cipher(
        EVP_CIPHER_fetch(nullptr, key.is256() ? "AES-256-CBC" : "AES-128-CBC", nullptr));
    ossl::CipherCtx ctx(EVP_CIPHER_CTX_new());
    // The context takes its own reference to the cipher, so `cipher` may go out of scope.
    if (!cipher || !ctx ||
        EVP_CipherInit_ex2(ctx.get(), cipher.get(), key.bytes().data(), iv.data(),
                           encrypt ? 1 : 0, nullptr) != 1 ||
        EVP_CIPHER_CTX_set_padding(ctx.get(), 0) != 1)
    {
        return nullptr;
    }
    return ctx;
}

// HMAC-SHA256(key, a ‖ b), or nullopt if OpenSSL fails.
std::optional<Digest> hmacSha256(const Key& key, ByteView a, ByteView b)
{
    const ossl::Mac mac(EVP_MAC_fetch(nullptr, "HMAC", nullptr));
    const ossl::MacCtx ctx(mac ? EVP_MAC_CTX_new(mac.get()) : nullptr);
    if (!ctx)
    {
        return std::nullopt;
    }
    std::array<char, 7> digestName{'S', 'H', 'A', '2', '5', '6', '\0'}; // OSSL_PARAM wants char*
    const std::array<OSSL_PARAM, 2> params{
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digestName.data(), 0),
        OSSL_PARAM_construct_end()};
    Digest out{};
    std::size_t outLen = 0;
    if (EVP_MAC_init(ctx.get(), key.bytes().data(), key.size(), params.data()) != 1 ||
        (!a.empty() && EVP_MAC_update(ctx.get(), a.data(), a.size()) != 1) ||
        (!b.empty() && EVP_MAC_update(ctx.get(), b.data(), b.size()) != 1) ||
        EVP_MAC_final(ctx.get(), out.data(), &outLen, out.size()) != 1 || outLen != out.size())
    {
        return std::nullopt;
    }
    return out;
}

std::optional<Digest> sha256(ByteView data)
{
    const ossl::Md md(EVP_MD_fetch(nullptr, "SHA256", nullptr));
    static constexpr unsigned char kNothing = 0;
    Digest out{};
    unsigned int outLen = 0;
    if (!md ||
        EVP_Digest(data.empty() ? &kNothing : data.data(), data.size(), out.data(), &outLen,
                   md.get(), nullptr) != 1 ||
        outLen != out.size())
    {
        return std::nullopt;
    }
    return out;
}

[[noreturn]] void encryptFailed(std::string_view what)
{
    ERR_clear_error();
    throw BlobEncryptError(fmt::format("state encryption failed: {}", what));
}

// AES-CBC over prefix ‖ data ‖ key-length padding. The padded plaintext is never assembled in
// one buffer: OpenSSL keeps partial blocks inside the context (and cleanses them when freed).
Bytes cbcEncrypt(ByteView prefix, ByteView data, const Key& key, const Iv& iv)
{
    const std::size_t keySize = key.size();
    if (data.size() > kMaxCryptoInput)
    {
        throw std::length_error("state blob too large to encrypt");
    }
    const std::size_t plainSize = prefix.size() + data.size();
    const std::size_t padSize = keySize - plainSize % keySize; // 1..K, never 0
    std::array<std::uint8_t, kAes256KeySize> pad{};
    std::fill_n(pad.begin(), padSize, static_cast<std::uint8_t>(padSize));

    const ossl::CipherCtx ctx = newCbcCtx(key, iv, true);
    if (!ctx)
    {
        encryptFailed("cannot set up AES-CBC");
    }
    Bytes out(plainSize + padSize);
    std::size_t done = 0;
    for (const ByteView part : {prefix, data, ByteView(pad).first(padSize)})
    {
        if (part.empty())
        {
            continue;
        }
        int written = 0;
        if (EVP_EncryptUpdate(ctx.get(), out.data() + done, &written, part.data(),
                              static_cast<int>(part.size())) != 1 ||
            written < 0)
        {
            encryptFailed("EVP_EncryptUpdate");
        }
        done += static_cast<std::size_t>(written);
    }
    int written = 0;
    if (EVP_EncryptFinal_ex(ctx.get(), out.data() + done, &written) != 1 || written < 0 ||
        done + static_cast<std::size_t>(written) != out.size())
    {
        encryptFailed("EVP_EncryptFinal_ex");
    }
    return out;
}

// AES-CBC decryption and removal of the key-length padding.
DecryptResult cbcDecrypt(ByteView ciphertext, const Key& key, const Iv& iv,
                         std::string_view keyName)
{
    DecryptResult result;
    const std::size_t keySize = key.size();
    if (ciphertext.size() < keySize)
    {
        result.error = makeError(rc::kDecryptError,
                                 fmt::format("encrypted data of {} bytes is shorter than the {} "
                                             "key ({} bytes)",
                                             ciphertext.size(), keyName, keySize));
        return result;
    }
    if (ciphertext.size() % kAesBlockSize != 0 || ciphertext.size() > kMaxCryptoInput)
    {
        result.error = makeError(
            rc::kFail, fmt::format("encrypted data of {} bytes is not a whole number of AES "
                                   "blocks",
                                   ciphertext.size()));
        return result;
    }
    const ossl::CipherCtx ctx = newCbcCtx(key, iv, false);
    Bytes out(ciphertext.size());
    int first = 0;
    int second = 0;
    if (!ctx ||
        EVP_DecryptUpdate(ctx.get(), out.data(), &first, ciphertext.data(),
                          static_cast<int>(ciphertext.size())) != 1 ||
        first < 0 ||
        EVP_DecryptFinal_ex(ctx.get(), out.data() + first, &second) != 1 || second < 0 ||
        static_cast<std::size_t>(first) + static_cast<std::size_t>(second) != out.size())
    {
        OPENSSL_cleanse(out.data(), out.size());
        result.error = makeError(rc::kFail, "AES-CBC decryption failed inside OpenSSL");
        return result;
    }
    // The MAC was checked before we get here (version 2), so padding is no oracle; for v1 the
    // hash check follows. Either way a bad pad means wrong key or damaged data.
    const std::size_t padSize = out.back();
    const bool padOk =
        padSize >= 1 && padSize <= keySize &&
        std::all_of(out.end() - static_cast<std::ptrdiff_t>(padSize), out.end(),
                    [padSize](std::uint8_t b) { return b == padSize; });
    if (!padOk)
    {
        OPENSSL_cleanse(out.data(), out.size());
        result.error = makeError(
            rc::kDecryptError,
            fmt::format("bad padding after decryption: wrong {} key or damaged data", keyName));
        return result;
    }
    out.resize(out.size() - padSize);
    result.plaintext = std::move(out);
    return result;
}

} // namespace

std::size_t encryptedSize(std::size_t n, const Key& key) noexcept
{
    const std::size_t keySize = key.size() == 0 ? kAes128KeySize : key.size();
    const std::size_t cipherSize = n + (keySize - n % keySize);
    return 3 * kTlvHeaderSize + cipherSize + kHmacSize + keySize;
}

void appendEncrypted(protocol::ByteWriter& out, ByteView plaintext, const Key& key,
                     const LayerTags& layer)
{
    if (key.size() != kAes128KeySize && key.size() != kAes256KeySize)
    {
        encryptFailed("no usable key (moved-from Key?)");
    }
    // swtpm writes an IV element as long as the key; only its first 16 bytes feed CBC, but the
    // MAC covers all of it.
    std::array<std::uint8_t, kAes256KeySize> ivValue{};
    const auto ivSpan = std::span(ivValue).first(key.size());
    if (RAND_bytes(ivSpan.data(), static_cast<int>(ivSpan.size())) != 1)
    {
        encryptFailed("RAND_bytes");
    }
    Iv iv{};
    std::copy_n(ivValue.begin(), iv.size(), iv.begin());

    const Bytes ciphertext = cbcEncrypt({}, plaintext, key, iv);
    const auto mac = hmacSha256(key, ciphertext, ivSpan);
    if (!mac)
    {
        encryptFailed("HMAC-SHA256");
    }
    appendTlv(out, layer.dataTag, ciphertext);
    appendTlv(out, tag::kHmac, *mac);
    appendTlv(out, layer.ivTag, ivSpan);
}

DecryptResult decryptLayer(ByteView seq, std::uint16_t headerFlags, const Key& key,
                           const LayerTags& layer, std::string_view keyName)
{
    DecryptResult result;
    const bool wants256 = (headerFlags & layer.flag256) != 0;
    if (key.size() != (wants256 ? kAes256KeySize : kAes128KeySize))
    {
        result.error = makeError(
            rc::kBadKeyProperty,
            fmt::format("blob was encrypted with an AES-{} {} key, but the configured {} key "
                        "is AES-{}",
                        wants256 ? 256 : 128, keyName, keyName, key.size() * 8));
        return result;
    }
    const auto hmac = findTlv(seq, tag::kHmac);
    const auto data = findTlv(seq, layer.dataTag);
    if (!hmac || !data)
    {
        result.error = makeError(
            rc::kFail, fmt::format("encrypted blob lacks its {} element (tag {})",
                                   !data ? "encrypted data" : "HMAC",
                                   !data ? layer.dataTag : tag::kHmac));
        return result;
    }
    const auto ivValue = findTlv(seq, layer.ivTag);
    Iv iv{}; // no IV element: swtpm's oldest v2 files used a zero IV
    if (ivValue)
    {
        if (ivValue->size() < iv.size())
        {
            result.error = makeError(rc::kDecryptError,
                                     fmt::format("IV element has {} bytes, fewer than {}",
                                                 ivValue->size(), iv.size()));
            return result;
        }
        std::copy_n(ivValue->begin(), iv.size(), iv.begin());
    }
    if (hmac->size() < kHmacSize)
    {
        result.error = makeError(rc::kFail, fmt::format("HMAC element has {} bytes, not {}",
                                                        hmac->size(), kHmacSize));
        return result;
    }
    const auto expected = hmacSha256(key, *data, ivValue.value_or(ByteView{}));
    if (!expected)
    {
        result.error = makeError(rc::kFail, "HMAC-SHA256 computation failed inside OpenSSL");
        return result;
    }
    if (CRYPTO_memcmp(expected->data(), hmac->data(), kHmacSize) != 0)
    {
        result.error = makeError(
            rc::kDecryptError,
            fmt::format("HMAC mismatch: wrong {} key, or the blob was modified", keyName));
        return result;
    }
    return cbcDecrypt(*data, key, iv, keyName);
}

DecryptResult decryptLegacyV1(ByteView payload, const Key& key, std::string_view keyName)
{
    DecryptResult result = cbcDecrypt(payload, key, Iv{}, keyName);
    if (result.error)
    {
        return result;
    }
    Bytes& plain = result.plaintext;
    const auto fail = [&result](std::string message)
    {
        OPENSSL_cleanse(result.plaintext.data(), result.plaintext.size());
        result.plaintext.clear();
        result.error = makeError(rc::kFail, std::move(message));
        return std::move(result);
    };
    if (plain.size() < kSha256Size)
    {
        return fail("version-1 encrypted blob is too short to hold its SHA-256");
    }
    const ByteView body = ByteView(plain).subspan(kSha256Size);
    const auto digest = sha256(body);
    if (!digest)
    {
        return fail("SHA-256 computation failed inside OpenSSL");
    }
    if (CRYPTO_memcmp(digest->data(), plain.data(), kSha256Size) != 0)
    {
        return fail(fmt::format("version-1 blob hash mismatch: wrong {} key or damaged data",
                                keyName));
    }
    plain.erase(plain.begin(), plain.begin() + static_cast<std::ptrdiff_t>(kSha256Size));
    return result;
}

Bytes encryptLegacyV1(ByteView plaintext, const Key& key)
{
    const auto digest = sha256(plaintext);
    if (!digest)
    {
        encryptFailed("SHA-256");
    }
    return cbcEncrypt(*digest, plaintext, key, Iv{});
}

} // namespace vtpm::state::crypto

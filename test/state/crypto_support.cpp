#include "crypto_support.hpp"

#include "state/openssl_ptr.hpp"
#include "state/stored_blob.hpp"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <array>
#include <numeric>
#include <stdexcept>

namespace vtpm::state::test
{

using protocol::Bytes;
using protocol::ByteView;

namespace
{

Key keyFromIota(std::size_t n, std::uint8_t first)
{
    std::array<std::uint8_t, 32> raw{};
    std::iota(raw.begin(), raw.end(), first);
    return Key::fromBytes(ByteView(raw).first(n));
}

} // namespace

Key testKey128()
{
    return keyFromIota(16, 0x00);
}

Key testKey128b()
{
    return keyFromIota(16, 0x80);
}

Key testKey256()
{
    return keyFromIota(32, 0x20);
}

Bytes samplePlaintext(std::size_t n, std::uint8_t seed)
{
    Bytes out(n);
    std::uint32_t x = 0x9e3779b9U * (seed + 1U);
    for (auto& b : out)
    {
        x = x * 1664525U + 1013904223U;
        b = static_cast<std::uint8_t>(x >> 24U);
    }
    return out;
}

Bytes rawCbc(bool encrypt, const Key& key, ByteView iv16, ByteView input)
{
    if (iv16.size() != 16 || input.size() % 16 != 0)
    {
        throw std::invalid_argument("rawCbc: bad IV or input size");
    }
    const ossl::CipherCtx ctx(EVP_CIPHER_CTX_new());
    const EVP_CIPHER* cipher = key.is256() ? EVP_aes_256_cbc() : EVP_aes_128_cbc();
    Bytes out(input.size() + 16);
    int n1 = 0;
    int n2 = 0;
    if (!ctx ||
        EVP_CipherInit_ex(ctx.get(), cipher, nullptr, key.bytes().data(), iv16.data(),
                          encrypt ? 1 : 0) != 1 ||
        EVP_CIPHER_CTX_set_padding(ctx.get(), 0) != 1 ||
        EVP_CipherUpdate(ctx.get(), out.data(), &n1, input.data(),
                         static_cast<int>(input.size())) != 1 ||
        EVP_CipherFinal_ex(ctx.get(), out.data() + n1, &n2) != 1)
    {
        throw std::runtime_error("rawCbc: OpenSSL failed");
    }
    out.resize(static_cast<std::size_t>(n1 + n2));
    return out;
}

Bytes hmacSha256(const Key& key, ByteView a, ByteView b)
{
    const Bytes data = concat({a, b});
    Bytes out(32);
    unsigned int len = 0;
    if (HMAC(EVP_sha256(), key.bytes().data(), static_cast<int>(key.size()), data.data(),
             data.size(), out.data(), &len) == nullptr ||
        len != 32)
    {
        throw std::runtime_error("HMAC failed");
    }
    return out;
}

Bytes padToKey(ByteView plaintext, std::size_t keySize)
{
    Bytes out(plaintext.begin(), plaintext.end());
    const std::size_t pad = keySize - plaintext.size() % keySize;
    out.insert(out.end(), pad, static_cast<std::uint8_t>(pad));
    return out;
}

Bytes withBlobHeader(std::uint16_t flags, ByteView body, std::uint8_t version)
{
    protocol::ByteWriter w;
    w.write(version).write(std::uint8_t{1}).write(std::uint16_t{10}).write(flags);
    w.write(static_cast<std::uint32_t>(10 + body.size())).write(body);
    return std::move(w).take();
}

Bytes tlv(std::uint16_t tag, ByteView value)
{
    protocol::ByteWriter w;
    appendTlv(w, tag, value);
    return std::move(w).take();
}

Bytes concat(std::initializer_list<ByteView> parts)
{
    Bytes out;
    for (const ByteView p : parts)
    {
        out.insert(out.end(), p.begin(), p.end());
    }
    return out;
}

Bytes fromHex(std::string_view hex)
{
    Bytes out;
    const auto nibble = [](char c)
    {
        return static_cast<std::uint8_t>(c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
    };
    for (std::size_t i = 0; i + 1 < hex.size(); i += 2)
    {
        out.push_back(static_cast<std::uint8_t>((nibble(hex[i]) << 4U) | nibble(hex[i + 1])));
    }
    return out;
}

std::vector<std::uint16_t> tlvTags(ByteView seq)
{
    std::vector<std::uint16_t> tags;
    protocol::ByteReader in(seq);
    while (in.remaining() > 0)
    {
        const auto t = in.read<std::uint16_t>();
        const auto len = in.read<std::uint32_t>();
        in.skip(len);
        if (!in.ok())
        {
            break;
        }
        tags.push_back(t);
    }
    return tags;
}

} // namespace vtpm::state::test

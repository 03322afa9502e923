#pragma once

#include "protocol/byte_io.hpp"
#include "state/key.hpp"

#include <cstdint>
#include <string_view>

// Independent building blocks for the encryption tests: blobs are assembled here with raw
// OpenSSL calls (not through state/blob_crypto), so a mistake shared by our encoder and decoder
// cannot cancel itself out, and malformed-but-authenticated blobs can be built.
namespace vtpm::state::test
{

// Keys with fixed, recognisable bytes: 0x00..0x0f and 0x20..0x3f (and a second 128-bit one).
Key testKey128();
Key testKey128b();
Key testKey256();

// Deterministic pseudo-random plaintext of n bytes.
protocol::Bytes samplePlaintext(std::size_t n, std::uint8_t seed = 1);

// Raw AES-CBC with no padding (input must be whole blocks); iv16 = 16 bytes.
protocol::Bytes rawCbc(bool encrypt, const Key& key, protocol::ByteView iv16,
                       protocol::ByteView input);

// HMAC-SHA256(key, a ‖ b).
protocol::Bytes hmacSha256(const Key& key, protocol::ByteView a, protocol::ByteView b);

// plaintext ‖ swtpm key-length padding.
protocol::Bytes padToKey(protocol::ByteView plaintext, std::size_t keySize);

// header(version, min 1, hdrsize 10, flags, totlen) ‖ body.
protocol::Bytes withBlobHeader(std::uint16_t flags, protocol::ByteView body,
                               std::uint8_t version = 2);

// One TLV element.
protocol::Bytes tlv(std::uint16_t tag, protocol::ByteView value);

// Concatenation.
protocol::Bytes concat(std::initializer_list<protocol::ByteView> parts);

// Hex decoding of a literal (test vectors).
protocol::Bytes fromHex(std::string_view hex);

// The TLV tags in the order they appear in seq (stops at a truncated element).
std::vector<std::uint16_t> tlvTags(protocol::ByteView seq);

} // namespace vtpm::state::test

#pragma once

#include "protocol/byte_io.hpp"
#include "state/key.hpp"
#include "state/stored_blob.hpp"

#include <cstdint>
#include <optional>

// The encryption layer of swtpm's blob format (protocol.md §7.4 "Encryption scheme"), shared
// by the state key (tags 2/3/6) and the migration key (tags 5/3/7):
//   IV   = K fresh random bytes (K = key length, 16 or 32); the first 16 are the CBC IV;
//   pad  = p = K − (len mod K) bytes of value p (key-length padding, not PKCS#7 by block);
//   ct   = AES-128/256-CBC(key, IV, plaintext ‖ pad), no further padding;
//   mac  = HMAC-SHA256(key, ct ‖ whole IV TLV value).
// Plus read support for legacy version-1 payloads: AES-CBC with a zero IV over
// SHA-256(plaintext) ‖ plaintext. Result codes follow swtpm so callers can return them as is.
namespace vtpm::state::crypto
{

// The tags and header flag bit of one encryption layer.
struct LayerTags
{
    std::uint16_t dataTag;
    std::uint16_t ivTag;
    std::uint16_t flag256; // header bit saying "this layer's key is AES-256"
};

inline constexpr LayerTags kStateLayer{.dataTag = tag::kEncryptedData,
                                       .ivTag = tag::kIvecEncryptedData,
                                       .flag256 = blobflag::kEncrypted256BitKey};
inline constexpr LayerTags kMigrationLayer{.dataTag = tag::kEncryptedMigrationData,
                                           .ivTag = tag::kIvecEncryptedMigrationData,
                                           .flag256 = blobflag::kMigration256BitKey};

inline constexpr std::size_t kHmacSize = 32;
inline constexpr std::size_t kAesBlockSize = 16;

// Appends dataTag(ciphertext), 3(hmac), ivTag(iv) — swtpm's order — to out. Throws
// BlobEncryptError if OpenSSL fails (including the random generator) and std::length_error if
// the plaintext is too large for OpenSSL's int lengths.
void appendEncrypted(protocol::ByteWriter& out, protocol::ByteView plaintext, const Key& key,
                     const LayerTags& layer);

// Size appendEncrypted adds for a plaintext of n bytes.
[[nodiscard]] std::size_t encryptedSize(std::size_t n, const Key& key) noexcept;

struct DecryptResult
{
    protocol::Bytes plaintext;
    std::optional<BlobError> error;
};

// Opens a version-2 encrypted layer from the TLV sequence seq, in swtpm's order of checks:
// header 256-bit flag ≠ key size → kBadKeyProperty; HMAC or data element missing → kFail;
// IV element shorter than 16 bytes → kDecryptError (absent: zero IV, MAC over ciphertext only);
// HMAC element shorter than 32 bytes → kFail; MAC mismatch (constant time) → kDecryptError;
// ciphertext shorter than the key → kDecryptError, not whole AES blocks → kFail; bad padding →
// kDecryptError. keyName ("state"/"migration") goes into messages. Never throws for bad bytes.
DecryptResult decryptLayer(protocol::ByteView seq, std::uint16_t headerFlags, const Key& key,
                           const LayerTags& layer, std::string_view keyName);

// Opens a version-1 encrypted payload (the whole payload is ciphertext; no TLVs, no MAC, no
// key-size flag). Padding errors → kDecryptError; hash mismatch → kFail (as swtpm).
DecryptResult decryptLegacyV1(protocol::ByteView payload, const Key& key,
                              std::string_view keyName);

// Builds a version-1 encrypted payload. Test/fuzz support only: nobody writes v1 any more.
protocol::Bytes encryptLegacyV1(protocol::ByteView plaintext, const Key& key);

} // namespace vtpm::state::crypto

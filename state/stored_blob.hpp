#pragma once

#include "protocol/byte_io.hpp"
#include "protocol/result_codes.hpp"
#include "state/key.hpp"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>

// swtpm's blob container (protocol.md §7.4, §7.5): a 10-byte big-endian header followed by a
// sequence of tag-length-value elements. The same container is used for state files on disk and
// for the GET/SET_STATEBLOB migration stream, so both codecs live here, free of any file I/O.
//
// Keys are optional, defaulted arguments: without them the codecs handle plaintext only. The
// encryption layer itself (AES-CBC + HMAC-SHA256, §7.4) lives in state/blob_crypto.*.
namespace vtpm::state
{

// TLV tags (protocol.md §7.4).
namespace tag
{
inline constexpr std::uint16_t kData = 1;                   // plaintext
inline constexpr std::uint16_t kEncryptedData = 2;          // ciphertext under the state key
inline constexpr std::uint16_t kHmac = 3;                   // HMAC-SHA256 over ciphertext ‖ IV
inline constexpr std::uint16_t kMigrationData = 4;          // inner TLV sequence, unencrypted
inline constexpr std::uint16_t kEncryptedMigrationData = 5; // inner sequence, migration key
inline constexpr std::uint16_t kIvecEncryptedData = 6;      // IV for tag 2
inline constexpr std::uint16_t kIvecEncryptedMigrationData = 7; // IV for tag 5
} // namespace tag

// Header flag bits (protocol.md §7.4).
namespace blobflag
{
inline constexpr std::uint16_t kEncrypted = 0x01;
inline constexpr std::uint16_t kMigrationEncrypted = 0x02;
inline constexpr std::uint16_t kMigrationData = 0x04;
inline constexpr std::uint16_t kEncrypted256BitKey = 0x08;
inline constexpr std::uint16_t kMigration256BitKey = 0x10;
} // namespace blobflag

inline constexpr std::size_t kBlobHeaderSize = 10;
inline constexpr std::uint8_t kBlobVersion = 2;           // the TLV format; what we write
inline constexpr std::uint8_t kBlobWrittenMinVersion = 1; // what swtpm 0.7.1 writes (verified)
inline constexpr std::uint8_t kBlobLegacyVersion = 1;     // payload is the raw plaintext
inline constexpr std::size_t kTlvHeaderSize = 6;          // tag u16 + length u32

// Why a blob was rejected: the TPM result code swtpm would report plus a message for the log.
struct BlobError
{
    protocol::TpmResult code = protocol::rc::kFail;
    std::string message;
};

struct BlobHeader
{
    std::uint8_t version = 0;
    std::uint8_t minVersion = 0;
    std::uint16_t hdrSize = 0;
    std::uint16_t flags = 0;
    std::uint32_t totLen = 0;
};

// A validated header and the bytes after it (borrowed from the input). error is set instead
// when the header is rejected; header and payload are then meaningless.
struct HeaderResult
{
    BlobHeader header;
    protocol::ByteView payload;
    std::optional<BlobError> error;
};

// Checks the header in the order swtpm does, so the same input gives the same code: length
// < 10 or totlen ≠ length → kBadParameter, min_version > 2 → kBadVersion, hdrsize ≠ 10 →
// kBadDataSize. A version byte of 0 (never written by anyone) → kBadVersion.
HeaderResult parseBlobHeader(protocol::ByteView blob);

// Value of the FIRST element with the wanted tag; nullopt if there is none, or if the scan
// meets an element that runs past the end of seq before finding it.
std::optional<protocol::ByteView> findTlv(protocol::ByteView seq, std::uint16_t wanted) noexcept;

// Appends one element. Throws std::length_error if value does not fit a u32 length.
void appendTlv(protocol::ByteWriter& out, std::uint16_t tlvTag, protocol::ByteView value);

// Encryption failed inside OpenSSL (random generator, cipher or MAC): the caller must not write
// anything. code() is the TPM result swtpm reports for this (TPM_ENCRYPT_ERROR).
class BlobEncryptError : public std::runtime_error
{
public:
    using std::runtime_error::runtime_error;
    [[nodiscard]] static constexpr protocol::TpmResult code() noexcept
    {
        return protocol::rc::kEncryptError;
    }
};

// Result of decoding a stored blob: plaintext, or error (then plaintext is empty).
struct DecodeResult
{
    protocol::Bytes plaintext;
    std::optional<BlobError> error;

    [[nodiscard]] bool ok() const noexcept { return !error.has_value(); }
};

// Storage format (§7.4), header version 2, min version 1:
//  * no state key: flags 0, 1(plaintext);
//  * state key: flags ENCRYPTED (| ENCRYPTED_256BIT_KEY), 2(ciphertext) 3(hmac) 6(iv), with a
//    fresh random IV of key length.
// Throws std::length_error if the result cannot be described by a u32 total length, and
// BlobEncryptError if encryption fails.
protocol::Bytes encodeStoredBlob(protocol::ByteView plaintext, const Key* stateKey = nullptr);

// Inverse of encodeStoredBlob for untrusted input; never throws for bad bytes.
//  * no state key: a blob flagged ENCRYPTED → kKeyNotFound; version 1 → the raw payload;
//    version 2 without a DATA element → kFail;
//  * state key: the blob must be encrypted — a version-2 blob without the ENCRYPTED flag (a
//    plaintext file) → kFail, as there is no silent switch between plain and encrypted
//    storage; then decryption as crypto::decryptLayer (kBadKeyProperty, kDecryptError, kFail).
//    Version 1 payloads are decrypted as legacy v1 (zero IV, SHA-256 prefix).
DecodeResult decodeStoredBlob(protocol::ByteView blob, const Key* stateKey = nullptr);

// GET_STATEBLOB reply body plus the reply's state_flags (protocol.md §3.12).
struct MigrationBlob
{
    protocol::Bytes blob;
    std::uint32_t stateFlags = 0;
};

// Migration format (GET_STATEBLOB, §7.5). Inner layer I: state-key encrypted — 2 3 6, header
// ENCRYPTED (| 256BIT), stateFlags = stateflag::kEncrypted — if stateKey is set and `decrypted`
// is false (the request's DECRYPTED bit clear); otherwise 1(plaintext), stateFlags 0. Outer
// layer: 5(enc(I)) 3 7 with MIGRATION_ENCRYPTED (| MIGRATION_256BIT_KEY) if migrationKey is
// set, else 4(I). MIGRATION_DATA is always set. No keys: header(0x0004) ‖ 4(1(plaintext)).
// Throws like encodeStoredBlob.
MigrationBlob encodeMigrationBlob(protocol::ByteView plaintext, const Key* stateKey = nullptr,
                                  bool decrypted = true, const Key* migrationKey = nullptr);

// Outcome of parsing a SET_STATEBLOB body. Exactly one of: error set; empty (a zero-length or
// header-only blob, which tells libtpms to drop any cached blob of that type); plaintext.
struct MigrationDecodeResult
{
    protocol::Bytes plaintext;
    bool empty = false;
    std::optional<BlobError> error;

    [[nodiscard]] bool ok() const noexcept { return !error.has_value(); }
};

// Parses a SET_STATEBLOB body (protocol.md §7.5, §3.13). Outer layer: header flag
// MIGRATION_ENCRYPTED → needs migrationKey (else kKeyNotFound) and tags 5/3/7; otherwise TLV 4
// (accepted even when a migration key is configured, as swtpm does). Inner layer:
// requestStateFlags' ENCRYPTED bit or the header's ENCRYPTED flag → needs stateKey (else
// kKeyNotFound) and tags 2/3/6; otherwise TLV 1. Missing TLVs (including a raw storage file,
// which lacks the MIGRATION_DATA layer) → kFail; wrong key size → kBadKeyProperty; MAC or
// padding failure → kDecryptError; header errors as parseBlobHeader. Never throws for bad bytes.
MigrationDecodeResult decodeMigrationBlob(protocol::ByteView blob, std::uint32_t requestStateFlags,
                                          const Key* stateKey = nullptr,
                                          const Key* migrationKey = nullptr);

} // namespace vtpm::state

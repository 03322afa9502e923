#pragma once

#include "protocol/byte_io.hpp"
#include "protocol/result_codes.hpp"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

// swtpm's blob container (protocol.md §7.4, §7.5): a 10-byte big-endian header followed by a
// sequence of tag-length-value elements. The same container is used for state files on disk and
// for the GET/SET_STATEBLOB migration stream, so both codecs live here, free of any file I/O.
//
// Only plaintext is implemented. The shapes are chosen so state/migration encryption (AES-CBC +
// HMAC-SHA256, §7.4) can be added without touching callers: every decode already returns the
// TPM result code the encrypted paths need (kKeyNotFound, kBadKeyProperty, kDecryptError), and
// keys will arrive as an extra, defaulted argument.
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

// Result of decoding a stored blob: plaintext, or error (then plaintext is empty).
struct DecodeResult
{
    protocol::Bytes plaintext;
    std::optional<BlobError> error;

    [[nodiscard]] bool ok() const noexcept { return !error.has_value(); }
};

// Storage format, no state key: header(version 2, min 1, flags 0) ‖ 1(plaintext).
// Throws std::length_error if the plaintext cannot be described by a u32 total length.
protocol::Bytes encodeStoredBlob(protocol::ByteView plaintext);

// Inverse of encodeStoredBlob for untrusted input; never throws for bad bytes. Version 1
// blobs are the raw plaintext after the header. With no state key configured (the only mode
// so far) a blob flagged ENCRYPTED gives kKeyNotFound, one without a DATA element kFail.
DecodeResult decodeStoredBlob(protocol::ByteView blob);

// GET_STATEBLOB reply body plus the reply's state_flags (protocol.md §3.12).
struct MigrationBlob
{
    protocol::Bytes blob;
    std::uint32_t stateFlags = 0;
};

// Migration format, no keys: header(flags MIGRATION_DATA) ‖ 4(1(plaintext)); stateFlags 0.
MigrationBlob encodeMigrationBlob(protocol::ByteView plaintext);

// Outcome of parsing a SET_STATEBLOB body. Exactly one of: error set; empty (a zero-length or
// header-only blob, which tells libtpms to drop any cached blob of that type); plaintext.
struct MigrationDecodeResult
{
    protocol::Bytes plaintext;
    bool empty = false;
    std::optional<BlobError> error;

    [[nodiscard]] bool ok() const noexcept { return !error.has_value(); }
};

// Parses a SET_STATEBLOB body (protocol.md §7.5, §3.13). requestStateFlags is the request's
// state_flags word: its ENCRYPTED bit, like the header's, says the inner layer needs the state
// key. Missing keys → kKeyNotFound; missing TLVs (including a raw storage file, which lacks the
// MIGRATION_DATA layer) → kFail; header errors as parseBlobHeader.
MigrationDecodeResult decodeMigrationBlob(protocol::ByteView blob, std::uint32_t requestStateFlags);

} // namespace vtpm::state

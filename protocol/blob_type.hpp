#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string_view>

// The three state blobs of a TPM and the flag words that travel with them on the control
// channel (GET/SET_STATEBLOB) and in stored blob headers (protocol.md §3.12, §3.13, §6.1, §7.4).
namespace vtpm::protocol
{

enum class BlobType : std::uint32_t
{
    Permanent = 1, // "permall"
    Volatile = 2,  // "volatilestate"
    SaveState = 3, // "savestate" (TPM 1.2 only)
};

inline constexpr std::array kAllBlobTypes{BlobType::Permanent, BlobType::Volatile,
                                          BlobType::SaveState};

// Wire value 1..3 to enum; anything else is not a blob type.
inline constexpr std::optional<BlobType> blobTypeFromWire(std::uint32_t v) noexcept
{
    if (v < 1 || v > 3)
    {
        return std::nullopt;
    }
    return static_cast<BlobType>(v);
}

// The storage name used in file names and libtpms callbacks (tpm_nvfilename.h).
inline constexpr std::string_view blobName(BlobType t) noexcept
{
    switch (t)
    {
    case BlobType::Permanent:
        return "permall";
    case BlobType::Volatile:
        return "volatilestate";
    case BlobType::SaveState:
        return "savestate";
    }
    return "";
}

inline constexpr std::optional<BlobType> blobTypeFromName(std::string_view name) noexcept
{
    for (BlobType t : kAllBlobTypes)
    {
        if (blobName(t) == name)
        {
            return t;
        }
    }
    return std::nullopt;
}

// state_flags of GET/SET_STATEBLOB requests and replies.
namespace stateflag
{
inline constexpr std::uint32_t kDecrypted = 0x1; // request: do not leave state-key encryption on
inline constexpr std::uint32_t kEncrypted = 0x2; // reply/request: inner payload state-key encrypted
} // namespace stateflag

} // namespace vtpm::protocol

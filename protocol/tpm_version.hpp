#pragma once

#include <string_view>

namespace vtpm::protocol
{

// The TPM personality a daemon emulates; fixed for the life of the process (--tpm2 or not).
enum class TpmVersion
{
    Tpm12,
    Tpm2,
};

inline constexpr std::string_view versionName(TpmVersion v) noexcept
{
    return v == TpmVersion::Tpm2 ? "2.0" : "1.2";
}

} // namespace vtpm::protocol

#pragma once

#include "protocol/byte_io.hpp"

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

// Test helpers: byte vectors written as the hex dumps of protocol.md ("00 00 00 02 ...").
namespace vtpm::test
{

inline protocol::Bytes hex(std::string_view text)
{
    protocol::Bytes out;
    int high = -1;
    for (const char c : text)
    {
        int nibble = -1;
        if (c >= '0' && c <= '9')
        {
            nibble = c - '0';
        }
        else if (c >= 'a' && c <= 'f')
        {
            nibble = c - 'a' + 10;
        }
        else if (c >= 'A' && c <= 'F')
        {
            nibble = c - 'A' + 10;
        }
        else if (c == ' ' || c == '\n')
        {
            continue;
        }
        else
        {
            throw std::invalid_argument("bad hex digit in test vector");
        }
        if (high < 0)
        {
            high = nibble;
        }
        else
        {
            out.push_back(static_cast<std::uint8_t>((high << 4) | nibble));
            high = -1;
        }
    }
    if (high >= 0)
    {
        throw std::invalid_argument("odd number of hex digits in test vector");
    }
    return out;
}

inline std::string toHex(protocol::ByteView bytes)
{
    static constexpr std::string_view kDigits = "0123456789abcdef";
    std::string out;
    for (const std::uint8_t b : bytes)
    {
        if (!out.empty())
        {
            out += ' ';
        }
        out += kDigits[b >> 4U];
        out += kDigits[b & 0xfU];
    }
    return out;
}

inline protocol::Bytes toBytes(std::string_view text)
{
    return {text.begin(), text.end()};
}

inline protocol::Bytes concat(protocol::ByteView a, protocol::ByteView b)
{
    protocol::Bytes out(a.begin(), a.end());
    out.insert(out.end(), b.begin(), b.end());
    return out;
}

} // namespace vtpm::test

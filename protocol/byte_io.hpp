#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

// Bounds-checked big-endian access to untrusted bytes. Every wire and file format in vtpmd is
// read through ByteReader, so no parser does pointer arithmetic or casts bytes onto structs.
namespace vtpm::protocol
{

using Bytes = std::vector<std::uint8_t>;
using ByteView = std::span<const std::uint8_t>;

class ByteReader
{
public:
    explicit ByteReader(ByteView data) noexcept : data_(data) {}

    // Reads a big-endian integer; on underflow returns 0 and the reader stays failed (sticky),
    // so callers check ok() once after a group of reads.
    template <std::unsigned_integral T>
    T read() noexcept
    {
        if (!take(sizeof(T)))
        {
            return 0;
        }
        T value = 0;
        for (std::uint8_t byte : data_.subspan(pos_ - sizeof(T), sizeof(T)))
        {
            value = static_cast<T>((static_cast<std::uintmax_t>(value) << 8U) | byte);
        }
        return value;
    }

    // Borrows the next n bytes (no copy); empty and failed if fewer remain.
    ByteView bytes(std::size_t n) noexcept
    {
        return take(n) ? data_.subspan(pos_ - n, n) : ByteView{};
    }

    // Borrows everything that is left.
    ByteView rest() noexcept { return bytes(remaining()); }

    void skip(std::size_t n) noexcept { (void)take(n); }

    [[nodiscard]] bool ok() const noexcept { return !failed_; }
    [[nodiscard]] std::size_t remaining() const noexcept { return data_.size() - pos_; }
    [[nodiscard]] std::size_t position() const noexcept { return pos_; }

private:
    bool take(std::size_t n) noexcept
    {
        if (failed_ || n > remaining()) // never pos_ + n > size(): that sum can wrap
        {
            failed_ = true;
            return false;
        }
        pos_ += n;
        return true;
    }

    ByteView data_;
    std::size_t pos_ = 0;
    bool failed_ = false;
};

class ByteWriter
{
public:
    ByteWriter() = default;
    explicit ByteWriter(std::size_t reserve) { out_.reserve(reserve); }

    template <std::unsigned_integral T>
    ByteWriter& write(T value)
    {
        for (std::size_t i = sizeof(T); i-- > 0;)
        {
            out_.push_back(static_cast<std::uint8_t>(static_cast<std::uintmax_t>(value) >> (8U * i)));
        }
        return *this;
    }

    ByteWriter& write(ByteView bytes)
    {
        out_.insert(out_.end(), bytes.begin(), bytes.end());
        return *this;
    }

    ByteWriter& zeros(std::size_t n)
    {
        out_.insert(out_.end(), n, std::uint8_t{0});
        return *this;
    }

    // Back-fills a 32-bit size field once the body length is known; false if out of range.
    [[nodiscard]] bool patch32(std::size_t offset, std::uint32_t value) noexcept
    {
        if (offset > out_.size() || out_.size() - offset < 4)
        {
            return false;
        }
        for (std::size_t i = 0; i < 4; ++i)
        {
            out_[offset + i] = static_cast<std::uint8_t>(value >> (8U * (3 - i)));
        }
        return true;
    }

    [[nodiscard]] std::size_t size() const noexcept { return out_.size(); }
    [[nodiscard]] Bytes take() && { return std::move(out_); }

private:
    Bytes out_;
};

} // namespace vtpm::protocol

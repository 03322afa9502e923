#pragma once

#include <cstddef>
#include <cstdint>

// The libFuzzer entry point every target defines; declared here so -Wmissing-declarations is
// satisfied and fuzz_driver.cpp can call it without libFuzzer.
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

// Invariant check for fuzz targets: a violated invariant must crash, in every build type, so
// both libFuzzer and fuzz_driver report it (assert() would vanish with NDEBUG).
#define FUZZ_CHECK(cond)                                                                           \
    do                                                                                             \
    {                                                                                              \
        if (!(cond))                                                                               \
        {                                                                                          \
            ::vtpm::fuzz::fail(#cond, __FILE__, __LINE__);                                         \
        }                                                                                          \
    } while (false)

namespace vtpm::fuzz
{

[[noreturn]] void fail(const char* what, const char* file, int line) noexcept;

} // namespace vtpm::fuzz

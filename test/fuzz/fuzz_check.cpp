#include "test/fuzz/fuzz_target.hpp"

#include <cstdio>

namespace vtpm::fuzz
{

void fail(const char* what, const char* file, int line) noexcept
{
    std::fprintf(stderr, "%s:%d: fuzz invariant violated: %s\n", file, line, what);
    std::fflush(stderr);
    __builtin_trap();
}

} // namespace vtpm::fuzz

#include "test/fuzz/fuzz_target.hpp"

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

// A standalone stand-in for libFuzzer's main(), so a bounded fuzz run is part of every test
// suite (gcc has no libFuzzer). It feeds the target (a) every seed file given on the command
// line (files, or directories whose regular files are read), then (b) a fixed number of
// pseudo-random inputs: fresh random bytes and mutations of the seeds. The run is
// deterministic for a given seed, so a failure reproduces with the same arguments.
//
//   fuzz_ctrl_run [-runs=N] [-seed=S] [-max_total_time=SECONDS] [-max_len=BYTES] PATH...
//
// Defaults: 200000 runs, seed 0x5eed, 30 s, 4200 bytes. The environment variables
// FUZZ_RUNS and FUZZ_SEED override the defaults (not explicit flags).
namespace
{

using Input = std::vector<std::uint8_t>;

struct Options
{
    std::uint64_t runs = 200000;
    std::uint64_t seed = 0x5eed;
    double maxSeconds = 30.0;
    std::size_t maxLen = 4200; // a little above the largest control message (4104 bytes)
    std::vector<std::filesystem::path> paths;
};

// xorshift64*: tiny, fast and good enough to drive mutations.
class Rng
{
public:
    explicit Rng(std::uint64_t seed) noexcept : state_(seed == 0 ? 0x9e3779b97f4a7c15ULL : seed) {}
    std::uint64_t next() noexcept
    {
        state_ ^= state_ >> 12U;
        state_ ^= state_ << 25U;
        state_ ^= state_ >> 27U;
        return state_ * 0x2545f4914f6cdd1dULL;
    }
    // Uniform enough in [0, n) for n > 0.
    std::size_t below(std::size_t n) noexcept { return static_cast<std::size_t>(next() % n); }
    std::uint8_t byte() noexcept { return static_cast<std::uint8_t>(next()); }
    bool chance(unsigned percent) noexcept { return below(100) < percent; }

private:
    std::uint64_t state_;
};

bool parseUnsigned(std::string_view text, std::uint64_t& out)
{
    if (text.empty())
    {
        return false;
    }
    char* end = nullptr;
    const std::string copy(text);
    const unsigned long long value = std::strtoull(copy.c_str(), &end, 0);
    if (end == nullptr || *end != '\0')
    {
        return false;
    }
    out = value;
    return true;
}

[[noreturn]] void usage(const char* argv0, std::string_view bad)
{
    std::fprintf(stderr,
                 "%s: bad argument '%.*s'\nusage: %s [-runs=N] [-seed=S] [-max_total_time=SEC] "
                 "[-max_len=BYTES] [corpus-dir-or-file...]\n",
                 argv0, static_cast<int>(bad.size()), bad.data(), argv0);
    std::exit(2);
}

Options parseOptions(int argc, char** argv)
{
    Options opts;
    std::uint64_t value = 0;
    if (const char* env = std::getenv("FUZZ_RUNS"); env != nullptr && parseUnsigned(env, value))
    {
        opts.runs = value;
    }
    if (const char* env = std::getenv("FUZZ_SEED"); env != nullptr && parseUnsigned(env, value))
    {
        opts.seed = value;
    }
    for (int i = 1; i < argc; ++i)
    {
        const std::string_view arg = argv[i];
        const auto flag = [&](std::string_view name, std::uint64_t& target)
        {
            if (!arg.starts_with(name))
            {
                return false;
            }
            if (!parseUnsigned(arg.substr(name.size()), target))
            {
                usage(argv[0], arg);
            }
            return true;
        };
        std::uint64_t seconds = 0;
        std::uint64_t maxLen = 0;
        if (flag("-runs=", opts.runs) || flag("-seed=", opts.seed))
        {
            continue;
        }
        if (flag("-max_total_time=", seconds))
        {
            opts.maxSeconds = static_cast<double>(seconds);
            continue;
        }
        if (flag("-max_len=", maxLen))
        {
            opts.maxLen = static_cast<std::size_t>(std::max<std::uint64_t>(maxLen, 1));
            continue;
        }
        if (arg.starts_with("-"))
        {
            usage(argv[0], arg);
        }
        opts.paths.emplace_back(arg);
    }
    return opts;
}

Input readFile(const std::filesystem::path& path)
{
    std::ifstream in(path, std::ios::binary);
    if (!in)
    {
        throw std::runtime_error("cannot read " + path.string());
    }
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::vector<Input> loadSeeds(const std::vector<std::filesystem::path>& paths)
{
    std::vector<Input> seeds;
    for (const auto& path : paths)
    {
        if (std::filesystem::is_directory(path))
        {
            std::vector<std::filesystem::path> files;
            for (const auto& entry : std::filesystem::directory_iterator(path))
            {
                if (entry.is_regular_file())
                {
                    files.push_back(entry.path());
                }
            }
            std::sort(files.begin(), files.end()); // deterministic order
            for (const auto& file : files)
            {
                seeds.push_back(readFile(file));
            }
        }
        else
        {
            seeds.push_back(readFile(path));
        }
    }
    return seeds;
}

void run(const Input& input)
{
    // A copy in an exactly-sized heap buffer, so ASan catches reads past the end.
    const auto copy = std::make_unique<std::uint8_t[]>(std::max<std::size_t>(input.size(), 1));
    std::copy(input.begin(), input.end(), copy.get());
    (void)LLVMFuzzerTestOneInput(input.empty() ? nullptr : copy.get(), input.size());
}

// Values that sit on the protocol's boundaries (sizes, lengths, codes, tags).
constexpr std::uint32_t kInteresting[] = {
    0,           1,           2,           3,           4,         7,       8,       9,
    10,          11,          12,          13,          16,        0x13,    0x14,    0xff,
    0x100,       0x800,       0xaf8,       0xc00,       0xf80,     0xfff,   0x1000,  0x1001,
    0x1009,      0x8001,      0x8002,      0x00c1,      0x00c4,    0x80000, 0x80001, 0x7fffffff,
    0x80000000U, 0xfffffff0U, 0xfffffffeU, 0xffffffffU, 0x20001000};

void putBe32(Input& data, std::size_t offset, std::uint32_t value)
{
    for (std::size_t i = 0; i < 4 && offset + i < data.size(); ++i)
    {
        data[offset + i] = static_cast<std::uint8_t>(value >> (8U * (3 - i)));
    }
}

Input randomInput(Rng& rng, std::size_t maxLen)
{
    // Mostly short inputs (headers are 4-16 bytes), sometimes long ones.
    const std::size_t len =
        rng.chance(80) ? rng.below(std::min<std::size_t>(maxLen, 40) + 1) : rng.below(maxLen + 1);
    Input data(len);
    for (auto& b : data)
    {
        b = rng.chance(30) ? std::uint8_t{0} : rng.byte();
    }
    // A plausible command code or TPM tag in front half of the time.
    if (len >= 4 && rng.chance(50))
    {
        putBe32(data, 0, static_cast<std::uint32_t>(rng.below(0x16)));
    }
    return data;
}

void mutate(Input& data, Rng& rng, const std::vector<Input>& seeds, std::size_t maxLen)
{
    const std::size_t steps = 1 + rng.below(4);
    for (std::size_t s = 0; s < steps; ++s)
    {
        switch (rng.below(9))
        {
        case 0: // flip a bit
            if (!data.empty())
            {
                data[rng.below(data.size())] ^= static_cast<std::uint8_t>(1U << rng.below(8));
            }
            break;
        case 1: // random byte
            if (!data.empty())
            {
                data[rng.below(data.size())] = rng.byte();
            }
            break;
        case 2: // interesting 32-bit word, big-endian, at a field-aligned or random offset
            if (!data.empty())
            {
                const std::size_t offset =
                    rng.chance(70) ? 4 * rng.below(data.size() / 4 + 1) : rng.below(data.size());
                putBe32(data, offset, kInteresting[rng.below(std::size(kInteresting))]);
            }
            break;
        case 3: // truncate
            data.resize(rng.below(data.size() + 1));
            break;
        case 4: // insert random bytes
        {
            const std::size_t n = 1 + rng.below(16);
            const auto at = static_cast<std::ptrdiff_t>(rng.below(data.size() + 1));
            Input extra(n);
            for (auto& b : extra)
            {
                b = rng.byte();
            }
            data.insert(data.begin() + at, extra.begin(), extra.end());
            break;
        }
        case 5: // erase a range
            if (!data.empty())
            {
                const std::size_t from = rng.below(data.size());
                const std::size_t n = 1 + rng.below(data.size() - from);
                data.erase(data.begin() + static_cast<std::ptrdiff_t>(from),
                           data.begin() + static_cast<std::ptrdiff_t>(from + n));
            }
            break;
        case 6: // append a seed (pipelined messages)
            if (!seeds.empty())
            {
                const Input& other = seeds[rng.below(seeds.size())];
                data.insert(data.end(), other.begin(), other.end());
            }
            break;
        case 7: // grow with zeros
            data.resize(data.size() + rng.below(64), 0);
            break;
        default: // make a length field agree with the actual size (reaches deep paths)
            if (data.size() >= 8)
            {
                const std::size_t offset = rng.chance(50) ? 4 : (rng.chance(50) ? 12 : 2);
                if (offset + 4 <= data.size())
                {
                    const std::size_t body = data.size() - (offset == 2 ? 0 : offset + 4);
                    putBe32(data, offset, static_cast<std::uint32_t>(body));
                }
            }
            break;
        }
    }
    if (data.size() > maxLen)
    {
        data.resize(maxLen);
    }
}

} // namespace

int main(int argc, char** argv)
{
    try
    {
        const Options opts = parseOptions(argc, argv);
        const std::vector<Input> seeds = loadSeeds(opts.paths);
        const auto start = std::chrono::steady_clock::now();
        const auto elapsed = [&start]
        {
            return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        };

        run(Input{});
        for (const Input& seed : seeds)
        {
            run(seed);
        }

        Rng rng(opts.seed);
        std::uint64_t done = 0;
        std::uint64_t mutated = 0;
        for (; done < opts.runs; ++done)
        {
            if ((done & 0x3ffU) == 0 && elapsed() > opts.maxSeconds)
            {
                break;
            }
            if (!seeds.empty() && rng.chance(70))
            {
                Input data = seeds[rng.below(seeds.size())];
                mutate(data, rng, seeds, opts.maxLen);
                run(data);
                ++mutated;
            }
            else
            {
                run(randomInput(rng, opts.maxLen));
            }
        }
        std::printf("fuzz driver: %zu seed inputs, %llu generated inputs (%llu mutated), seed "
                    "0x%llx, %.2f s, no failures\n",
                    seeds.size(), static_cast<unsigned long long>(done),
                    static_cast<unsigned long long>(mutated),
                    static_cast<unsigned long long>(opts.seed), elapsed());
        return 0;
    }
    catch (const std::exception& e)
    {
        std::fprintf(stderr, "fuzz driver: %s\n", e.what());
        return 1;
    }
}

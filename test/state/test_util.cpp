#include "test_util.hpp"

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string_view>
#include <system_error>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

namespace vtpm::state::test
{

TempDir::TempDir()
{
    // temp_directory_path() honours $TMPDIR.
    const std::string pattern =
        (std::filesystem::temp_directory_path() / "vtpm-state-test-XXXXXX").string();
    std::vector<char> buffer(pattern.begin(), pattern.end());
    buffer.push_back('\0');
    if (::mkdtemp(buffer.data()) == nullptr)
    {
        throw std::system_error(errno, std::system_category(), "mkdtemp");
    }
    path_ = buffer.data();
}

TempDir::~TempDir()
{
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
}

protocol::Bytes readFile(const std::filesystem::path& path)
{
    std::ifstream in(path, std::ios::binary);
    if (!in)
    {
        throw std::runtime_error("cannot open " + path.string());
    }
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void writeFile(const std::filesystem::path& path, protocol::ByteView bytes)
{
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    for (std::uint8_t byte : bytes)
    {
        out.put(static_cast<char>(byte));
    }
    if (!out)
    {
        throw std::runtime_error("cannot write " + path.string());
    }
}

protocol::Bytes toBytes(std::string_view text)
{
    return {text.begin(), text.end()};
}

std::string hexPreview(protocol::ByteView bytes)
{
    constexpr std::size_t kShown = 32;
    constexpr std::string_view kDigits = "0123456789abcdef";
    std::string out = "[" + std::to_string(bytes.size()) + " bytes:";
    for (std::size_t i = 0; i < bytes.size() && i < kShown; ++i)
    {
        out += ' ';
        out += kDigits[bytes[i] >> 4U];
        out += kDigits[bytes[i] & 0xfU];
    }
    out += bytes.size() > kShown ? " ...]" : "]";
    return out;
}

int runInChild(const std::function<int()>& body)
{
    const pid_t pid = ::fork();
    if (pid < 0)
    {
        throw std::system_error(errno, std::system_category(), "fork");
    }
    if (pid == 0)
    {
        int code = 99;
        try
        {
            code = body();
        }
        catch (...)
        {
            code = 98;
        }
        ::_exit(code);
    }
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0)
    {
        if (errno != EINTR)
        {
            throw std::system_error(errno, std::system_category(), "waitpid");
        }
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

} // namespace vtpm::state::test

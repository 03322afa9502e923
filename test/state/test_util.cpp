#include "test_util.hpp"

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string_view>
#include <system_error>
#include <vector>

#include <csignal>
#include <thread>

#include <fcntl.h>
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

pid_t spawnLogged(std::vector<std::string> args, const std::filesystem::path& logFile)
{
    std::vector<char*> argv; // execvp wants mutable strings: point into our own copies
    argv.reserve(args.size() + 1);
    for (std::string& arg : args)
    {
        argv.push_back(arg.data());
    }
    argv.push_back(nullptr);
    const pid_t pid = ::fork();
    if (pid == 0)
    {
        // NOLINTNEXTLINE(cppcoreguidelines-pro-type-vararg): open(2) is variadic
        const int log = ::open(logFile.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (log >= 0)
        {
            ::dup2(log, STDOUT_FILENO);
            ::dup2(log, STDERR_FILENO);
        }
        ::execvp(argv[0], argv.data());
        ::_exit(127);
    }
    return pid;
}

int waitExit(pid_t pid, std::chrono::milliseconds timeout)
{
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    int status = 0;
    while (true)
    {
        const pid_t r = ::waitpid(pid, &status, WNOHANG);
        if (r == pid)
        {
            return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        }
        if (r < 0 || std::chrono::steady_clock::now() > deadline)
        {
            ::kill(pid, SIGKILL);
            (void)::waitpid(pid, &status, 0);
            return -1;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
}

int runLogged(const std::vector<std::string>& args, const std::filesystem::path& logFile)
{
    return waitExit(spawnLogged(args, logFile), std::chrono::seconds(5));
}

std::string logText(const std::filesystem::path& logFile)
{
    if (!std::filesystem::exists(logFile))
    {
        return "(no log)";
    }
    const protocol::Bytes log = readFile(logFile);
    return {log.begin(), log.end()};
}

} // namespace vtpm::state::test

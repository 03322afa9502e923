#pragma once

#include "protocol/byte_io.hpp"

#include <catch2/catch.hpp>

#include <chrono>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include <sys/types.h>

// Helpers shared by the state tests: scratch directories, whole-file I/O and running code in a
// forked child (fcntl locks are per process, so lock contention needs a second process).
namespace vtpm::state::test
{

// A fresh directory under $TMPDIR (or /tmp), removed with everything in it on destruction.
class TempDir
{
public:
    TempDir();
    ~TempDir();
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    TempDir(TempDir&&) = delete;
    TempDir& operator=(TempDir&&) = delete;

    [[nodiscard]] const std::filesystem::path& path() const noexcept { return path_; }

private:
    std::filesystem::path path_;
};

protocol::Bytes readFile(const std::filesystem::path& path);
void writeFile(const std::filesystem::path& path, protocol::ByteView bytes);
protocol::Bytes toBytes(std::string_view text);

// Runs body in a forked child and returns its exit status (body's return value), or -1 if the
// child died abnormally. The child leaves with _exit, so no Catch2 or static destructors run.
int runInChild(const std::function<int()>& body);

// Short hex rendering of a byte string for assertion messages.
std::string hexPreview(vtpm::protocol::ByteView bytes);

// Runs a program from PATH with stdout/stderr appended to logFile (our stdout is the TAP
// stream). The interop tests start Debian's swtpm and swtpm_ioctl with it.
pid_t spawnLogged(std::vector<std::string> args, const std::filesystem::path& logFile);
// Exit status of pid; after timeout it is killed. -1 if killed or ended by a signal.
int waitExit(pid_t pid, std::chrono::milliseconds timeout);
// spawnLogged + waitExit with a 5 s limit.
int runLogged(const std::vector<std::string>& args, const std::filesystem::path& logFile);
// The log's text for failure messages, "(no log)" if there is none.
std::string logText(const std::filesystem::path& logFile);

} // namespace vtpm::state::test

// Catch2 would print byte vectors as characters; raw control bytes (0x1c..0x1e, 0x85) count as
// line breaks for meson's TAP parser and corrupt the stream, so bytes are shown as hex.
namespace Catch
{
template <>
struct StringMaker<vtpm::protocol::Bytes>
{
    static std::string convert(const vtpm::protocol::Bytes& value)
    {
        return vtpm::state::test::hexPreview(value);
    }
};
template <>
struct StringMaker<vtpm::protocol::ByteView>
{
    static std::string convert(vtpm::protocol::ByteView value)
    {
        return vtpm::state::test::hexPreview(value);
    }
};
} // namespace Catch

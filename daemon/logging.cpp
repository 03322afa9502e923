#include "daemon/logging.hpp"

#include "daemon/tpm_engine.hpp"

#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/null_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <cerrno>
#include <mutex>
#include <system_error>

#include <fcntl.h>
#include <unistd.h>

namespace vtpm::daemon
{

namespace
{

// Writes formatted lines straight to a descriptor the daemon owns or inherited. One write per
// line keeps lines whole when several processes append to the same file.
class FdSink final : public spdlog::sinks::base_sink<spdlog::details::null_mutex>
{
public:
    FdSink(int fd, bool owned) : fd_(fd), owned_(owned) {}
    ~FdSink() override
    {
        if (owned_)
        {
            ::close(fd_);
        }
    }
    FdSink(const FdSink&) = delete;
    FdSink& operator=(const FdSink&) = delete;

protected:
    void sink_it_(const spdlog::details::log_msg& msg) override
    {
        spdlog::memory_buf_t line;
        formatter_->format(msg, line);
        const char* data = line.data();
        std::size_t left = line.size();
        while (left > 0)
        {
            const ssize_t n = ::write(fd_, data, left);
            if (n < 0 && errno == EINTR)
            {
                continue;
            }
            if (n <= 0)
            {
                return; // a log that cannot be written must not take the TPM down
            }
            data += n;
            left -= static_cast<std::size_t>(n);
        }
    }
    void flush_() override {}

private:
    int fd_;
    bool owned_;
};

spdlog::level::level_enum toSpdlog(LogLevel level) noexcept
{
    switch (level)
    {
    case LogLevel::Off:
        return spdlog::level::off;
    case LogLevel::Error:
        return spdlog::level::err;
    case LogLevel::Warn:
        return spdlog::level::warn;
    case LogLevel::Info:
        return spdlog::level::info;
    case LogLevel::Debug:
        return spdlog::level::debug;
    case LogLevel::Trace:
        return spdlog::level::trace;
    }
    return spdlog::level::info;
}

void install(spdlog::sink_ptr sink, spdlog::level::level_enum level, const std::string& prefix)
{
    auto logger = std::make_shared<spdlog::logger>("vtpmd", std::move(sink));
    logger->set_pattern(prefix + "%Y-%m-%d %H:%M:%S.%e vtpmd[%P] %l: %v");
    logger->set_level(level);
    logger->flush_on(spdlog::level::trace);
    spdlog::set_default_logger(std::move(logger));
}

} // namespace

void setupLogging(const std::optional<LogOptions>& options)
{
    if (!options)
    {
        install(std::make_shared<FdSink>(STDERR_FILENO, false), spdlog::level::warn, "");
        return;
    }
    const spdlog::level::level_enum level = toSpdlog(options->level);
    if (options->level == LogLevel::Off)
    {
        install(std::make_shared<spdlog::sinks::null_sink_st>(), spdlog::level::off, "");
        return;
    }
    int fd = STDERR_FILENO;
    bool owned = false;
    if (!options->file.empty())
    {
        const int flags =
            O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW | (options->truncate ? O_TRUNC : O_APPEND);
        fd = ::open(options->file.c_str(), flags, 0600);
        if (fd < 0)
        {
            throw std::system_error(errno, std::generic_category(),
                                    "cannot open log file " + options->file.string());
        }
        owned = true;
    }
    else if (options->fd >= 0)
    {
        fd = options->fd;
        owned = true;
    }
    install(std::make_shared<FdSink>(fd, owned), level, options->prefix);
    if (options->libtpmsDebug > 0)
    {
        TpmEngine::setDebug(fd, options->libtpmsDebug, options->prefix);
    }
}

} // namespace vtpm::daemon

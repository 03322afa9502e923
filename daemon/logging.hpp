#pragma once

#include "daemon/options.hpp"

#include <optional>

// Routes spdlog's default logger to where --log says: a file, an inherited descriptor or
// stderr. Without --log only warnings and errors reach stderr, as with swtpm.
namespace vtpm::daemon
{

// Throws std::system_error naming the log file if it cannot be opened.
void setupLogging(const std::optional<LogOptions>& options);

} // namespace vtpm::daemon

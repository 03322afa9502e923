#pragma once

#include "tools/vtpmctl/deadline_io.hpp"
#include "tools/vtpmctl/instance_paths.hpp"

#include <nlohmann/json.hpp>

#include <optional>
#include <vector>

// Reads vtpmd's --status reports (one JSON line per connection, then EOF). Many instances are
// asked at once and answered in parallel, so `list` costs about one round trip, not N.
namespace vtpm::tools
{

// One result per socket, in order; nullopt when that daemon did not answer with valid JSON
// within `timeout` (each batch of sockets gets the full timeout).
std::vector<std::optional<nlohmann::json>> queryStatus(const std::vector<fs::path>& sockets,
                                                       std::chrono::milliseconds timeout);

} // namespace vtpm::tools

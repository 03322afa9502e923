#pragma once

#include <string_view>

// The systemd notification protocol (sd_notify(3)): one datagram of "KEY=value" lines to the
// AF_UNIX socket named by $NOTIFY_SOCKET. Written here rather than linking libsystemd, which
// drags six more shared libraries into every per-VM process and measurably slows its start.
namespace vtpm::daemon
{

// Sends `state` if $NOTIFY_SOCKET is set; silently does nothing otherwise. Returns false only
// when a notification socket was named but the datagram could not be delivered.
bool notifyService(std::string_view state) noexcept;

} // namespace vtpm::daemon

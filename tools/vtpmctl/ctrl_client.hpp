#pragma once

#include "protocol/ctrl_messages.hpp"
#include "tools/vtpmctl/instance_paths.hpp"

#include <chrono>

// One control-channel request on a fresh connection (protocol.md §2.4, §3), bounded in time:
// vtpmd serves one control client at a time and QEMU usually holds that connection, so a
// request that is not answered in time means "busy", never a hang.
namespace vtpm::tools
{

enum class CtrlOutcome
{
    Replied,  // bytes holds the complete reply
    NoDaemon, // nothing listens on the socket
    Busy,     // not accepted or not answered in time (the control connection is held)
    Failed,   // I/O error or the daemon closed without a complete reply
};

struct CtrlReply
{
    CtrlOutcome outcome = CtrlOutcome::Failed;
    protocol::TpmResult result = protocol::rc::kFail; // valid when Replied
    protocol::Bytes bytes;                            // the reply, result code included
};

// Sends `request` (as built by protocol::encodeRequest for `code`) and reads the reply: 4 bytes
// on error, else the command's full reply including variable parts (state blob, info string).
CtrlReply ctrlRequest(const fs::path& socket, protocol::CtrlCode code, protocol::ByteView request,
                      std::chrono::milliseconds timeout);

} // namespace vtpm::tools

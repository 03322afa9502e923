#pragma once

// Parses vtpmctl's command line (CLI11) and runs the chosen subcommand; returns the exit code.
// Usage errors give 2, --help 0; CommandError escapes to main().
namespace vtpm::tools
{

int runCli(int argc, char** argv);

} // namespace vtpm::tools

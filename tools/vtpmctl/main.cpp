// vtpmctl: manages vtpmd instances (one software TPM per VM). See doc/vtpmctl.md.

#include "tools/vtpmctl/cli.hpp"
#include "tools/vtpmctl/exit_codes.hpp"

#include <cstdio>
#include <exception>

int main(int argc, char* argv[])
{
    try
    {
        return vtpm::tools::runCli(argc, argv);
    }
    catch (const vtpm::tools::CommandError& e)
    {
        if (*e.what() != '\0')
        {
            std::fprintf(stderr, "vtpmctl: %s\n", e.what());
        }
        return static_cast<int>(e.code());
    }
    catch (const std::exception& e)
    {
        std::fprintf(stderr, "vtpmctl: %s\n", e.what());
        return static_cast<int>(vtpm::tools::ExitCode::Failed);
    }
}

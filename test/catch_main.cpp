// One Catch2 runner for every unit-test binary; TAP output so meson can count the cases.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#include <catch2/catch_reporter_tap.hpp>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

int main(int argc, char* argv[])
{
    // spdlog's default logger writes to stdout, which is the TAP stream: logs go to stderr.
    spdlog::set_default_logger(spdlog::stderr_logger_st("tests"));
    return Catch::Session().run(argc, argv);
}

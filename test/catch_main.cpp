// One Catch2 runner for every unit-test binary; TAP output so meson can count the cases.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#include <catch2/catch_reporter_tap.hpp>

int main(int argc, char* argv[])
{
    return Catch::Session().run(argc, argv);
}

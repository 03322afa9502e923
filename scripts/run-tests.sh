#!/bin/sh
# Runs every test of vtpmd: the gcc build, the same suite under ASan/UBSan, and a bounded
# libFuzzer run of each fuzz target (clang). Installs missing Debian packages first.
set -eu
cd "$(dirname "$0")/.."
./scripts/install-deps.sh

jobs=$(nproc)

echo "=== gcc build + full test suite"
[ -d build ] || meson setup build
ninja -C build
meson test -C build --print-errorlogs --num-processes "$jobs"

echo "=== gcc ASan/UBSan build + full test suite"
[ -d build-asan ] || meson setup build-asan -Db_sanitize=address,undefined -Db_lundef=false \
    -Dbuildtype=debug
ninja -C build-asan
meson test -C build-asan --setup sanitize --print-errorlogs --num-processes "$jobs" \
    --timeout-multiplier 3

echo "=== clang libFuzzer, bounded runs"
[ -d build-fuzz ] || CXX=clang++ meson setup build-fuzz -Dfuzz=true -Dtests=enabled
ninja -C build-fuzz test/fuzz/fuzz_ctrl test/fuzz/fuzz_frame test/fuzz/fuzz_blob
for target in fuzz_ctrl fuzz_frame fuzz_blob; do
    corpus=$(mktemp -d)
    cp test/fuzz/corpus/"${target#fuzz_}"/* "$corpus"/ 2>/dev/null || true
    ./build-fuzz/test/fuzz/$target -max_total_time="${VTPMD_FUZZ_SECONDS:-30}" \
        -print_final_stats=1 "$corpus"
    rm -rf "$corpus"
done
echo "=== all tests passed"

#!/bin/sh
# NV_Write(32 B) latency per fsync policy, vtpmd next to Debian's swtpm 0.7.1 in the same run
# (issue 4 item 7, doc/durability.md). Each daemon is started on a fresh state directory or
# image under $STATE_ROOT (default: a directory on the same disk as the repository, so fsync
# costs what it costs there) and driven by vtpm-bench's nv-write workload over a UNIX socket.
#
#   bench/nvwrite-fsync.sh [OPS]            default OPS=2000
#   VTPMD=... BENCH=... SWTPM=... STATE_ROOT=... bench/nvwrite-fsync.sh
#
# Output: one line per configuration: p50/p90/p99/max in microseconds (vtpm-bench --tsv).
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
VTPMD=${VTPMD:-$here/build/daemon/vtpmd}
BENCH=${BENCH:-$here/build/bench/vtpm-bench}
SWTPM=${SWTPM:-/usr/bin/swtpm}
OPS=${1:-2000}
STATE_ROOT=${STATE_ROOT:-$here/build}
root=$(mktemp -d "$STATE_ROOT/nvwrite-bench.XXXXXX")
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$root"; }
trap cleanup EXIT INT TERM

# run LABEL EXE TPMSTATE: start the daemon, time nv-write, stop it.
run() {
    label=$1 exe=$2 tpmstate=$3
    dir=$root/$(echo "$label" | tr -c 'a-zA-Z0-9\n' '_')
    mkdir -p "$dir/state"
    tpmstate=$(echo "$tpmstate" | sed "s|@|$dir|g")
    "$exe" socket --tpm2 --tpmstate "$tpmstate" --ctrl "type=unixio,path=$dir/ctrl" \
        --server "type=unixio,path=$dir/data" >"$dir/log" 2>&1 &
    pid=$!
    i=0
    while [ ! -S "$dir/ctrl" ] || [ ! -S "$dir/data" ]; do
        i=$((i + 1))
        if [ $i -gt 300 ] || ! kill -0 "$pid" 2>/dev/null; then
            echo "$label: daemon did not start (option not supported?): $(head -c 300 "$dir/log")"
            pid=
            return 0
        fi
        sleep 0.01
    done
    "$BENCH" run --ctrl "$dir/ctrl" --unix "$dir/data" --workloads nv-write --ops "$OPS" \
        --label "$label" --tsv | sed "s|^|$label	|"
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    pid=
}

echo "# $(date -u +%FT%TZ) $(uname -r), state on $(df -T "$root" | awk 'NR==2 {print $2" "$1}')"
echo "# OPS=$OPS vtpmd=$VTPMD swtpm=$($SWTPM --version 2>&1 | head -1)"
run "vtpmd dir fsync=always" "$VTPMD" "dir=@/state,fsync=always"
run "vtpmd dir fsync=deferred (default)" "$VTPMD" "dir=@/state"
run "vtpmd dir fsync=never" "$VTPMD" "dir=@/state,fsync=never"
run "vtpmd file:// fsync=always" "$VTPMD" "backend-uri=file://@/nvram.img,fsync=always"
run "vtpmd file:// fsync=deferred" "$VTPMD" "backend-uri=file://@/nvram.img"
run "vtpmd file:// fsync=never" "$VTPMD" "backend-uri=file://@/nvram.img,fsync=never"
run "swtpm 0.7.1 dir (no fsync)" "$SWTPM" "dir=@/state"
run "swtpm 0.7.1 file:// (msync)" "$SWTPM" "backend-uri=file://@/nvram.img"

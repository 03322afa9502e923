#!/usr/bin/env bash
# vtpmctl measurements (issue 5, item 6):
#   1. `vtpmctl start` until vtpmd reported READY=1 (wall time of the command), median of N;
#   2. `vtpmctl list` (table and --json) with 200 running instances, median of 11 runs;
#   3. memory per idle instance with 100 instances (/proc/PID/smaps_rollup: Pss, Pss_Anon,
#      Anonymous = private anonymous), for vtpmd as vtpmctl leaves it (TPM not initialised until
#      QEMU sends CMD_INIT), for vtpmd after CMD_INIT, and for 100 swtpm processes started in the
#      same run (`swtpm socket --tpm2 ... --flags not-need-init`, i.e. TPM initialised).
# Usage: bench/vtpmctl_bench.sh [BUILD_DIR]    (default build)
# Environment: VTPMCTL, VTPMD (default BUILD_DIR/tools/vtpmctl, BUILD_DIR/daemon/vtpmd),
#   SWTPM (default swtpm on PATH; empty string skips the comparison), N_START (default 20),
#   N_LIST (default 200), N_MEM (default 100).
set -euo pipefail

BUILD=${1:-build}
VTPMCTL=${VTPMCTL:-$BUILD/tools/vtpmctl}
export VTPMD=${VTPMD:-$BUILD/daemon/vtpmd}
SWTPM=${SWTPM-$(command -v swtpm || true)}
N_START=${N_START:-20}
N_LIST=${N_LIST:-200}
N_MEM=${N_MEM:-100}
ROOT=$(mktemp -d /tmp/vb-XXXXXX)
SWROOT="$ROOT/swtpm"
unset NOTIFY_SOCKET

cleanup() {
    local f
    for f in "$ROOT"/run/*/vtpmd.pid "$SWROOT"/*/pid; do
        [[ -f $f ]] && kill -KILL "$(cat "$f")" 2>/dev/null || true
    done
    rm -rf "$ROOT"
}
trap cleanup EXIT

ctl() { "$VTPMCTL" --root "$ROOT" "$@"; }
now_us() { local t=${EPOCHREALTIME/./}; echo "${t#0}"; }
median() { sort -n | awk '{v[NR]=$1} END {if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'; }

# Sums Pss, Pss_Anon and Anonymous (kB) over the given pids; prints per-process averages in MiB.
memory_of() {
    local label=$1; shift
    local pid
    for pid in "$@"; do cat "/proc/$pid/smaps_rollup"; done | awk -v n=$# -v label="$label" '
        /^Pss:/ {pss += $2} /^Pss_Anon:/ {pa += $2} /^Anonymous:/ {anon += $2}
        END {printf "%-34s n=%d  Pss %.2f MiB  Pss_Anon %.2f MiB  private anonymous %.2f MiB\n",
                    label, n, pss/n/1024, pa/n/1024, anon/n/1024}'
}

echo "vtpmctl $VTPMCTL, vtpmd $VTPMD, swtpm ${SWTPM:-none}; $(nproc) CPUs; root $ROOT"

# 1. start to ready
for i in $(seq 1 "$N_START"); do
    ctl create "s$i" >/dev/null
    t0=$(now_us)
    ctl start --no-systemd "s$i" >/dev/null 2>&1
    t1=$(now_us)
    echo $(( t1 - t0 ))
    ctl stop --no-systemd "s$i" >/dev/null
    ctl destroy --no-systemd "s$i" >/dev/null
done | median | awk -v n="$N_START" '{printf "start to ready:  median %.1f ms of %d starts (whole vtpmctl command)\n", $1/1000, n}'

# 2. list with N_LIST running instances
for i in $(seq 1 "$N_LIST"); do
    ctl start --no-systemd --create "i$i" >/dev/null 2>&1
done
running=$(ctl list --json | grep -c '"state": "running"')
echo "running instances: $running"
for mode in "" "--json"; do
    for _ in $(seq 1 11); do
        t0=$(now_us); ctl list $mode >/dev/null; t1=$(now_us); echo $(( t1 - t0 ))
    done | median | awk -v n="$N_LIST" -v m="${mode:-table}" '{printf "list %-5s with %d instances: median %.1f ms (target <= 100 ms)\n", m, n, $1/1000}'
done

# 3. memory per idle instance at N_MEM instances
for i in $(seq $((N_MEM + 1)) "$N_LIST"); do ctl stop --no-systemd "i$i" >/dev/null; done
pids=()
for i in $(seq 1 "$N_MEM"); do pids+=("$(cat "$ROOT/run/i$i/vtpmd.pid")"); done
memory_of "vtpmd idle (no CMD_INIT yet)" "${pids[@]}"
for i in $(seq 1 "$N_MEM"); do ctl ctrl "i$i" init >/dev/null; done
memory_of "vtpmd idle after CMD_INIT" "${pids[@]}"

if [[ -n $SWTPM ]]; then
    swpids=()
    for i in $(seq 1 "$N_MEM"); do
        d="$SWROOT/$i"; mkdir -p "$d"
        "$SWTPM" socket --tpm2 --ctrl "type=unixio,path=$d/ctrl.sock" --tpmstate "dir=$d" \
            --flags not-need-init --daemon --pid "file=$d/pid" --log "file=$d/log"
        swpids+=("$(cat "$d/pid")")
    done
    memory_of "swtpm idle (not-need-init)" "${swpids[@]}"
fi

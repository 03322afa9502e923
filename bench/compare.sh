#!/bin/bash
# Side-by-side benchmark of vtpmd and swtpm (issue 6). Builds nothing: give it the binaries.
#
#   bench/compare.sh [-p PAIRS] [-t datafd|unix|tcp] [-b VTPM_BENCH] [-o RAW_TSV] [VTPMD] [SWTPM]
#
# Defaults: VTPMD=build/daemon/vtpmd, SWTPM=/usr/bin/swtpm, VTPM_BENCH=build/bench/vtpm-bench,
# 5 pairs, transport datafd (the CMD_SET_DATAFD socketpair QEMU uses). Each workload runs
# alternately vtpmd, swtpm, vtpmd, swtpm ... on fresh temporary state (one new daemon per run);
# the table gives the median over runs per daemon and the median of the per-pair ratios, plus
# "the limit" (libtpms in-process + bare echo round trip on the same transport). Prints ONE
# Markdown table on stdout; progress goes to stderr. Needs python3 and strace.
set -euo pipefail

pairs=5
transport=datafd
bench=build/bench/vtpm-bench
raw=
while getopts "p:t:b:o:h" opt; do
    case $opt in
        p) pairs=$OPTARG ;;
        t) transport=$OPTARG ;;
        b) bench=$OPTARG ;;
        o) raw=$OPTARG ;;
        *) sed -n '2,12p' "$0"; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
vtpmd=${1:-build/daemon/vtpmd}
swtpm=${2:-/usr/bin/swtpm}

for exe in "$vtpmd" "$swtpm" "$bench"; do
    if [[ ! -x $exe ]]; then
        echo "compare.sh: not executable: $exe" >&2
        exit 1
    fi
done
for tool in python3 strace; do
    command -v $tool >/dev/null || { echo "compare.sh: $tool is required" >&2; exit 1; }
done

work=$(mktemp -d "${TMPDIR:-/tmp}/vtpm-compare.XXXXXX")
trap 'rm -rf "$work"' EXIT
out=$work/raw.tsv
: > "$out"
log() { echo "compare.sh: $*" >&2; }

# run PAIR LABEL ARGS...: one vtpm-bench invocation, its TSV lines tagged with the pair index.
run() {
    local pair=$1 label=$2
    shift 2
    "$bench" "$@" --label "$label" --tsv | sed "s/^/$pair\t/" >> "$out"
}

# TMPDIR for state directories: on disk (the default durability) unless overridden per call.
state_tmp=${TMPDIR:-/tmp}
workloads=$("$bench" list | awk '{print $1}')

for w in $workloads; do
    log "workload $w: $pairs pairs"
    for ((i = 1; i <= pairs; i++)); do
        TMPDIR=$state_tmp run "$i" vtpmd run --exec "$vtpmd" --transport "$transport" --workloads "$w"
        TMPDIR=$state_tmp run "$i" swtpm run --exec "$swtpm" --transport "$transport" --workloads "$w"
    done
done

# NV_Write again with the state on tmpfs: fsync costs nothing there, so both daemons have the
# same (process-crash-only) durability and the row shows the code path alone.
if [[ -d /dev/shm && -w /dev/shm ]]; then
    log "nv-write on tmpfs: $pairs pairs"
    for ((i = 1; i <= pairs; i++)); do
        TMPDIR=/dev/shm run "$i" vtpmd-tmpfs run --exec "$vtpmd" --transport "$transport" --workloads nv-write
        TMPDIR=/dev/shm run "$i" swtpm-tmpfs run --exec "$swtpm" --transport "$transport" --workloads nv-write
    done
fi

log "limit: libtpms in-process and echo round trips (3 runs each)"
for ((i = 1; i <= 3; i++)); do
    run "$i" limit limit
    run "$i" echo echo --transport "$transport"
done

log "start-up: $pairs pairs of 5 runs"
for ((i = 1; i <= pairs; i++)); do
    run "$i" vtpmd startup --exec "$vtpmd" --transport "$transport" --runs 5
    run "$i" swtpm startup --exec "$swtpm" --transport "$transport" --runs 5
done

log "memory: 3 pairs of 1 idle instance, 1 pair of 100"
for ((i = 1; i <= 3; i++)); do
    run "$i" vtpmd memory --exec "$vtpmd" --transport "$transport" --instances 1
    run "$i" swtpm memory --exec "$swtpm" --transport "$transport" --instances 1
done
run 1 vtpmd memory --exec "$vtpmd" --transport "$transport" --instances 100
run 1 swtpm memory --exec "$swtpm" --transport "$transport" --instances 100

# Syscalls per command: strace -c -f -p on the daemon during two GetRandom loops of different
# length (200 and 2200 operations); the difference divided by 2000 removes the set-up calls.
trace_calls() {
    local label=$1 exe=$2 ops=$3 dir
    dir=$(mktemp -d "$work/trace.XXXXXX")
    mkdir "$dir/state"
    "$exe" socket --tpm2 --tpmstate dir="$dir/state" --ctrl type=unixio,path="$dir/ctrl.sock" \
        > "$dir/daemon.log" 2>&1 &
    local pid=$!
    for ((k = 0; k < 200; k++)); do [[ -S $dir/ctrl.sock ]] && break; sleep 0.05; done
    strace -c -f -p "$pid" -o "$dir/strace.txt" 2> /dev/null &
    local tracer=$!
    sleep 0.5
    "$bench" run --ctrl "$dir/ctrl.sock" --workloads getrandom --ops "$ops" --tsv > /dev/null
    sleep 0.2
    kill -INT "$tracer"; wait "$tracer" || true
    kill "$pid"; wait "$pid" || true
    awk -v label="$label" -v ops="$ops" \
        '$NF != "syscall" && $NF != "total" && $4 ~ /^[0-9]+$/ {print "syscalls\t" label "\t" ops "\t" $NF "\t" $4}' \
        "$dir/strace.txt" | sed "s/^/1\t/" >> "$out"
}
log "syscalls per command (strace -c)"
for d in "vtpmd:$vtpmd" "swtpm:$swtpm"; do
    trace_calls "${d%%:*}" "${d#*:}" 200
    trace_calls "${d%%:*}" "${d#*:}" 2200
done

[[ -n $raw ]] && cp "$out" "$raw"

python3 - "$out" "$transport" "$pairs" <<'PY'
import statistics, sys
from collections import defaultdict

path, transport, pairs = sys.argv[1], sys.argv[2], int(sys.argv[3])
res = defaultdict(dict)        # (label, workload, field) -> {pair: value}
start = defaultdict(dict)      # (label, state, milestone) -> {pair: ms}
mem = defaultdict(dict)        # (label, count, field) -> {pair: KiB}
calls = defaultdict(lambda: defaultdict(dict))  # label -> ops -> syscall -> calls
labels = {}
for line in open(path):
    f = line.rstrip('\n').split('\t')
    pair, kind = int(f[0]), f[1]
    if kind == 'result':
        label, w = f[2], f[3]
        for name, v in zip(('ops_s', 'p50', 'p90', 'p99', 'max'), f[6:11]):
            res[(label, w, name)][pair] = float(v)
    elif kind == 'startup':
        start[(f[2], f[3], f[4])][pair] = float(f[5])
    elif kind == 'memory':
        for name, v in zip(('RSS', 'PSS', 'Anonymous'), f[4:7]):
            mem[(f[2], int(f[3]), name)][pair] = float(v)
    elif kind == 'syscalls':
        calls[f[2]][int(f[3])][f[4]] = int(f[5])

workload_labels = {
    'getrandom': 'TPM2_GetRandom(32)', 'pcr-extend': 'TPM2_PCR_Extend(sha256, pw session)',
    'pcr-read': 'TPM2_PCR_Read(sha256)', 'hash': 'TPM2_Hash(64 B)',
    'getcap': 'TPM2_GetCapability', 'nv-write': 'TPM2_NV_Write(32 B)',
    'sign-rsa': 'TPM2_Sign RSA-2048', 'sign-ecc': 'TPM2_Sign ECC P-256',
    'create-rsa': 'TPM2_CreatePrimary RSA-2048 (Flush untimed)',
    'create-ecc': 'TPM2_CreatePrimary ECC P-256 (Flush untimed)',
    'tpm12-getcap': 'TPM 1.2 GetCapability', 'tpm12-extend': 'TPM 1.2 Extend',
}

def med(d):
    return statistics.median(d.values()) if d else None

def ratio(a, b):
    common = sorted(set(a) & set(b))
    rs = [a[p] / b[p] for p in common if b[p]]
    return statistics.median(rs) if rs else None

def fmt(v, digits=1):
    if v is None:
        return '—'
    if isinstance(v, str):
        return v
    return f'{v:,.{digits}f}'

rows = []
def row(metric, a, b, limit=None, digits=1):
    rows.append((metric, fmt(med(a), digits), fmt(med(b), digits),
                 fmt(ratio(a, b), 2), fmt(limit, digits)))

echo = {k: med(res[('echo', 'echo', k)]) for k in ('p50', 'p99')}
for w, name in workload_labels.items():
    a_, b_ = ('vtpmd', w, 'p50'), ('swtpm', w, 'p50')
    if not res.get(a_):
        continue
    for q in ('p50', 'p99'):
        lib = med(res[('limit', w, q)])
        limit = lib + echo[q] if lib is not None and echo[q] is not None else None
        note = ''
        if w == 'nv-write':
            note = ' [state on disk: vtpmd fsyncs file + dir, swtpm 0.7.1 never fsyncs: NOT equal durability]'
        row(f'{name} {q} µs{note}', res[('vtpmd', w, q)], res[('swtpm', w, q)], limit)
    if w == 'getrandom':
        lib = med(res[('limit', w, 'p50')])
        row(f'{name} ops/s', res[('vtpmd', w, 'ops_s')], res[('swtpm', w, 'ops_s')],
            1e6 / (lib + echo['p50']) if lib and echo['p50'] else None, 0)
for q in ('p50', 'p99'):
    if res.get(('vtpmd-tmpfs', 'nv-write', q)):
        lib = med(res[('limit', 'nv-write', q)])
        row(f'TPM2_NV_Write(32 B) {q} µs [state on tmpfs: fsync free, equal durability]',
            res[('vtpmd-tmpfs', 'nv-write', q)], res[('swtpm-tmpfs', 'nv-write', q)],
            lib + echo[q] if lib is not None and echo[q] is not None else None)
row(f'bare echo round trip ({transport}) p50 µs', {}, {}, echo['p50'])
for state in ('fresh', 'existing'):
    for m, text in (('accept', 'control socket accepting'), ('getcap', 'GET_CAPABILITY answered'),
                    ('init', 'SET_DATAFD + INIT done' if transport == 'datafd' else 'INIT done'),
                    ('startup', 'first TPM2_Startup answered')):
        row(f'start-up ({state} state): exec → {text}, ms',
            start[('vtpmd', state, m)], start[('swtpm', state, m)], None, 2)
for count in (1, 100):
    for field in ('RSS', 'PSS', 'Anonymous'):
        if mem.get(('vtpmd', count, field)):
            row(f'memory, {count} idle initialised instance(s): {field} KiB per instance',
                mem[('vtpmd', count, field)], mem[('swtpm', count, field)], None, 0)

def per_command(label):
    c = calls.get(label, {})
    if 200 not in c or 2200 not in c:
        return None, ''
    names = set(c[200]) | set(c[2200])
    diff = {n: (c[2200].get(n, 0) - c[200].get(n, 0)) / 2000 for n in names}
    diff = {n: v for n, v in diff.items() if v >= 0.05}
    detail = ', '.join(f'{n} {v:.2f}' for n, v in sorted(diff.items(), key=lambda x: -x[1]))
    return sum(diff.values()), detail

va, vd = per_command('vtpmd')
sa, sd = per_command('swtpm')
rows.append(('system calls per GetRandom in the daemon (strace -c -f -p)',
             f'{va:.2f} ({vd})' if va is not None else '—',
             f'{sa:.2f} ({sd})' if sa is not None else '—',
             f'{va / sa:.2f}' if va and sa else '—', '3 (wait, read, write)'))

print(f'| metric | vtpmd | swtpm | ratio vtpmd/swtpm (median of {pairs} pair ratios) | limit |')
print('|---|---:|---:|---:|---:|')
for r in rows:
    print('| ' + ' | '.join(r) + ' |')
print()
print(f'Transport: {transport}. Latency rows: median over runs of each run\'s percentile; limit = '
      'libtpms in-process (state in memory) + bare echo round trip, same percentile.')
PY

#!/bin/sh
# Installs dependencies, builds vtpmd and starts a demo TPM 2.0 instance the way libvirt starts
# swtpm, then prints the QEMU arguments that attach a VM to it.
set -eu
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
[ -d build ] || meson setup build
ninja -C build daemon/vtpmd

demo=${VTPMD_DEMO_DIR:-/tmp/vtpmd-demo}
mkdir -p "$demo/state"
chmod 0700 "$demo" "$demo/state"
if [ -f "$demo/vtpmd.pid" ] && kill -0 "$(cat "$demo/vtpmd.pid")" 2>/dev/null; then
    echo "demo instance already running (pid $(cat "$demo/vtpmd.pid"))"
else
    ./build/daemon/vtpmd socket --tpm2 \
        --ctrl type=unixio,path="$demo/ctrl.sock",mode=0600 \
        --tpmstate dir="$demo/state",mode=0600 \
        --log file="$demo/vtpmd.log",level=1 \
        --pid file="$demo/vtpmd.pid" --daemon
    echo "vtpmd running (pid $(cat "$demo/vtpmd.pid")), log in $demo/vtpmd.log"
fi
cat <<ARGS

Attach a QEMU VM to it with:
  qemu-system-x86_64 ... \\
    -chardev socket,id=chrtpm,path=$demo/ctrl.sock \\
    -tpmdev emulator,id=tpm0,chardev=chrtpm \\
    -device tpm-tis,tpmdev=tpm0

Stop it with:
  swtpm_ioctl --unix $demo/ctrl.sock -s
ARGS

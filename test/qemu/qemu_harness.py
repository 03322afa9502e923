"""Shared machinery for the QEMU end-to-end tests.

Starts vtpmd exactly the way libvirt starts swtpm (control socket only, the
data channel arrives from QEMU via CMD_SET_DATAFD), boots QEMU + SeaBIOS with
`-tpmdev emulator` and a Debian kernel + busybox initramfs built here, talks
QMP, and reads the serial console.

Missing peers (qemu-system-x86_64, SeaBIOS, the Debian kernel, a static
busybox, tpm2-tools with the swtpm TCTI) make the tests FAIL, never skip.

Environment:
  VTPMD            daemon binary (default: build/daemon/vtpmd of this repo)
  VTPMD_QEMU       qemu binary (default qemu-system-x86_64 on PATH)
  VTPMD_KERNEL     guest kernel (default: newest /boot/vmlinuz-*)
  VTPMD_BUSYBOX    static busybox (default /bin/busybox)
  VTPMD_KEEP_TMP=1 keep the temporary directories (logs, serial output)
"""

import glob
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
VTPMD = os.environ.get('VTPMD') or os.path.join(REPO, 'build', 'daemon', 'vtpmd')
QEMU = os.environ.get('VTPMD_QEMU') or shutil.which('qemu-system-x86_64') or 'qemu-system-x86_64'
BUSYBOX = os.environ.get('VTPMD_BUSYBOX') or '/bin/busybox'
KEEP_TMP = os.environ.get('VTPMD_KEEP_TMP') == '1'

# The marker every line of structured guest output starts with.
MARK = '@@VTPM '

# ---------------------------------------------------------------- TPM bytes

# TPM2_GetRandom(16)
TPM2_GETRANDOM = bytes.fromhex('80010000000c0000017b0010')
# TPM_GetRandom(16) (TPM 1.2)
TPM12_GETRANDOM = bytes.fromhex('00c10000000e0000004600000010')


def tpm2_pcr_extend_cmd(pcr: int, digest: bytes) -> bytes:
    """TPM2_PCR_Extend(pcr, sha256 digest) with an empty password session."""
    assert len(digest) == 32
    auth = (0x40000009).to_bytes(4, 'big') + b'\x00\x00' + b'\x00' + b'\x00\x00'
    body = (pcr.to_bytes(4, 'big') + len(auth).to_bytes(4, 'big') + auth +
            (1).to_bytes(4, 'big') + (0x000b).to_bytes(2, 'big') + digest)
    size = 10 + len(body)
    return (0x8002).to_bytes(2, 'big') + size.to_bytes(4, 'big') + (0x182).to_bytes(4, 'big') + body


def extended(old: bytes, digest: bytes) -> bytes:
    return hashlib.sha256(old + digest).digest()


def shell_octal(data: bytes) -> str:
    """A printf(1) format string producing exactly `data`."""
    return ''.join('\\%03o' % b for b in data)


# ---------------------------------------------------------------- peers

def find_kernel() -> str:
    env = os.environ.get('VTPMD_KERNEL')
    if env:
        return env
    kernels = sorted(glob.glob('/boot/vmlinuz-*'))
    return kernels[-1] if kernels else ''


def require_peers(case: unittest.TestCase, tpm2_tools: bool = False) -> None:
    """Fail (not skip) with a clear message when something we drive is missing."""
    problems = []
    if not os.access(VTPMD, os.X_OK):
        problems.append(f'vtpmd binary not executable: {VTPMD} (set VTPMD or build with ninja -C build)')
    if not (os.path.isabs(QEMU) and os.access(QEMU, os.X_OK)):
        problems.append(f'{QEMU} not found (Debian package qemu-system-x86)')
    if not os.path.exists('/usr/share/seabios/bios-256k.bin'):
        problems.append('SeaBIOS not found at /usr/share/seabios/bios-256k.bin (Debian package seabios)')
    kernel = find_kernel()
    if not kernel or not os.access(kernel, os.R_OK):
        problems.append('no readable guest kernel /boot/vmlinuz-* (Debian package linux-image-amd64)')
    if not os.access(BUSYBOX, os.X_OK):
        problems.append(f'{BUSYBOX} not found (Debian package busybox-static)')
    else:
        with open(BUSYBOX, 'rb') as f:
            head = f.read(1 << 20)
        if b'ld-linux' in head:
            problems.append(f'{BUSYBOX} is dynamically linked; the initramfs needs busybox-static')
    if tpm2_tools:
        if not shutil.which('tpm2_pcrread'):
            problems.append('tpm2_pcrread not found (Debian package tpm2-tools)')
        if not glob.glob('/usr/lib/*/libtss2-tcti-swtpm.so*') and not glob.glob('/usr/lib/libtss2-tcti-swtpm.so*'):
            problems.append('libtss2-tcti-swtpm not found (Debian package libtss2-tcti-swtpm0)')
    if problems:
        case.fail('missing peer(s):\n  ' + '\n  '.join(problems))


def kernel_tpm_drivers(kernel: str) -> dict:
    """{'CONFIG_TCG_TPM': 'y'|'m'|None, ...} from the matching /boot/config-*."""
    version = os.path.basename(kernel)[len('vmlinuz-'):]
    cfg = f'/boot/config-{version}'
    result = {k: None for k in ('CONFIG_TCG_TPM', 'CONFIG_TCG_TIS', 'CONFIG_TCG_TIS_CORE', 'CONFIG_TCG_CRB')}
    if os.path.exists(cfg):
        with open(cfg) as f:
            for line in f:
                m = re.match(r'(CONFIG_TCG_\w+)=(\w)', line)
                if m and m.group(1) in result:
                    result[m.group(1)] = m.group(2)
    return result


# ---------------------------------------------------------------- initramfs

def _cpio_entry(name: str, mode: int, data: bytes = b'', rdev: tuple = (0, 0), ino: int = 0) -> bytes:
    fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(name) + 1, 0]
    hdr = b'070701' + b''.join(b'%08X' % v for v in fields)
    out = hdr + name.encode() + b'\0'
    out += b'\0' * (-len(out) % 4)
    out += data
    out += b'\0' * (-len(out) % 4)
    return out


def build_cpio(entries: list) -> bytes:
    """entries: (name, kind, payload) with kind dir|file|exe|chr|symlink."""
    out = b''
    for ino, (name, kind, payload) in enumerate(entries, start=1):
        if kind == 'dir':
            out += _cpio_entry(name, stat.S_IFDIR | 0o755, ino=ino)
        elif kind == 'file':
            out += _cpio_entry(name, stat.S_IFREG | 0o644, payload, ino=ino)
        elif kind == 'exe':
            out += _cpio_entry(name, stat.S_IFREG | 0o755, payload, ino=ino)
        elif kind == 'chr':
            out += _cpio_entry(name, stat.S_IFCHR | 0o600, rdev=payload, ino=ino)
        elif kind == 'symlink':
            out += _cpio_entry(name, stat.S_IFLNK | 0o777, payload.encode(), ino=ino)
        else:
            raise ValueError(kind)
    out += _cpio_entry('TRAILER!!!', 0)
    out += b'\0' * (-len(out) % 512)
    return out


# The guest's /init. Parameters come from the kernel command line:
#   vtpm.extend=1   extend PCR 16 (TPM 2) with EXTEND_DIGEST through /dev/tpm0
#   vtpm.end=poweroff|wait|loop
#       poweroff: `poweroff -f` after reporting (QEMU exits; -no-reboot)
#       wait:     idle until the host quits QEMU through QMP
#       loop:     every second print a "tick" line with PCR 16 and fresh random
#                 bytes, until the host quits QEMU
# Every result line starts with MARK so the host can parse the serial log.
INIT_TEMPLATE = r'''#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /tmp
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev
/bin/busybox --install -s /bin
export PATH=/bin
M='@@MARK@@'
EXTEND=0; END=poweroff
for a in $(cat /proc/cmdline); do
  case "$a" in
    vtpm.extend=*) EXTEND=${a#vtpm.extend=} ;;
    vtpm.end=*) END=${a#vtpm.end=} ;;
  esac
done
# TPM drivers that are modules (none with Debian's kernel: they are built in)
for ko in @@MODULES@@; do insmod "$ko" || echo "${M}error insmod $ko"; done
T=/sys/class/tpm/tpm0
n=0
while [ ! -e $T/tpm_version_major ] && [ $n -lt 50 ]; do sleep 0.1; n=$((n+1)); done
echo "${M}begin"
if [ ! -e $T ]; then
  echo "${M}error no /sys/class/tpm/tpm0"
  dmesg | grep -i tpm | sed "s/^/${M}dmesg /"
fi
echo "${M}version $(cat $T/tpm_version_major 2>&1)"
echo "${M}description $(cat $T/device/description 2>/dev/null | head -n 1)"
echo "${M}driver $(basename $(readlink $T/device/driver) 2>/dev/null)"
dmesg | grep -i -E 'tpm|crb' | sed "s/^/${M}dmesg /"

# transact HEXNAME PRINTF-FORMAT: one command through /dev/tpm0, response as hex
transact() {
  exec 3<>/dev/tpm0 || { echo "${M}error open /dev/tpm0"; return; }
  printf "$2" >&3
  echo "${M}$1 $(dd bs=4096 count=1 <&3 2>/dev/null | od -A n -v -t x1 | tr -d ' \n')"
  exec 3<&-
}

pcrs() {
  if [ -d $T/pcr-sha256 ]; then
    for i in 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16; do
      echo "${M}pcr-sha256 $i $(cat $T/pcr-sha256/$i 2>&1)"
    done
  fi
  if [ -e $T/pcrs ]; then
    sed "s/^/${M}pcrs12 /" $T/pcrs
    for f in enabled active owned temp_deactivated; do
      [ -e $T/$f ] && echo "${M}tpm12-$f $(cat $T/$f)"
    done
  fi
}

if [ "$(cat $T/tpm_version_major 2>/dev/null)" = 2 ]; then
  pcrs
  transact getrandom '@@TPM2_GETRANDOM@@'
  if [ "$EXTEND" = 1 ]; then
    transact extend '@@TPM2_EXTEND@@'
    echo "${M}pcr16-after-extend $(cat $T/pcr-sha256/16)"
  fi
else
  pcrs
  transact getrandom '@@TPM12_GETRANDOM@@'
fi
if [ -r /sys/kernel/security/tpm0/binary_bios_measurements ] || mount -t securityfs securityfs /sys/kernel/security 2>/dev/null; then
  if [ -r /sys/kernel/security/tpm0/binary_bios_measurements ]; then
    echo "${M}eventlog $(base64 -w 0 /sys/kernel/security/tpm0/binary_bios_measurements)"
  fi
fi
echo "${M}done"
case "$END" in
  poweroff) sync; poweroff -f ;;
  loop)
    t=0
    while true; do
      sleep 1; t=$((t+1))
      if [ -d $T/pcr-sha256 ]; then p=$(cat $T/pcr-sha256/16 2>&1); else p=-; fi
      exec 3<>/dev/tpm0
      printf '@@TPM2_GETRANDOM@@' >&3
      r=$(dd bs=4096 count=1 <&3 2>/dev/null | od -A n -v -t x1 | tr -d ' \n')
      exec 3<&-
      echo "${M}tick $t $p $r"
    done ;;
  *) while true; do sleep 3600; done ;;
esac
'''

# The digest guests extend into PCR 16 (vtpm.extend=1).
EXTEND_DIGEST = hashlib.sha256(b'vtpmd qemu test').digest()


def build_initramfs(path: str, kernel: str) -> None:
    cfg = kernel_tpm_drivers(kernel)
    modules = []
    entries = [('bin', 'dir', None), ('dev', 'dir', None), ('proc', 'dir', None), ('sys', 'dir', None),
               ('tmp', 'dir', None), ('lib', 'dir', None),
               ('dev/console', 'chr', (5, 1)), ('dev/ttyS0', 'chr', (4, 64))]
    if 'm' in cfg.values():
        # Copy tpm.ko, tpm_tis_core.ko, tpm_tis.ko, tpm_crb.ko and their deps (modules.dep).
        version = os.path.basename(kernel)[len('vmlinuz-'):]
        moddir = f'/lib/modules/{version}'
        deps = {}
        with open(os.path.join(moddir, 'modules.dep')) as f:
            for line in f:
                mod, _, rest = line.partition(':')
                deps[mod] = rest.split()
        order = []

        def want(mod):
            for d in deps.get(mod, []):
                want(d)
            if mod not in order:
                order.append(mod)
        for name in ('tpm_tis', 'tpm_crb'):
            for mod in deps:
                if re.search(rf'/{name}\.ko(\.\w+)?$', mod):
                    want(mod)
        for mod in order:
            with open(os.path.join(moddir, mod), 'rb') as f:
                data = f.read()
            if mod.endswith('.xz') or mod.endswith('.zst'):
                raise RuntimeError(f'compressed module {mod}: not supported by this test')
            base = os.path.basename(mod)
            entries.append(('lib/' + base, 'file', data))
            modules.append('/lib/' + base)
    init = (INIT_TEMPLATE.replace('@@MARK@@', MARK)
            .replace('@@MODULES@@', ' '.join(modules))
            .replace('@@TPM2_GETRANDOM@@', shell_octal(TPM2_GETRANDOM))
            .replace('@@TPM12_GETRANDOM@@', shell_octal(TPM12_GETRANDOM))
            .replace('@@TPM2_EXTEND@@', shell_octal(tpm2_pcr_extend_cmd(16, EXTEND_DIGEST))))
    with open(BUSYBOX, 'rb') as f:
        bb = f.read()
    entries += [('bin/busybox', 'exe', bb), ('init', 'exe', init.encode())]
    with open(path, 'wb') as f:
        f.write(build_cpio(entries))


# ---------------------------------------------------------------- processes

def die_with_parent() -> None:
    """preexec_fn: the child gets SIGKILL if this test process dies, so a killed
    or timed-out test run never leaves QEMU or vtpmd behind. (Within a run every
    wait has its own deadline and teardown kills every process we started.)"""
    import ctypes
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def wait_path(path: str, timeout: float, proc: subprocess.Popen = None) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path):
            return True
        if proc is not None and proc.poll() is not None:
            return False
        time.sleep(0.02)
    return os.path.exists(path)


def free_port_pair() -> int:
    """A port P such that P and P+1 are free on 127.0.0.1 right now."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(('127.0.0.1', 0))
            p = s.getsockname()[1]
        if p >= 65535:
            continue
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(('127.0.0.1', p))
                b.bind(('127.0.0.1', p + 1))
            return p
        except OSError:
            continue
    raise RuntimeError('no free port pair')


def read_text(path: str) -> str:
    try:
        with open(path, 'rb') as f:
            return f.read().decode('utf-8', 'replace')
    except OSError:
        return ''


def tail(text: str, lines: int = 40) -> str:
    return '\n'.join(text.splitlines()[-lines:])


class Vtpmd:
    """vtpmd started like libvirt starts swtpm (no --server; data fd via CMD_SET_DATAFD)."""

    def __init__(self, workdir: str, name: str, tpm2: bool, statedir: str = None):
        self.name = name
        self.tpm2 = tpm2
        self.dir = os.path.join(workdir, name)
        os.makedirs(self.dir, exist_ok=True)
        self.statedir = statedir or os.path.join(self.dir, 'state')
        os.makedirs(self.statedir, exist_ok=True)
        self.ctrl = os.path.join(self.dir, 'ctrl.sock')
        self.log = os.path.join(self.dir, 'vtpmd.log')
        self.pidfile = os.path.join(self.dir, 'vtpmd.pid')
        self.args = [VTPMD, 'socket'] + (['--tpm2'] if tpm2 else []) + [
            '--ctrl', f'type=unixio,path={self.ctrl},mode=0600',
            '--tpmstate', f'dir={self.statedir},mode=0600',
            '--log', f'file={self.log},level=20',
            '--terminate',
            '--pid', f'file={self.pidfile}']
        self.proc = None
        self.stderr = os.path.join(self.dir, 'vtpmd.stderr')

    def start(self) -> None:
        with open(self.stderr, 'wb') as err:
            self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                         preexec_fn=die_with_parent)
        # libvirt waits for the control socket to appear before starting QEMU.
        if not wait_path(self.ctrl, 10, self.proc):
            raise AssertionError(f'vtpmd {self.name}: control socket {self.ctrl} did not appear '
                                 f'(exit {self.proc.poll()}): {read_text(self.stderr)}')

    def wait_exit(self, timeout: float):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def diagnostics(self) -> str:
        return (f'--- vtpmd {self.name} stderr ---\n{tail(read_text(self.stderr))}\n'
                f'--- vtpmd {self.name} log (tail) ---\n{tail(read_text(self.log), 60)}')


class Qmp:
    """A tiny QMP client (one command at a time, events are collected)."""

    def __init__(self, path: str, timeout: float = 10):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b''
        self.events = []
        greeting = self._read()
        if 'QMP' not in greeting:
            raise AssertionError(f'unexpected QMP greeting {greeting}')
        self.execute('qmp_capabilities')

    def _read(self) -> dict:
        while b'\n' not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError('QMP connection closed')
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b'\n')
        return json.loads(line)

    def execute(self, command: str, **arguments):
        msg = {'execute': command}
        if arguments:
            msg['arguments'] = arguments
        self.sock.sendall(json.dumps(msg).encode() + b'\n')
        while True:
            reply = self._read()
            if 'event' in reply:
                self.events.append(reply)
                continue
            if 'error' in reply:
                raise AssertionError(f'QMP {command} failed: {reply["error"]}')
            return reply.get('return')

    def close(self) -> None:
        self.sock.close()


class Vm:
    """qemu-system-x86_64 + SeaBIOS + Debian kernel + our initramfs, TPM via vtpmd."""

    def __init__(self, workdir: str, name: str, vtpmd: Vtpmd, device: str, machine: str,
                 kernel: str, initrd: str, append: str = ''):
        self.name = name
        self.dir = os.path.join(workdir, name)
        os.makedirs(self.dir, exist_ok=True)
        self.serial = os.path.join(self.dir, 'serial.log')
        self.qmp_path = os.path.join(self.dir, 'qmp.sock')
        self.stderr = os.path.join(self.dir, 'qemu.stderr')
        self.vtpmd = vtpmd
        self.args = [
            QEMU, '-nographic', '-nodefaults', '-machine', machine, '-accel', 'tcg',
            '-m', '256', '-smp', '1', '-no-reboot', '-boot', 'menu=off',
            '-serial', f'file:{self.serial}',
            '-qmp', f'unix:{self.qmp_path},server=on,wait=off',
            '-chardev', f'socket,id=chrtpm,path={vtpmd.ctrl}',
            '-tpmdev', 'emulator,id=tpm0,chardev=chrtpm',
            '-device', f'{device},tpmdev=tpm0',
            '-kernel', kernel, '-initrd', initrd,
            '-append', ('console=ttyS0 panic=-1 quiet ' + append).strip(),
        ]
        self.proc = None
        self.qmp = None
        self.t_start = None

    def start(self) -> None:
        self.t_start = time.monotonic()
        with open(self.stderr, 'wb') as err:
            self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                         preexec_fn=die_with_parent)

    def connect_qmp(self, timeout: float = 20) -> Qmp:
        if not wait_path(self.qmp_path, timeout, self.proc):
            raise AssertionError(f'QEMU {self.name}: no QMP socket (exit {self.proc.poll()})\n'
                                 + self.diagnostics())
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.qmp = Qmp(self.qmp_path)
                return self.qmp
            except (ConnectionRefusedError, FileNotFoundError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def serial_text(self) -> str:
        return read_text(self.serial)

    def results(self) -> list:
        """The structured guest lines (MARK stripped) seen so far."""
        return [line[line.index(MARK) + len(MARK):].rstrip('\r')
                for line in self.serial_text().splitlines() if MARK in line]

    def wait_for(self, predicate, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while True:
            lines = self.results()
            hit = predicate(lines)
            if hit:
                return hit
            if self.proc.poll() is not None:
                # One more look: the guest may have written its last line just before exiting.
                hit = predicate(self.results())
                if hit:
                    return hit
                raise AssertionError(f'QEMU {self.name} exited ({self.proc.returncode}) before {what}\n'
                                     + self.diagnostics())
            if time.monotonic() > deadline:
                raise AssertionError(f'QEMU {self.name}: timeout waiting for {what}\n' + self.diagnostics())
            time.sleep(0.1)

    def wait_done(self, timeout: float = 100) -> dict:
        self.wait_for(lambda ls: 'done' in ls, timeout, 'the guest to report "done"')
        return parse_results(self.results())

    def wait_exit(self, timeout: float):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        if self.qmp is not None:
            try:
                self.qmp.close()
            except OSError:
                pass
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def diagnostics(self) -> str:
        return (f'--- QEMU {self.name} command ---\n{" ".join(self.args)}\n'
                f'--- QEMU {self.name} stderr ---\n{tail(read_text(self.stderr))}\n'
                f'--- serial (tail) ---\n{tail(self.serial_text(), 30)}\n' + self.vtpmd.diagnostics())


def parse_results(lines: list) -> dict:
    """Turn the guest's MARK lines into a dict."""
    r = {'pcr': {}, 'pcr12': {}, 'dmesg': [], 'errors': [], 'ticks': []}
    for line in lines:
        key, _, rest = line.partition(' ')
        if key == 'pcr-sha256':
            idx, _, val = rest.partition(' ')
            r['pcr'][int(idx)] = val.strip().lower()
        elif key == 'pcrs12':
            m = re.match(r'PCR-(\d+):\s*(.*)', rest)
            if m:
                r['pcr12'][int(m.group(1))] = m.group(2).replace(' ', '').lower()
        elif key == 'dmesg':
            r['dmesg'].append(rest)
        elif key == 'error':
            r['errors'].append(rest)
        elif key == 'tick':
            parts = rest.split()
            r['ticks'].append({'n': int(parts[0]), 'pcr16': parts[1].lower(),
                               'random': parts[2] if len(parts) > 2 else ''})
        else:
            r[key] = rest.strip()
    return r


def tpm_response_code(hexresp: str) -> int:
    b = bytes.fromhex(hexresp)
    if len(b) < 10:
        return -1
    return int.from_bytes(b[6:10], 'big')


# ---------------------------------------------------------------- base class

class QemuTestCase(unittest.TestCase):
    """Creates a temp dir, the initramfs, and kills every process in teardown."""

    maxDiff = None
    _initrd_cache = {}

    def setUp(self):
        self.t0 = time.monotonic()
        self._failures_at_start = self._failures_so_far()
        require_peers(self, tpm2_tools=getattr(self, 'NEEDS_TPM2_TOOLS', False))
        self.kernel = find_kernel()
        self.tmp = tempfile.mkdtemp(prefix='vtpmd-qemu-')
        if not KEEP_TMP:
            self.addCleanup(shutil.rmtree, self.tmp, True)
        else:
            print(f'\n[keeping {self.tmp}]', flush=True)
        self.initrd = os.path.join(self.tmp, 'initrd.cpio')
        build_initramfs(self.initrd, self.kernel)
        self.procs = []
        self.addCleanup(self._kill_all)

    def _failures_so_far(self) -> int:
        result = getattr(getattr(self, '_outcome', None), 'result', None)
        if result is None:
            return 1    # unknown runner: always show diagnostics on the way out
        return len(result.failures) + len(result.errors)

    def _kill_all(self):
        for p in reversed(self.procs):
            try:
                p.kill()
            except Exception:   # noqa: BLE001 - teardown must go on
                pass

    def log(self, msg: str) -> None:
        print(f'    [{time.monotonic() - self.t0:5.1f}s] {msg}', flush=True)

    def start_vtpmd(self, name: str, tpm2: bool) -> Vtpmd:
        d = Vtpmd(self.tmp, name, tpm2)
        self.procs.append(d)
        d.start()
        return d

    def start_vm(self, name: str, vtpmd: Vtpmd, device: str, machine: str = 'q35', append: str = '') -> Vm:
        vm = Vm(self.tmp, name, vtpmd, device, machine, self.kernel, self.initrd, append)
        self.procs.append(vm)
        vm.start()
        return vm

    def on_failure_dump(self, *objs):
        """Register diagnostics printed only when the test fails."""
        def dump():
            if self._failures_so_far() > self._failures_at_start or KEEP_TMP:
                for o in objs:
                    print('\n' + o.diagnostics(), flush=True)
        self.addCleanup(dump)

    # --- common assertions

    def assert_query_tpm(self, vm: Vm, model: str) -> None:
        info = vm.qmp.execute('query-tpm')
        self.log(f'QMP query-tpm: {json.dumps(info)}')
        self.assertEqual(len(info), 1, info)
        dev = info[0]
        self.assertEqual(dev.get('id'), 'tpm0', info)
        self.assertEqual(dev.get('model'), model, info)
        opts = dev.get('options', {})
        self.assertEqual(opts.get('type'), 'emulator', info)
        self.assertEqual(opts.get('data', {}).get('chardev'), 'chrtpm', info)

    def assert_both_exit_cleanly(self, vm: Vm, timeout: float = 60) -> None:
        rc = vm.wait_exit(timeout)
        self.assertIsNotNone(rc, f'QEMU {vm.name} did not exit\n' + vm.diagnostics())
        self.assertEqual(rc, 0, f'QEMU {vm.name} exit status\n' + vm.diagnostics())
        err = read_text(vm.stderr)
        self.assertNotRegex(err, r'(?i)tpm', f'QEMU {vm.name} complained about the TPM:\n{err}')
        d = vm.vtpmd
        drc = d.wait_exit(15)
        self.assertIsNotNone(drc, f'vtpmd {d.name} still running after QEMU exited (--terminate)\n'
                             + d.diagnostics())
        self.assertEqual(drc, 0, f'vtpmd {d.name} exit status\n' + d.diagnostics())
        self.assertFalse(os.path.exists(d.ctrl), f'vtpmd {d.name} left its control socket behind')
        self.assertFalse(os.path.exists(d.pidfile), f'vtpmd {d.name} left its pid file behind')


# ---------------------------------------------------------------- event log

def replay_tcg2_event_log(log: bytes, bank: int = 0x000b) -> dict:
    """Replay a TCG2 crypto-agile event log (as SeaBIOS writes it); {pcr: digest}."""
    import struct
    pos = 0
    pcr, etype = struct.unpack_from('<II', log, pos)
    pos += 8 + 20
    (size,) = struct.unpack_from('<I', log, pos)
    pos += 4
    spec = log[pos:pos + size]
    pos += size
    if not spec.startswith(b'Spec ID Event03'):
        raise ValueError('not a crypto-agile log: ' + spec[:16].hex())
    (nalg,) = struct.unpack_from('<I', spec, 24)
    sizes = {}
    for i in range(nalg):
        alg, dsize = struct.unpack_from('<HH', spec, 28 + 4 * i)
        sizes[alg] = dsize
    dlen = sizes.get(bank)
    pcrs = {}
    events = 0
    while pos + 12 <= len(log):
        pcr, etype, count = struct.unpack_from('<III', log, pos)
        if etype == 0 and count == 0:
            break
        pos += 12
        digest = None
        for _ in range(count):
            (alg,) = struct.unpack_from('<H', log, pos)
            pos += 2
            d = log[pos:pos + sizes[alg]]
            pos += sizes[alg]
            if alg == bank:
                digest = d
        (esize,) = struct.unpack_from('<I', log, pos)
        pos += 4 + esize
        if digest is not None:
            old = pcrs.get(pcr, b'\0' * dlen)
            pcrs[pcr] = hashlib.new({0x000b: 'sha256', 0x0004: 'sha1'}[bank], old + digest).digest()
        events += 1
    return pcrs, events


def replay_tcpa_event_log(log: bytes) -> dict:
    """Replay a TPM 1.2 (TCPA, SHA-1) event log; {pcr: digest}."""
    import struct
    pos = 0
    pcrs = {}
    events = 0
    while pos + 32 <= len(log):
        pcr, etype = struct.unpack_from('<II', log, pos)
        digest = log[pos + 8:pos + 28]
        (esize,) = struct.unpack_from('<I', log, pos + 28)
        if etype == 0 and digest == b'\0' * 20 and esize == 0:
            break
        pos += 32 + esize
        pcrs[pcr] = hashlib.sha1(pcrs.get(pcr, b'\0' * 20) + digest).digest()
        events += 1
    return pcrs, events


# ---------------------------------------------------------------- vtpmd's own view

def tpm2_pcrread_after_restart(case, statedir: str, workdir: str, pcrs: list) -> dict:
    """Restart vtpmd on `statedir` with TCP channels and TPM2_Startup(SU_STATE),
    then read `pcrs` (sha256 bank) with tpm2_pcrread through the swtpm TCTI.

    Works because when QEMU quits it sends CMD_SHUTDOWN and vtpmd then issues
    the automatic TPM2_Shutdown(SU_STATE) (protocol.md §8.5): the PCR values
    (0-15 are stateSave PCRs) are kept in the saved state and come back on
    Startup(SU_STATE)."""
    port = free_port_pair()
    log = os.path.join(workdir, 'vtpmd-reread.log')
    args = [VTPMD, 'socket', '--tpm2', '--tpmstate', f'dir={statedir},mode=0600',
            '--server', f'type=tcp,port={port}', '--ctrl', f'type=tcp,port={port + 1}',
            '--flags', 'not-need-init,startup-state', '--log', f'file={log},level=20']
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, preexec_fn=die_with_parent)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(('127.0.0.1', port + 1), 1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    case.fail(f'restarted vtpmd did not come up (exit {proc.poll()}): {tail(read_text(log))}')
                time.sleep(0.05)
        env = dict(os.environ, TPM2TOOLS_TCTI=f'swtpm:host=127.0.0.1,port={port}')
        sel = 'sha256:' + ','.join(str(p) for p in pcrs)
        out = subprocess.run(['timeout', '30', 'tpm2_pcrread', sel], env=env, capture_output=True,
                             text=True)
        case.assertEqual(out.returncode, 0, f'tpm2_pcrread failed: {out.stdout}{out.stderr}\n'
                         + tail(read_text(log)))
        values = {}
        for m in re.finditer(r'^\s*(\d+)\s*:\s*0x([0-9A-Fa-f]+)\s*$', out.stdout, re.M):
            values[int(m.group(1))] = m.group(2).lower()
        startup = re.findall(r'.*[Ss]tartup.*', read_text(log))
        return values, out.stdout, startup
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

"""Shared helpers for the migration / interoperability tests (issue 4, items 2-4).

Builds on test/integration/vtpm_client.py (daemon process + control/data
clients) and test/qemu/qemu_harness.py (QEMU + SeaBIOS + Linux guest, QMP);
both are imported read-only from their directories.

Environment:
  VTPMD           vtpmd binary (default build/daemon/vtpmd)
  VTPMD_SWTPM     the peer: Debian's swtpm 0.7.1 (default /usr/bin/swtpm)
  (plus the QEMU variables listed in qemu_harness.py)

A missing peer (swtpm, QEMU, kernel, ...) fails the test; nothing is skipped.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TESTDIR = os.path.dirname(HERE)
for sub in ('integration', 'qemu'):
    p = os.path.join(TESTDIR, sub)
    if p not in sys.path:
        sys.path.insert(0, p)

import vtpm_client as vc  # noqa: E402

VTPMD = vc.VTPMD
SWTPM = os.environ.get('VTPMD_SWTPM') or shutil.which('swtpm') or '/usr/bin/swtpm'


def require_swtpm(case) -> None:
    if not (os.path.isabs(SWTPM) and os.access(SWTPM, os.X_OK)):
        case.fail(f'peer swtpm not found ({SWTPM!r}); install Debian package swtpm (0.7.1) or set VTPMD_SWTPM')


def require_vtpmd(case) -> None:
    if not os.access(VTPMD, os.X_OK):
        case.fail(f'vtpmd binary not executable: {VTPMD} (set VTPMD or ninja -C build)')


_HELP_CACHE: dict[str, str] = {}


def vtpmd_help() -> str:
    if VTPMD not in _HELP_CACHE:
        try:
            out = subprocess.run([VTPMD, 'socket', '--help'], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, timeout=10)
            _HELP_CACHE[VTPMD] = out.stdout.decode(errors='replace')
        except (OSError, subprocess.TimeoutExpired) as e:
            _HELP_CACHE[VTPMD] = f'<{e}>'
    return _HELP_CACHE[VTPMD]


def require_vtpmd_option(case, option: str) -> None:
    """Fail clearly (never skip) while vtpmd does not offer `option` yet."""
    if option not in vtpmd_help():
        case.fail(f'vtpmd does not support {option} yet (`{VTPMD} socket --help` does not list it); '
                  f'this test needs it (issue 4 item 1)')


# ---------------------------------------------------------------------------
# Daemons for the direct (no QEMU) tests: either binary, TCP data + UNIX ctrl
# ---------------------------------------------------------------------------

class Peer(vc.Daemon):
    """vtpm_client.Daemon running an arbitrary binary (vtpmd or swtpm)."""

    def __init__(self, binary: str, **kw):
        self.binary = binary
        if binary != VTPMD and 'log_level' not in kw:
            kw['log_level'] = 4          # swtpm: 5 and up dumps libtpms internals
        super().__init__(**kw)

    @property
    def label(self) -> str:
        return 'vtpmd' if self.binary == VTPMD else 'swtpm'

    def argv(self) -> list[str]:
        a = super().argv()
        a[0] = self.binary
        return a


# ---------------------------------------------------------------------------
# TPM 2.0 commands not in vtpm_client
# ---------------------------------------------------------------------------

TPM2_CC_EVICTCONTROL = 0x120
TPM2_CC_CREATEPRIMARY = 0x131
TPM2_CC_FLUSHCONTEXT = 0x165
TPM2_CC_READPUBLIC = 0x173
PERSISTENT_HANDLE = 0x81000001
NV_INDEX = 0x01500016
NV_SIZE = 32


def ecc_storage_template() -> bytes:
    """TPMT_PUBLIC of an ECC P-256 restricted decryption (storage) key: the
    same template always gives the same key from the same owner seed."""
    attrs = 0x00030072        # fixedTPM|fixedParent|sensitiveDataOrigin|userWithAuth|restricted|decrypt
    t = struct.pack('>HHI', 0x0023, vc.TPM_ALG_SHA256, attrs)
    t += struct.pack('>H', 0)                                  # authPolicy
    t += struct.pack('>HHH', 0x0006, 128, 0x0043)              # AES-128-CFB
    t += struct.pack('>HHH', 0x0010, 0x0003, 0x0010)           # scheme NULL, NIST P-256, kdf NULL
    t += struct.pack('>HH', 0, 0)                              # unique: empty point
    return t


def tpm2_createprimary(hierarchy: int = vc.TPM_RH_OWNER) -> bytes:
    tmpl = ecc_storage_template()
    body = struct.pack('>I', hierarchy) + vc._pw_session()
    body += struct.pack('>HHH', 4, 0, 0)                       # TPM2B_SENSITIVE_CREATE
    body += struct.pack('>H', len(tmpl)) + tmpl                # TPM2B_PUBLIC
    body += struct.pack('>H', 0) + struct.pack('>I', 0)        # outsideInfo, creationPCR
    return vc._tpm2_cmd(TPM2_CC_CREATEPRIMARY, body, vc.TPM2_ST_SESSIONS)


def parse_createprimary(rsp: bytes) -> tuple[int, bytes]:
    """(object handle, TPM2B_PUBLIC bytes)."""
    (handle,) = struct.unpack_from('>I', rsp, 10)
    p = vc._tpm2_params(rsp, handles=1)
    (n,) = struct.unpack_from('>H', p, 0)
    return handle, p[:2 + n]


def tpm2_evictcontrol(obj: int, persistent: int) -> bytes:
    body = struct.pack('>II', vc.TPM_RH_OWNER, obj) + vc._pw_session() + struct.pack('>I', persistent)
    return vc._tpm2_cmd(TPM2_CC_EVICTCONTROL, body, vc.TPM2_ST_SESSIONS)


def tpm2_flushcontext(handle: int) -> bytes:
    return vc._tpm2_cmd(TPM2_CC_FLUSHCONTEXT, struct.pack('>I', handle))


def tpm2_readpublic(handle: int) -> bytes:
    return vc._tpm2_cmd(TPM2_CC_READPUBLIC, struct.pack('>I', handle))


def parse_readpublic(rsp: bytes) -> bytes:
    """TPM2B_PUBLIC followed by the TPM2B name (qualified name left out)."""
    p = rsp[10:]
    (n,) = struct.unpack_from('>H', p, 0)
    (m,) = struct.unpack_from('>H', p, 2 + n)
    return p[:2 + n + 2 + m]


# ---------------------------------------------------------------------------
# TPM 1.2 commands not in vtpm_client (no owner: nvLocked is still FALSE on a
# fresh TPM, so NV_DefineSpace / NV_Write / NV_Read need no authorisation)
# ---------------------------------------------------------------------------

TPM12_ORD_CREATEEK = 0x78
TPM12_ORD_READPUBEK = 0x7C
TPM12_ORD_SAVESTATE = 0x98
TPM12_ORD_NV_DEFINESPACE = 0xCC
TPM12_ORD_NV_WRITEVALUE = 0xCD
TPM12_ORD_NV_READVALUE = 0xCF
TPM12_ST_STATE = 2
TPM12_NV_INDEX = 0x00011000
EK_NONCE = bytes(range(20))


def tpm12_nv_definespace(index: int, size: int) -> bytes:
    pcr_short = struct.pack('>H3sB20s', 3, b'\0\0\0', 0x1f, b'\0' * 20)
    pub = struct.pack('>HI', 0x0018, index) + pcr_short + pcr_short
    pub += struct.pack('>HI', 0x0017, 0x00020002)              # OWNERREAD|OWNERWRITE
    pub += bytes(3) + struct.pack('>I', size)
    return vc.tpm12_cmd(TPM12_ORD_NV_DEFINESPACE, pub + b'\0' * 20)


def tpm12_nv_write(index: int, data: bytes) -> bytes:
    return vc.tpm12_cmd(TPM12_ORD_NV_WRITEVALUE, struct.pack('>III', index, 0, len(data)) + data)


def tpm12_nv_read(index: int, size: int) -> bytes:
    return vc.tpm12_cmd(TPM12_ORD_NV_READVALUE, struct.pack('>III', index, 0, size))


def parse_tpm12_nv_read(rsp: bytes) -> bytes:
    (n,) = struct.unpack_from('>I', rsp, 10)
    return rsp[14:14 + n]


def tpm12_create_ek() -> bytes:
    keyparms = struct.pack('>IHHI', 1, 3, 1, 12) + struct.pack('>III', 2048, 2, 0)   # RSA-2048, OAEP
    return vc.tpm12_cmd(TPM12_ORD_CREATEEK, b'\x5a' * 20 + keyparms)


def tpm12_readpubek() -> bytes:
    return vc.tpm12_cmd(TPM12_ORD_READPUBEK, EK_NONCE)


def tpm12_savestate() -> bytes:
    return vc.tpm12_cmd(TPM12_ORD_SAVESTATE)


# ---------------------------------------------------------------------------
# State files
# ---------------------------------------------------------------------------

def blob_header(path: str) -> tuple[int, int, int, int, int]:
    """(version, min_version, hdrsize, flags, totlen) of a stored blob (§7.4)."""
    with open(path, 'rb') as f:
        head = f.read(10)
    return struct.unpack('>BBHHI', head)


def fingerprint(path: str):
    """Everything that changes when a file is (re)written, including atomically
    by rename: inode, size, mtime and content hash. None if absent."""
    try:
        st = os.stat(path)
        with open(path, 'rb') as f:
            digest = hashlib.sha256(f.read()).hexdigest()
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns, digest)


def lock_holder(path: str) -> int | None:
    """PID of the process holding a POSIX write lock on `path` (fcntl F_GETLK
    from this, a third, process), None if nobody does or the file is absent."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    try:
        # struct flock on x86_64 / aarch64: short type, short whence, off_t start, off_t len, pid_t pid
        req = struct.pack('hhxxxxqqixxxx', fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
        res = fcntl.fcntl(fd, fcntl.F_GETLK, req)
        ltype, _, _, _, pid = struct.unpack('hhxxxxqqixxxx', res)
        return None if ltype == fcntl.F_UNLCK else pid
    finally:
        os.close(fd)


def wait_lock_holder(path: str, want: int | None, timeout: float) -> int | None:
    deadline = time.monotonic() + timeout
    while True:
        got = lock_holder(path)
        if got == want or time.monotonic() > deadline:
            return got
        time.sleep(0.05)


def write_hex_key(path: str, nbytes: int, seed: bytes) -> bytes:
    key = hashlib.sha256(seed).digest()[:nbytes]
    with open(path, 'w') as f:
        f.write(key.hex() + '\n')
    os.chmod(path, 0o600)
    return key


# ---------------------------------------------------------------------------
# QEMU live migration (on top of test/qemu/qemu_harness.py)
# ---------------------------------------------------------------------------

import qemu_harness as qh  # noqa: E402

GUEST_RAM_MB = '128'
MIGRATION_TIMEOUT = 60.0


class MigDaemon(qh.Vtpmd):
    """qemu_harness.Vtpmd (started as libvirt starts swtpm) with a choice of
    binary and extra options (--migration, --migration-key, ...)."""

    def __init__(self, workdir: str, name: str, binary: str, statedir: str | None = None,
                 extra: list[str] | None = None, tpm2: bool = True):
        super().__init__(workdir, name, tpm2, statedir)
        self.binary = binary
        self.args[0] = binary
        if binary != VTPMD:
            self.args = [a.replace(',level=20', ',level=4') for a in self.args]
        self.args += list(extra or [])

    @property
    def label(self) -> str:
        return 'vtpmd' if self.binary == VTPMD else 'swtpm'

    @property
    def pid(self) -> int:
        return self.proc.pid

    def diagnostics(self) -> str:
        return f'--- {self.label} {self.name} argv: {" ".join(self.args)}\n' + super().diagnostics()


def make_vm(case, name: str, daemon: MigDaemon, incoming: str | None = None) -> qh.Vm:
    """A q35 + tpm-tis VM whose guest extends PCR 16 once and then prints a
    tick line (PCR 16 + a GetRandom) every second. With `incoming` it waits
    for a migration stream on that UNIX socket instead of booting."""
    vm = qh.Vm(case.tmp, name, daemon, 'tpm-tis', 'q35', case.kernel, case.initrd,
               'vtpm.end=loop vtpm.extend=1')
    vm.args[vm.args.index('-m') + 1] = GUEST_RAM_MB
    if incoming:
        vm.args += ['-incoming', f'unix:{incoming}']
    case.procs.append(vm)
    return vm


def good_ticks(vm: qh.Vm, after: int) -> list[dict]:
    """Complete tick lines numbered above `after` (a line cut by the
    migration is incomplete on one side and ignored)."""
    ticks = qh.parse_results(vm.results())['ticks']
    return [t for t in ticks if t['n'] > after and len(t['pcr16']) == 64 and len(t['random']) == 56]


def last_tick(vm: qh.Vm) -> int:
    ticks = qh.parse_results(vm.results())['ticks']
    return ticks[-1]['n'] if ticks else 0


def migrate(case, src: qh.Vm, dst: qh.Vm, sock: str, expect: str = 'completed',
            timeout: float = MIGRATION_TIMEOUT) -> tuple[str, dict, float]:
    """QMP `migrate` src -> unix:sock; wait for a final status. Returns
    (status, last query-migrate reply, seconds)."""
    if not qh.wait_path(sock, 20, dst.proc):
        case.fail(f'destination QEMU {dst.name} never listened on {sock}\n' + dst.diagnostics())
    src.qmp.execute('migrate-set-parameters', **{'max-bandwidth': 1 << 30, 'downtime-limit': 500})
    t0 = time.monotonic()
    src.qmp.execute('migrate', uri=f'unix:{sock}')
    info = {}
    while time.monotonic() - t0 < timeout:
        info = src.qmp.execute('query-migrate')
        if info.get('status') in ('completed', 'failed', 'cancelled'):
            break
        time.sleep(0.2)
    status = info.get('status', '?')
    elapsed = time.monotonic() - t0
    if expect and status != expect:
        case.fail(f'migration {src.name} -> {dst.name}: status {status!r} after {elapsed:.1f}s '
                  f'(expected {expect!r}): {info}\n' + src.diagnostics() + '\n' + dst.diagnostics())
    return status, info, elapsed


def wait_running(case, vm: qh.Vm, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    st = {}
    while time.monotonic() < deadline:
        st = vm.qmp.execute('query-status')
        if st.get('status') == 'running':
            return
        time.sleep(0.1)
    case.fail(f'QEMU {vm.name} not running after migration: {st}\n' + vm.diagnostics())


class MigrationTestCase(qh.QemuTestCase):
    """QemuTestCase (initramfs, teardown that kills every process by pid)
    plus daemons of either binary and the migration steps."""

    def setUp(self):
        super().setUp()
        require_swtpm(self)

    def start_daemon(self, name: str, binary: str, statedir: str | None = None,
                     extra: list[str] | None = None) -> MigDaemon:
        d = MigDaemon(self.tmp, name, binary, statedir, extra)
        self.procs.append(d)
        d.start()
        return d

    def boot_source(self, daemon: MigDaemon) -> tuple[qh.Vm, str]:
        """Boot the guest on `daemon`; wait until it extended PCR 16 and ticks.
        Returns (vm, expected PCR 16 hex)."""
        vm = make_vm(self, 'vm-' + daemon.name, daemon)
        self.on_failure_dump(vm)
        vm.start()
        vm.connect_qmp()
        r = vm.wait_done(120)
        self.assertEqual(r['errors'], [], f'guest errors on {daemon.label}')
        self.assertEqual(r.get('version'), '2')
        self.assertEqual(qh.tpm_response_code(r.get('extend', '')), 0, f'guest PCR_Extend: {r.get("extend")}')
        expect16 = qh.extended(b'\0' * 32, qh.EXTEND_DIGEST).hex()
        self.assertEqual(r['pcr16-after-extend'].lower(), expect16, 'PCR 16 after the guest extended it')
        first = vm.wait_for(lambda ls: good_ticks(vm, 0) or None, 60, 'the first tick')
        self.assertEqual(first[0]['pcr16'], expect16)
        self.log(f'guest booted on {daemon.label} {daemon.name} ({time.monotonic() - vm.t_start:.1f}s), '
                 f'PCR 16 = {expect16[:16]}..., ticking')
        return vm, expect16

    def migrate_to(self, src: qh.Vm, daemon: MigDaemon, expect16: str) -> qh.Vm:
        """Start the destination QEMU on `daemon` with -incoming, migrate,
        then require the guest on the destination to keep ticking with the
        PCR 16 value from before and working TPM commands."""
        sock = os.path.join(self.tmp, f'mig-{daemon.name}.sock')
        dst = make_vm(self, 'vm-' + daemon.name, daemon, incoming=sock)
        self.on_failure_dump(dst)
        dst.start()
        dst.connect_qmp()
        before = last_tick(src)
        _, info, secs = migrate(self, src, dst, sock)
        src_label = src.vtpmd.label
        self.log(f'migrated {src_label} {src.vtpmd.name} -> {daemon.label} {daemon.name} in {secs:.1f}s '
                 f'(downtime {info.get("downtime")} ms, {info.get("ram", {}).get("transferred", 0) >> 20} MiB)')
        wait_running(self, dst)
        after = max(before, last_tick(src))
        ticks = dst.wait_for(lambda ls: (lambda t: t if len(t) >= 2 else None)(good_ticks(dst, after)),
                             40, f'2 ticks on the destination after tick {after}')
        for t in ticks:
            self.assertEqual(t['pcr16'], expect16,
                             f'PCR 16 the guest read from {daemon.label} {daemon.name} at tick {t["n"]}')
            self.assertEqual(qh.tpm_response_code(t['random']), 0, f'GetRandom on the destination at tick {t["n"]}')
        self.log(f'destination guest ticks {[t["n"] for t in ticks]}: PCR 16 from {daemon.label} = '
                 f'{expect16[:16]}..., GetRandom ok')
        st = src.qmp.execute('query-status')
        self.assertEqual(st.get('status'), 'postmigrate', f'source QEMU state after migration: {st}')
        return dst

    def quit_source(self, src: qh.Vm) -> None:
        """The source QEMU after a completed migration: QMP quit; its daemon
        gets CMD_SHUTDOWN and must exit 0."""
        src.qmp.execute('quit')
        rc = src.wait_exit(30)
        self.assertEqual(rc, 0, f'source QEMU {src.name} exit\n' + src.diagnostics())
        drc = src.vtpmd.wait_exit(15)
        self.assertEqual(drc, 0, f'source {src.vtpmd.label} exit after QEMU quit\n' + src.vtpmd.diagnostics())

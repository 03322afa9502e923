#!/usr/bin/env python3
"""Durability tests against the real daemon (issue 4 items 5-6, doc/durability.md).

  run.py fault [dir|file]       SIGKILL at random moments of an NV_Write-heavy workload;
                                every acknowledged write must survive and the state must load.
  run.py corruption [dir|file]  bit flips and truncations of each state file: vtpmd starts from
                                the last good copy with a loud log line, or refuses naming the
                                file; it never silently starts a fresh TPM, never overwrites
                                the damaged file.

Environment: VTPMD (daemon binary), DURABILITY_ROUNDS (fault rounds per backend, default 250),
DURABILITY_SEED (random seed; printed so that a failure can be replayed).
Python 3.11 standard library only; TPM command builders from test/integration/vtpm_client.py.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import signal
import socket
import struct
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'integration'))

import vtpm_client as vc  # noqa: E402  (path set up above)

NV_INDEX = 0x01500010
NV_SIZE = 8
TIME_BUDGET = 60.0          # seconds for all fault rounds of one backend
IMAGE_HEADER = 192


class StateDaemon(vc.Daemon):
    """vc.Daemon with an arbitrary --tpmstate value."""

    def __init__(self, tpmstate: str, workdir: str, **kw):
        super().__init__(flags='not-need-init,startup-clear', workdir=workdir, **kw)
        self.tpmstate = tpmstate

    def argv(self) -> list[str]:
        a = super().argv()
        a[a.index('--tpmstate') + 1] = self.tpmstate
        return a

    def text(self) -> str:
        out = []
        for path in (self.log_path, self.stderr_path, self.stdout_path):
            try:
                with open(path, 'r', errors='replace') as f:
                    out.append(f.read())
            except FileNotFoundError:
                pass
        return '\n'.join(out)

    def sigkill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


def fail(message: str) -> None:
    raise AssertionError(message)


def tpmstate_for(backend: str, base: str, extra: str = '') -> tuple[str, str]:
    """(--tpmstate value, path of the state) for a backend under base."""
    if backend == 'dir':
        path = os.path.join(base, 'state')
        os.makedirs(path, exist_ok=True)
        return f'dir={path}{extra}', path
    path = os.path.join(base, 'nvram.img')
    return f'backend-uri=file://{path}{extra}', path


def nv_read(data: vc.Data) -> int:
    rsp = data.transact(vc.tpm2_nv_read(NV_INDEX, NV_SIZE))
    rc = vc.rsp_rc(rsp)
    if rc != 0:
        fail(f'NV_Read failed: rc {rc:#x} (a fresh TPM has no index: state lost?)')
    return int.from_bytes(vc.parse_nv_read(rsp), 'big')


def nv_write(data: vc.Data, value: int) -> None:
    rc = vc.rsp_rc(data.transact(vc.tpm2_nv_write(NV_INDEX, value.to_bytes(NV_SIZE, 'big'))))
    if rc != 0:
        fail(f'NV_Write failed: rc {rc:#x}')


def define_index(data: vc.Data) -> None:
    rc = vc.rsp_rc(data.transact(vc.tpm2_nv_definespace(NV_INDEX, NV_SIZE)))
    if rc != 0:
        fail(f'NV_DefineSpace failed: rc {rc:#x}')


def try_response(sock: socket.socket, timeout: float) -> bytes | None:
    """A complete response if one arrives (or already arrived) before EOF/timeout."""
    sock.settimeout(timeout)
    buf = b''
    try:
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                break
            buf += chunk
            if len(buf) >= 10 and len(buf) >= struct.unpack('>I', buf[2:6])[0]:
                break
    except (socket.timeout, ConnectionError):
        pass
    if len(buf) >= 10 and len(buf) >= struct.unpack('>I', buf[2:6])[0]:
        return buf
    return None


# ---------------------------------------------------------------------------
# Fault injection
# ---------------------------------------------------------------------------

def fault(backend: str, rounds: int, rng: random.Random) -> None:
    base = tempfile.mkdtemp(prefix=f'vtpmd-fault-{backend}-')
    try:
        tpmstate, _ = tpmstate_for(backend, base)
        daemon = StateDaemon(tpmstate, base)
        daemon.start()
        with vc.Data.tcp(daemon.data_port) as data:
            define_index(data)
            nv_write(data, 0)
        daemon.sigkill()

        acked = 0                   # last value whose NV_Write response we received
        in_flight: int | None = None  # value sent, killed before its response arrived
        counter = 0
        kills_in_flight = 0
        started = time.monotonic()
        for rnd in range(rounds):
            if time.monotonic() - started > TIME_BUDGET:
                fail(f'{backend}: {rnd} rounds took more than {TIME_BUDGET} s')
            daemon.start()
            with vc.Data.tcp(daemon.data_port) as data:
                value = nv_read(data)
                allowed = {acked} | ({in_flight} if in_flight is not None else set())
                if value not in allowed:
                    fail(f'{backend} round {rnd}: NV holds {value}, expected one of '
                         f'{sorted(allowed)} (last acknowledged {acked})\n{daemon.text()}')
                acked, in_flight = value, None
                counter = max(counter, value)
                # A few acknowledged writes, then one more with a kill 0-20 ms after sending
                # it, sometimes before its response can have arrived.
                for _ in range(rng.randint(0, 4)):
                    counter += 1
                    nv_write(data, counter)
                    acked = counter
                counter += 1
                data.send(vc.tpm2_nv_write(NV_INDEX, counter.to_bytes(NV_SIZE, 'big')))
                delay = rng.choice([0.0, 0.0, rng.uniform(0, 0.002), rng.uniform(0, 0.020)])
                if delay:
                    time.sleep(delay)
                daemon.sigkill()
                rsp = try_response(data.sock, 0.2)
                if rsp is not None and vc.rsp_rc(rsp) == 0:
                    acked = counter
                else:
                    in_flight = counter
                    kills_in_flight += 1
        daemon.start()
        with vc.Data.tcp(daemon.data_port) as data:
            value = nv_read(data)
        daemon.kill()
        if value not in ({acked} | ({in_flight} if in_flight is not None else set())):
            fail(f'{backend} final: NV holds {value}, last acknowledged {acked}')
        print(f'ok - fault {backend}: {rounds} SIGKILL rounds, {kills_in_flight} with the '
              f'write in flight, last value {value}, {time.monotonic() - started:.1f} s')
    finally:
        shutil.rmtree(base, ignore_errors=True)


# ---------------------------------------------------------------------------
# Corruption
# ---------------------------------------------------------------------------

def sha(path: str) -> str | None:
    try:
        with open(path, 'rb') as f:
            return hashlib.sha256(f.read()).hexdigest()
    except FileNotFoundError:
        return None


def image_sections(path: str) -> dict[str, tuple[int, int]]:
    with open(path, 'rb') as f:
        header = f.read(IMAGE_HEADER)
    out = {}
    for i, name in enumerate(('permall', 'volatilestate')):
        off, length, _section = struct.unpack_from('<III', header, 12 + 12 * i)
        if off:
            out[name] = (off, length)
    return out


def prepare_pristine(backend: str, base: str) -> tuple[str, int]:
    """A state with the NV index, written twice (so the backup holds it too), plus a stored
    volatilestate. Returns (state path, last value)."""
    tpmstate, path = tpmstate_for(backend, base)
    daemon = StateDaemon(tpmstate, base)
    daemon.start()
    with vc.Data.tcp(daemon.data_port) as data:
        define_index(data)
        nv_write(data, 41)
        nv_write(data, 42)
    with vc.Ctrl.unix(daemon.ctrl_path) as ctrl:
        rc = ctrl.store_volatile()
        if rc != 0:
            fail(f'CMD_STORE_VOLATILE failed: {rc:#x}')
    daemon.sigkill()
    return path, 42


def damages(backend: str, path: str, rng: random.Random) -> list[tuple[str, str, object]]:
    """(description, file to damage, action) where action is ('flip', offset) or
    ('truncate', length)."""
    out = []
    if backend == 'dir':
        for name in ('tpm2-00.permall', 'tpm2-00.volatilestate'):
            target = os.path.join(path, name)
            size = os.path.getsize(target)
            offsets = sorted({0, 3, 6, 9, 12, 16, size // 2, size - 20, size - 1,
                              rng.randrange(size)})
            out += [(f'{name} bit flip at {o}', target, ('flip', o)) for o in offsets]
            lengths = sorted({0, 1, 10, size // 2, size - 1})
            out += [(f'{name} truncated to {n}', target, ('truncate', n)) for n in lengths]
        return out
    size = os.path.getsize(path)
    sections = image_sections(path)
    offsets = [0, 8, 10, 12, 13, 16, 20, 24, 28]
    for name, (off, length) in sections.items():
        offsets += [off, off + 9, off + 16, off + length // 2, off + length - 1]
    out += [(f'image bit flip at {o}', path, ('flip', o)) for o in sorted(set(offsets))]
    lengths = [1, 100, 191, 192, sections['permall'][0] + 100, size - 1]
    out += [(f'image truncated to {n}', path, ('truncate', n)) for n in sorted(set(lengths))]
    return out


def apply(target: str, action: tuple) -> None:
    kind, arg = action
    if kind == 'flip':
        with open(target, 'r+b') as f:
            f.seek(arg)
            byte = f.read(1)[0]
            f.seek(arg)
            f.write(bytes([byte ^ 0x10]))
    else:
        os.truncate(target, arg)


def corruption(backend: str, rng: random.Random) -> None:
    base = tempfile.mkdtemp(prefix=f'vtpmd-corrupt-{backend}-')
    try:
        pristine_base = os.path.join(base, 'pristine')
        os.makedirs(pristine_base)
        pristine, value = prepare_pristine(backend, pristine_base)
        cases = damages(backend, pristine, rng)
        fell_back = refused = ignored = 0
        for desc, target, action in cases:
            for backup in (True, False):
                work = os.path.join(base, 'work')
                shutil.rmtree(work, ignore_errors=True)
                os.makedirs(work)
                rel = os.path.relpath(target, pristine_base)
                if backend == 'dir':
                    shutil.copytree(pristine, os.path.join(work, 'state'))
                else:
                    shutil.copy2(pristine, os.path.join(work, 'nvram.img'))
                damaged = os.path.join(work, rel)
                apply(damaged, action)
                damaged_hash = sha(damaged)
                tpmstate, path = tpmstate_for(
                    backend, work, '' if backup else ',backup=false')
                daemon = StateDaemon(tpmstate, work)
                label = f'{backend} {desc} (backup={backup})'
                try:
                    daemon.start()
                    started = True
                except vc.DaemonError:
                    started = False
                if started:
                    try:
                        with vc.Data.tcp(daemon.data_port) as data:
                            got = nv_read(data)
                    except AssertionError as e:
                        daemon.kill()
                        fail(f'{label}: started but {e}\n{daemon.text()}')
                    daemon.kill()
                    if got not in (value - 1, value):
                        fail(f'{label}: NV holds {got}, expected {value - 1} or {value}')
                    text = daemon.text()
                    # A damage that changes nothing checked is impossible here: every byte
                    # of a blob is covered by its header checks or the SHA-256 element, and
                    # every header byte by the image checks or the section reads.
                    loud = 'FALLING BACK' in text or 'restored' in text
                    # libtpms starts without a volatilestate it cannot load (a plain reset,
                    # NV intact): acceptable when the log names the damaged file loudly.
                    named = any('critical' in line and os.path.basename(damaged) in line
                                for line in text.splitlines())
                    if not loud and not named:
                        fail(f'{label}: started without a loud line naming the damage\n{text}')
                    if loud:
                        fell_back += 1
                    else:
                        ignored += 1
                else:
                    text = daemon.text()
                    shown = os.path.basename(damaged)
                    if shown not in text:
                        fail(f'{label}: refused to start, but the error does not name '
                             f'{shown}\n{text}')
                    if backup and 'permall' in desc and 'flip' in desc and backend == 'dir':
                        fail(f'{label}: permall.bak was good, vtpmd should have used it\n'
                             f'{text}')
                    refused += 1
                # The damaged bytes survive: in place, or moved aside as <name>.corrupt.
                kept = {sha(damaged), sha(damaged + '.corrupt')}
                if damaged_hash not in kept:
                    fail(f'{label}: the damaged file was overwritten')
        print(f'ok - corruption {backend}: {len(cases)} damages x 2 backup settings: '
              f'{fell_back} started from the last good copy, {refused} refused naming the file, '
              f'{ignored} started without the damaged volatilestate (logged)')
    finally:
        shutil.rmtree(base, ignore_errors=True)


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in ('fault', 'corruption'):
        print(__doc__)
        return 2
    backends = sys.argv[2:] or ['dir', 'file']
    seed = int(os.environ.get('DURABILITY_SEED', str(random.randrange(1 << 30))))
    print(f'# seed {seed} (DURABILITY_SEED={seed} replays it), daemon {vc.VTPMD}')
    rng = random.Random(seed)
    try:
        for backend in backends:
            if sys.argv[1] == 'fault':
                fault(backend, int(os.environ.get('DURABILITY_ROUNDS', '250')), rng)
            else:
                corruption(backend, rng)
    except AssertionError as e:
        print(f'FAIL: {e}')
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())

"""Shared helpers for the real-client tests (tpm2-tools, TrouSerS/tpm-tools,
swtpm-tools).

Builds on test/integration/vtpm_client.py (daemon start/stop, raw clients);
adds what the third-party clients need: a daemon whose data port P and control
port P+1 are adjacent (the swtpm TCTI and tcsd derive the control port from the
data port), a runner that puts every external command under timeout(1) and
reports its full output on failure, and a check that fails (never skips) when a
peer program is missing.  Python 3.11 standard library only.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
INTEGRATION = os.path.normpath(os.path.join(HERE, '..', 'integration'))
if INTEGRATION not in sys.path:
    sys.path.insert(0, INTEGRATION)

from vtpm_client import (  # noqa: E402
    REFERENCE, Daemon, DaemonTestCase, tcp_listening,
)

TOOL_TIMEOUT = 30.0     # seconds for any single client command
TIMEOUT = shutil.which('timeout') or '/usr/bin/timeout'


def free_port_pair(attempts: int = 200) -> int:
    """A port P such that P and P+1 are both free on 127.0.0.1 right now."""
    for _ in range(attempts):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as a:
            a.bind(('127.0.0.1', 0))
            port = a.getsockname()[1]
            if port >= 65535:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as b:
                try:
                    b.bind(('127.0.0.1', port + 1))
                except OSError:
                    continue
                return port
    raise AssertionError('no pair of adjacent free TCP ports found')


class PairDaemon(Daemon):
    """vtpmd with --server type=tcp,port=P --ctrl type=tcp,port=P+1."""

    def __init__(self, **kw):
        super().__init__(data='tcp', ctrl='tcp', **kw)

    def spawn(self, argv: list[str] | None = None) -> subprocess.Popen:
        self.data_port = free_port_pair()
        self.ctrl_port = self.data_port + 1
        with open(self.stdout_path, 'wb') as out, open(self.stderr_path, 'wb') as err:
            self.proc = subprocess.Popen(argv or self.argv(), stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=err, close_fds=True)
        self.returncode = None
        return self.proc


class Result:
    """Outcome of one external command."""

    def __init__(self, argv: list[str], rc: int, out: str, err: str, seconds: float):
        self.argv, self.rc, self.out, self.err, self.seconds = argv, rc, out, err, seconds

    @property
    def text(self) -> str:
        return self.out + self.err

    def describe(self, limit: int = 4000) -> str:
        return (f'$ {" ".join(self.argv)}\n--- exit status {self.rc} after {self.seconds:.2f}s'
                f'{" (killed by timeout)" if self.rc in (124, 137) else ""}\n'
                f'--- stdout:\n{self.out[-limit:]}\n--- stderr:\n{self.err[-limit:]}')


def require_programs(tc, *names: str) -> dict[str, str]:
    """Absolute paths of the named programs; fails the test (no skip) if any
    is missing."""
    found, missing = {}, []
    for name in names:
        path = name if os.path.isabs(name) else shutil.which(name, path=os.environ.get('PATH', '') +
                                                              ':/usr/sbin:/sbin')
        if path and os.access(path, os.X_OK):
            found[os.path.basename(name)] = path
        else:
            missing.append(name)
    if missing:
        tc.fail(f'required peer program(s) missing: {", ".join(missing)} '
                '(Debian packages: tpm2-tools libtss2-tcti-swtpm0 trousers tpm-tools '
                'swtpm-tools openssl coreutils)')
    return found


class ClientTestCase(DaemonTestCase):
    """DaemonTestCase plus an external-command runner and a command log that is
    printed when the test fails."""

    def setUp(self):
        super().setUp()
        self.commands: list[Result] = []
        self.work = self.tempdir()
        os.chmod(self.work, 0o755)     # tcsd runs as user tss and must reach its files

    # -- external commands ---------------------------------------------------

    def run_cmd(self, argv: list[str], *, env: dict | None = None, ok: bool = True,
                timeout: float = TOOL_TIMEOUT, input: bytes | None = None,
                what: str = '') -> Result:
        full_env = dict(os.environ)
        full_env.update(env or {})
        wrapped = [TIMEOUT, '-k', '3', str(int(timeout))] + argv
        t0 = time.monotonic()
        p = subprocess.run(wrapped, input=input, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           stdin=None if input is not None else subprocess.DEVNULL,
                           env=full_env, cwd=self.work, timeout=timeout + 10)
        r = Result(argv, p.returncode, p.stdout.decode(errors='replace'),
                   p.stderr.decode(errors='replace'), time.monotonic() - t0)
        self.commands.append(r)
        if ok and r.rc != 0:
            self.fail(f'{what or os.path.basename(argv[0])} failed:\n{r.describe()}')
        if not ok and r.rc == 0:
            self.fail(f'{what or os.path.basename(argv[0])} should have failed:\n{r.describe()}')
        return r

    def path(self, name: str) -> str:
        return os.path.join(self.work, name)

    def read(self, name: str) -> bytes:
        with open(self.path(name), 'rb') as f:
            return f.read()

    def write(self, name: str, data: bytes) -> str:
        with open(self.path(name), 'wb') as f:
            f.write(data)
        return self.path(name)

    # -- daemons ---------------------------------------------------------------

    def start_pair_daemon(self, *, tpm2: bool, statedir: str, flags: str | None = None,
                          name: str = 'vtpmd') -> PairDaemon:
        workdir = self.path(name)
        os.makedirs(workdir, exist_ok=True)
        d = PairDaemon(tpm2=tpm2, statedir=statedir, flags=flags, workdir=workdir)
        self.addCleanup(self._teardown_daemon, d)
        d.start()
        return d

    def stop_daemon(self, d: Daemon, what: str = 'vtpmd') -> None:
        """SIGTERM and require exit status 0."""
        d.signal(signal.SIGTERM)
        rc = d.wait_exit(10)
        if rc != 0:
            self.fail(f'{what} did not exit with 0 after SIGTERM (status {rc})\n{d.diagnostics()}')

    def _teardown_daemon(self, d: Daemon) -> None:
        d.kill()
        if self._has_failed():
            sys.stderr.write(f'\n===== {self.id()}: daemon {" ".join(d.argv())} '
                             f'(exit status {d.returncode})\n')
            err = d.stderr_text()
            if err:
                sys.stderr.write(f'--- stderr:\n{err[-3000:]}\n')
            # libtpms' TPM 1.2 debug output shares the log; keep vtpmd's own lines.
            lines = [ln for ln in d.log_text().splitlines() if ' vtpmd[' in ln]
            sys.stderr.write('--- vtpmd log (own lines, last 150):\n' + '\n'.join(lines[-150:]) + '\n')

    def tearDown(self):
        if self._has_failed():
            sys.stderr.write(f'\n===== {self.id()}: client commands (last 12)\n')
            for r in self.commands[-12:]:
                sys.stderr.write(r.describe(1500) + '\n')
        super().tearDown()

    def _has_failed(self) -> bool:
        if super()._has_failed():
            return True
        # tearDown runs before the outcome is recorded: look at the pending error.
        outcome = getattr(self, '_outcome', None)
        return bool(outcome is not None and not getattr(outcome, 'success', True))

    # -- background processes ----------------------------------------------------

    def spawn_bg(self, argv: list[str], *, env: dict | None = None, name: str,
                 limit: float = 240.0) -> subprocess.Popen:
        """A long-running peer (tcsd) under timeout(1), in its own process
        group; teardown stops the group and reaps it."""
        full_env = dict(os.environ)
        full_env.update(env or {})
        log = open(self.path(name + '.out'), 'wb')
        self.addCleanup(log.close)
        proc = subprocess.Popen([TIMEOUT, '-k', '3', str(int(limit))] + argv,
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                env=full_env, cwd=self.work, start_new_session=True)
        self.addCleanup(self.stop_bg, proc, name)
        return proc

    def stop_bg(self, proc: subprocess.Popen, name: str = '') -> int:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()
        return proc.returncode

    def bg_output(self, name: str) -> str:
        try:
            with open(self.path(name + '.out'), 'rb') as f:
                return f.read().decode(errors='replace')
        except OSError:
            return ''

    def wait_listening(self, proc: subprocess.Popen, port: int, name: str, timeout: float = 15.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self.fail(f'{name} exited with status {proc.returncode} before listening on '
                          f'port {port}:\n{self.bg_output(name)[-4000:]}')
            if tcp_listening(port):
                return
            time.sleep(0.05)
        self.fail(f'{name} is not listening on port {port} after {timeout}s:\n'
                  f'{self.bg_output(name)[-4000:]}')


__all__ = ['REFERENCE', 'ClientTestCase', 'PairDaemon', 'Result', 'TOOL_TIMEOUT',
           'free_port_pair', 'require_programs']

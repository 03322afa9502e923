"""Helpers for the vtpmctl tests: run the CLI against a private --root, always with
--no-systemd, and clean up every daemon a test leaves behind.  Python 3.11 stdlib only.

Environment: VTPMCTL (the CLI), VTPMD (the daemon it starts), VTPMD_QEMU (optional).
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, '..', '..'))
sys.path.append(os.path.join(REPO, 'test', 'integration'))

import vtpm_client  # noqa: E402  (shared TPM command builders and channel clients)

VTPMCTL = os.environ.get('VTPMCTL') or os.path.join(REPO, 'build', 'tools', 'vtpmctl')
VTPMD = os.environ.get('VTPMD') or os.path.join(REPO, 'build', 'daemon', 'vtpmd')
QEMU = os.environ.get('VTPMD_QEMU') or shutil.which('qemu-system-x86_64') or 'qemu-system-x86_64'

# Documented exit codes (doc/vtpmctl.md).
(EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NOT_FOUND, EXIT_BUSY, EXIT_VM_ATTACHED,
 EXIT_NOT_RUNNING) = range(7)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f'/proc/{pid}/stat') as f:
            return f.read().split(') ')[-1][0] != 'Z'
    except OSError:
        return False


class VtpmctlTestCase(unittest.TestCase):
    """Each test gets a short --root under /tmp (socket paths must fit in 108 bytes)."""

    def setUp(self) -> None:
        self.root = tempfile.mkdtemp(prefix='vc-', dir='/tmp')
        self.addCleanup(self._cleanup)

    def _cleanup(self) -> None:
        for pidfile in glob.glob(os.path.join(self.root, 'run', '*', 'vtpmd.pid')):
            try:
                pid = int(open(pidfile).read().strip())
                os.kill(pid, signal.SIGKILL)
                os.kill(pid, signal.SIGCONT)
            except (OSError, ValueError):
                pass
        shutil.rmtree(self.root, ignore_errors=True)

    def ctl(self, *args: str, timeout: float = 60, check: int | None = None,
            env: dict | None = None) -> subprocess.CompletedProcess:
        full_env = dict(os.environ, VTPMD=VTPMD)
        full_env.pop('NOTIFY_SOCKET', None)
        if env:
            full_env.update(env)
        argv = [VTPMCTL, '--root', self.root, *args]
        if args and args[0] in ('start', 'stop', 'destroy'):
            argv.insert(4, '--no-systemd')
        p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=full_env)
        if check is not None:
            self.assertEqual(p.returncode, check,
                             f'{" ".join(argv)}\nstdout: {p.stdout}\nstderr: {p.stderr}')
        return p

    def status(self, name: str) -> dict:
        p = self.ctl('status', name, '--json')
        return json.loads(p.stdout)

    def list_json(self) -> list[dict]:
        return json.loads(self.ctl('list', '--json', check=EXIT_OK).stdout)

    def paths(self, name: str) -> dict[str, str]:
        state = os.path.join(self.root, 'lib', name)
        run = os.path.join(self.root, 'run', name)
        return {'state': state, 'tpm': os.path.join(state, 'tpm'),
                'config': os.path.join(state, 'instance.json'),
                'log': os.path.join(state, 'vtpmd.log'), 'run': run,
                'ctrl': os.path.join(run, 'ctrl.sock'), 'pid': os.path.join(run, 'vtpmd.pid')}

    def pid_of(self, name: str) -> int:
        return int(open(self.paths(name)['pid']).read().strip())

    def wait_gone(self, pid: int, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if not pid_alive(pid):
                return True
            time.sleep(0.02)
        return not pid_alive(pid)


class AttachedTpm:
    """A data channel to an instance, set up the way QEMU does it (socketpair +
    CMD_SET_DATAFD, then CMD_INIT): lets a test send raw TPM commands."""

    def __init__(self, ctrl_path: str):
        self.ctrl = vtpm_client.Ctrl.unix(ctrl_path)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        ours.settimeout(vtpm_client.IO_TIMEOUT)
        rc = self.ctrl.set_datafd(theirs.fileno())
        theirs.close()
        if rc != 0:
            raise AssertionError(f'CMD_SET_DATAFD failed: {rc:#x}')
        rc = self.ctrl.init()
        if rc != 0:
            raise AssertionError(f'CMD_INIT failed: {rc:#x}')
        self.data = vtpm_client.Data(ours)

    def transact_ok(self, cmd: bytes) -> bytes:
        rsp = self.data.transact(cmd)
        rc = vtpm_client.rsp_rc(rsp)
        if rc != 0:
            raise AssertionError(f'TPM command failed: rc {rc:#x} ({vtpm_client.hx(rsp[:10])})')
        return rsp

    def close(self) -> None:
        self.data.close()
        self.ctrl.close()

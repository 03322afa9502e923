"""Daemons that die, hang or never start, and the control operations around state."""

import os
import signal
import stat
import struct
import time

import vtpm_client as vc
from harness import (AttachedTpm, EXIT_BUSY, EXIT_FAILED, EXIT_NOT_RUNNING, EXIT_OK,
                     VtpmctlTestCase, pid_alive)

NV_INDEX = 0x01500017
NV_DATA = b'vtpmctl survives SIGKILL'


class FailureTest(VtpmctlTestCase):

    def permall(self, name: str) -> bytes:
        return open(os.path.join(self.paths(name)['tpm'], 'tpm2-00.permall'), 'rb').read()

    def test_sigkill_shows_failed_and_restart_keeps_state(self):
        self.ctl('start', 'k', '--create', check=EXIT_OK)
        tpm = AttachedTpm(self.paths('k')['ctrl'])
        tpm.transact_ok(vc.tpm2_startup())
        tpm.transact_ok(vc.tpm2_nv_definespace(NV_INDEX, len(NV_DATA)))
        tpm.transact_ok(vc.tpm2_nv_write(NV_INDEX, NV_DATA))
        st = self.status('k')
        self.assertTrue(st['vmAttached'])
        self.assertGreaterEqual(st['commandsServed'], 3)
        self.assertIsNotNone(st['lastCommand'])
        before = self.permall('k')
        pid = self.pid_of('k')
        os.kill(pid, signal.SIGKILL)
        self.assertTrue(self.wait_gone(pid, 5))
        tpm.close()

        st = self.status('k')
        self.assertEqual(st['state'], 'failed', st)
        self.assertIn('SIGKILL', st['reason'])
        self.assertIn('vtpmctl start k', st['reason'])
        row = [l for l in self.ctl('list', check=EXIT_OK).stdout.splitlines() if l.startswith('k ')]
        self.assertIn(' failed ', row[0])

        self.ctl('start', 'k', check=EXIT_OK)
        self.assertNotEqual(self.pid_of('k'), pid)
        self.assertEqual(self.status('k')['state'], 'running')
        self.assertEqual(self.permall('k'), before)   # nothing rewrote the permanent state
        tpm = AttachedTpm(self.paths('k')['ctrl'])
        # Without an orderly TPM2_Shutdown the TPM restarts with Startup(CLEAR); NV persists.
        tpm.transact_ok(vc.tpm2_startup())
        rsp = tpm.transact_ok(vc.tpm2_nv_read(NV_INDEX, len(NV_DATA)))
        self.assertEqual(vc.parse_nv_read(rsp), NV_DATA)
        tpm.close()

    def test_stop_escalates_on_a_stopped_daemon(self):
        self.ctl('start', 'hang', '--create', check=EXIT_OK)
        pid = self.pid_of('hang')
        os.kill(pid, signal.SIGSTOP)
        st = self.status('hang')
        self.assertEqual(st['state'], 'failed')
        self.assertIn('does not answer', st['reason'])
        t0 = time.monotonic()
        p = self.ctl('stop', 'hang', '--timeout', '3', check=EXIT_OK, timeout=20)
        elapsed = time.monotonic() - t0
        self.assertIn('SIGKILL', p.stdout)
        self.assertLess(elapsed, 3 + 1.0 + 1.5)   # its budget plus the status probe and slack
        self.assertFalse(pid_alive(pid))
        self.assertEqual(self.status('hang')['state'], 'stopped')
        self.ctl('start', 'hang', check=EXIT_OK)   # and it comes back

    def test_failing_vtpmd_is_reported_at_once(self):
        self.ctl('create', 'bad', check=EXIT_OK)
        fake = os.path.join(self.root, 'fake-vtpmd')
        with open(fake, 'w') as f:
            f.write('#!/bin/sh\necho "vtpmd: cannot open the TPM state: disk on fire" >&2\n'
                    'exit 3\n')
        os.chmod(fake, stat.S_IRWXU)
        t0 = time.monotonic()
        p = self.ctl('--vtpmd', fake, 'start', 'bad', '--timeout', '30')
        self.assertEqual(p.returncode, EXIT_FAILED, p.stderr)
        self.assertLess(time.monotonic() - t0, 5)   # not the 30 s timeout
        self.assertIn('disk on fire', p.stderr)
        self.assertIn('exited with status 3', p.stderr)
        self.assertEqual(p.stdout, '')

    def test_vtpmd_own_error_from_a_locked_state(self):
        # A second daemon on the same state directory fails in vtpmd itself (state lock).
        self.ctl('start', 'lk', '--create', check=EXIT_OK)
        pid_file = self.paths('lk')['pid']
        os.rename(pid_file, pid_file + '.hidden')   # vtpmctl no longer sees the first one
        p = self.ctl('start', 'lk', '--timeout', '20')
        os.rename(pid_file + '.hidden', pid_file)
        self.assertEqual(p.returncode, EXIT_FAILED, p.stderr)
        self.assertIn('vtpmd exited with status', p.stderr)
        self.assertRegex(p.stderr, r'(?i)lock')

    def test_ready_never_comes(self):
        self.ctl('create', 'slow', check=EXIT_OK)
        fake = os.path.join(self.root, 'sleepy')
        with open(fake, 'w') as f:
            f.write('#!/bin/sh\nexec sleep 30\n')
        os.chmod(fake, stat.S_IRWXU)
        t0 = time.monotonic()
        p = self.ctl('--vtpmd', fake, 'start', 'slow', '--timeout', '1')
        self.assertEqual(p.returncode, EXIT_FAILED)
        self.assertIn('READY=1', p.stderr)
        self.assertLess(time.monotonic() - t0, 4)

    def test_ctrl_operations_and_blob_roundtrip(self):
        self.ctl('start', 'c', '--create', check=EXIT_OK)
        self.assertIn('get-stateblob', self.ctl('ctrl', 'c', 'caps', check=EXIT_OK).stdout)
        self.ctl('ctrl', 'c', 'init', check=EXIT_OK)
        self.assertIn('"TPMSpecification"', self.ctl('ctrl', 'c', 'info', check=EXIT_OK).stdout)
        blob = os.path.join(self.root, 'perm.bin')
        self.ctl('ctrl', 'c', 'save', 'permanent', blob, check=EXIT_OK)
        self.assertEqual(oct(os.stat(blob).st_mode & 0o777), '0o600')
        saved = open(blob, 'rb').read()
        self.assertGreater(len(saved), 100)
        p = self.ctl('ctrl', 'c', 'load', 'permanent', blob, check=EXIT_FAILED)
        self.assertIn("ctrl c stop' first", p.stderr)
        self.ctl('ctrl', 'c', 'stop', check=EXIT_OK)
        self.ctl('ctrl', 'c', 'load', 'permanent', blob, check=EXIT_OK)
        self.ctl('ctrl', 'c', 'init', check=EXIT_OK)
        self.assertTrue(self.status('c')['health']['tpmRunning'])
        self.assertEqual(self.ctl('ctrl', 'c', 'save', 'permanent', blob).returncode, EXIT_OK)
        self.ctl('ctrl', 'c', 'save', 'permanent', check=2)          # usage: FILE missing
        self.ctl('ctrl', 'c', 'shutdown', check=EXIT_OK)
        for _ in range(100):
            if self.status('c')['state'] == 'stopped':
                break
            time.sleep(0.02)
        self.assertEqual(self.status('c')['state'], 'stopped')
        self.ctl('ctrl', 'c', 'init', check=EXIT_NOT_RUNNING)

    def test_ctrl_refuses_while_control_channel_is_held(self):
        self.ctl('start', 'held', '--create', check=EXIT_OK)
        holder = vc.Ctrl.unix(self.paths('held')['ctrl'])
        self.assertEqual(holder.get_capability()[0], 0)   # the session is established
        p = self.ctl('ctrl', 'held', 'caps', '--timeout', '1', check=EXIT_BUSY)
        self.assertIn('holds the control channel', p.stderr)
        # stop does not hang on the held channel: it goes straight to SIGTERM
        t0 = time.monotonic()
        p = self.ctl('stop', 'held', '--timeout', '4', check=EXIT_OK)
        self.assertIn('SIGTERM', p.stdout)
        self.assertLess(time.monotonic() - t0, 4)
        holder.close()

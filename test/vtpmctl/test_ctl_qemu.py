"""A real QEMU attached to an instance: list shows it, stop refuses without --force.
QEMU is a required peer: if it is missing the test fails, it never skips."""

import json
import os
import shlex
import shutil
import subprocess
import time

from harness import EXIT_OK, EXIT_VM_ATTACHED, QEMU, VtpmctlTestCase, pid_alive


class QemuAttachedTest(VtpmctlTestCase):

    def start_qemu(self, qemu_args: str) -> subprocess.Popen:
        self.assertTrue(shutil.which(QEMU) or os.access(QEMU, os.X_OK),
                        f'{QEMU} not found: install qemu-system-x86 (a missing peer fails)')
        log = open(os.path.join(self.root, 'qemu.log'), 'wb')
        self.addCleanup(log.close)
        # Paused CPU (-S) is enough: QEMU still connects, passes the data fd and sends CMD_INIT.
        argv = [QEMU, '-nographic', '-nodefaults', '-accel', 'tcg', '-machine', 'pc', '-m', '64',
                '-S', *shlex.split(qemu_args)]
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        self.addCleanup(self.stop_qemu, proc)
        return proc

    def stop_qemu(self, proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)

    def wait_attached(self, name: str, proc: subprocess.Popen, timeout: float = 30) -> dict:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            st = self.status(name)
            if st['vmAttached'] and st['health']['tpmRunning']:
                return st
            if proc.poll() is not None:
                self.fail(f'QEMU exited ({proc.returncode}): '
                          + open(os.path.join(self.root, 'qemu.log')).read())
            time.sleep(0.05)
        self.fail(f'QEMU did not attach within {timeout}s: {st}')

    def test_list_and_stop_with_a_vm_attached(self):
        self.ctl('create', 'vm', check=EXIT_OK)
        self.ctl('create', 'idle', check=EXIT_OK)
        args = self.ctl('start', 'vm', check=EXIT_OK).stdout.strip()
        self.assertEqual(args, self.ctl('qemu-args', 'vm', check=EXIT_OK).stdout.strip())
        self.ctl('start', 'idle', check=EXIT_OK)
        qemu = self.start_qemu(args)
        st = self.wait_attached('vm', qemu)
        self.assertTrue(st['health']['controlConnected'])

        # list while QEMU is attached: answers fast, shows the VM, does not disturb it
        t0 = time.monotonic()
        table = self.ctl('list', check=EXIT_OK).stdout
        self.assertLess(time.monotonic() - t0, 2)
        rows = {line.split()[0]: line for line in table.splitlines()[1:]}
        self.assertRegex(rows['vm'], r'\brunning\b.*\byes\b')
        self.assertRegex(rows['idle'], r'\brunning\b.*\bno\b')
        listed = {e['name']: e for e in json.loads(self.ctl('list', '--json').stdout)}
        self.assertTrue(listed['vm']['vmAttached'])
        self.assertFalse(listed['idle']['vmAttached'])
        self.assertGreaterEqual(listed['vm']['commandsServed'], 1)   # QEMU's probe
        self.assertIsNotNone(listed['vm']['lastCommand'])
        self.assertIsNone(qemu.poll(), 'QEMU died while we listed')

        pid = self.pid_of('vm')
        p = self.ctl('stop', 'vm', check=EXIT_VM_ATTACHED)
        self.assertIn('--force', p.stderr)
        self.assertTrue(pid_alive(pid))
        self.assertIsNone(qemu.poll())

        t0 = time.monotonic()
        p = self.ctl('stop', 'vm', '--force', '--timeout', '5', check=EXIT_OK)
        self.assertLess(time.monotonic() - t0, 5)
        self.assertFalse(pid_alive(pid))
        self.assertEqual(self.status('vm')['state'], 'stopped')
        self.ctl('stop', 'idle', check=EXIT_OK)

"""vtpmd-only health reporting: the --status socket (live health while a VM holds the
control channel) and sd_notify readiness (READY=1 only once every socket listens)."""

import json
import os
import socket
import time
import unittest

from vtpm_client import (REFERENCE, Daemon, DaemonTestCase, Data, rsp_rc, tpm2_getrandom,
                         tpm2_startup, unix_listening)


def read_status(path: str) -> dict:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(3)
        s.connect(path)
        data = b''
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    return json.loads(data)


@unittest.skipIf(REFERENCE, 'vtpmd-only features')
class StatusSocket(DaemonTestCase):

    def test_health_while_control_channel_is_held(self):
        d = Daemon(tpm2=True, data='tcp')
        status = os.path.join(d.dir, 'status.sock')
        d.extra = ['--status', f'path={status}']
        self.addCleanup(self._teardown_daemon, d)
        d.start()
        self.assertTrue(unix_listening(status), 'status socket listens')
        self.assertEqual(os.stat(status).st_mode & 0o777, 0o600, 'status socket mode 0600')

        before = read_status(status)
        self.assertEqual(before['tpm'], '2.0')
        self.assertFalse(before['tpmRunning'])
        self.assertFalse(before['vmAttached'])
        self.assertEqual(before['commandsServed'], 0)
        self.assertIsNone(before['lastCommand'])
        self.assertTrue(before['stateLocked'])
        self.assertEqual(before['pid'], d.proc.pid)

        # A client holds the (single) control connection, as QEMU does: status still answers.
        with d.ctrl() as c, Data.tcp(d.data_port) as data:
            self.assertEqual(c.init(), 0)
            self.assertEqual(rsp_rc(data.transact(tpm2_startup())), 0)
            self.assertEqual(rsp_rc(data.transact(tpm2_getrandom(16))), 0)
            during = read_status(status)
            self.assertTrue(during['controlConnected'])
            self.assertTrue(during['vmAttached'])
            self.assertTrue(during['tpmRunning'])
            self.assertEqual(during['commandsServed'], 2)
            self.assertEqual(during['lastCommand']['name'], 'TPM2_GetRandom')
            self.assertLess(abs(during['lastCommand']['time'] - time.time()), 5)
            self.assertGreaterEqual(during['controlCommands'], 1)
            # The control connection is undisturbed by the status reads.
            self.assertEqual(c.get_config(), (0, 0))

        d.kill()
        self.assertFalse(os.path.exists(status), 'status socket removed at exit')


@unittest.skipIf(REFERENCE, 'vtpmd-only features')
class NotifyReadiness(DaemonTestCase):

    @staticmethod
    def spawn_notified(d, notify_socket: socket.socket) -> None:
        """Starts the daemon with NOTIFY_SOCKET naming a datagram socket the test owns."""
        notify = os.path.join(d.dir, 'notify.sock')
        notify_socket.bind(notify)
        os.environ['NOTIFY_SOCKET'] = notify
        try:
            d.spawn()
        finally:
            del os.environ['NOTIFY_SOCKET']

    def test_ready_only_after_sockets_listen(self):
        d = self.make_daemon(tpm2=True, data='unix', flags='not-need-init')
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as n:
            n.settimeout(5)
            self.spawn_notified(d, n)
            message = n.recv(4096).decode()
            # At the moment READY=1 arrives both sockets already accept connections.
            ctrl_ok = unix_listening(d.ctrl_path)
            data_ok = unix_listening(d.data_path)
        self.assertIn('READY=1', message.split('\n'))
        self.assertIn(f'MAINPID={d.proc.pid}', message)
        self.assertTrue(ctrl_ok and data_ok, 'sockets listen when READY=1 is sent')
        with d.ctrl() as c:
            self.assertEqual(c.get_capability()[0], 0)

    def test_no_ready_when_start_fails(self):
        d = self.make_daemon(tpm2=True, data='unix', flags='not-need-init')
        with open(os.path.join(d.statedir, 'tpm2-00.permall'), 'wb') as f:
            f.write(b'\x02\x01\x00\x0a\x00\x00\x00\x00\x00\x05garbage')  # corrupt header
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as n:
            n.settimeout(0.2)
            self.spawn_notified(d, n)
            code = d.wait_exit(10)
            try:
                message = n.recv(4096).decode()
            except socket.timeout:
                message = ''
        self.assertEqual(code, 1, 'start fails')
        self.assertNotIn('READY=1', message)
        with open(d.stderr_path) as f:
            self.assertIn('tpm2-00.permall', f.read(), 'the error names the state file')


if __name__ == '__main__':
    unittest.main()

"""Process life cycle, storage and command line (protocol.md §2.2, §2.5, §7,
§8, §11, §12 items 10, 15-18)."""

import json
import os
import re
import shutil
import signal
import socket
import stat
import struct
import time
import unittest

from vtpm_client import *  # noqa: F401,F403
from vtpm_client import (REFERENCE, VTPMD, Daemon, DaemonTestCase, Data, hx, run_tool,
                         started_tpm2, wait_closed)

NV_INDEX = 0x01500010
NV_DATA = b'vtpmd persists this NV index!!!!'     # 32 bytes


def snapshot(path: str):
    """(content, inode, mtime) of a file, to detect rewrites."""
    st = os.stat(path)
    with open(path, 'rb') as f:
        return f.read(), st.st_ino, st.st_mtime_ns


def wait_gone(paths, timeout: float = 3.0) -> list[str]:
    """Paths still present after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        left = [p for p in paths if os.path.exists(p)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.01)


class DataFd(DaemonTestCase):
    """§2.5 CMD_SET_DATAFD rules (§12 item 10)."""

    def test_rejected_when_server_configured(self):
        d = self.start_daemon(tpm2=True, data='tcp')
        a, b = socket.socketpair()
        self.addCleanup(a.close)
        self.addCleanup(b.close)
        with d.ctrl() as c:
            self.assertRc(c.set_datafd(b.fileno()), TPM_IOERROR, 'SET_DATAFD with --server')
            self.assertRc(c.set_datafd(None), TPM_IOERROR, 'SET_DATAFD without fd, with --server')
            self.assertEqual(c.get_config(), (0, 0))

    def test_without_fd_is_bad_parameter(self):
        d = self.start_daemon(tpm2=True, data=None)
        with d.ctrl() as c:
            self.assertRc(c.set_datafd(None), TPM_BAD_PARAMETER, 'SET_DATAFD without SCM_RIGHTS')
            self.assertNoMore(c, 'SET_DATAFD')

    def test_only_once_then_again_after_hangup(self):
        d = self.start_daemon(tpm2=True, data=None)
        c = d.ctrl()
        self.addCleanup(c.close)
        ours, theirs = socket.socketpair()
        self.assertRc(c.set_datafd(theirs.fileno()), 0, 'first SET_DATAFD')
        theirs.close()
        other_a, other_b = socket.socketpair()
        self.addCleanup(other_a.close)
        self.addCleanup(other_b.close)
        self.assertRc(c.set_datafd(other_b.fileno()), TPM_IOERROR, 'second SET_DATAFD while connected')
        self.assertRc(c.set_datafd(None), TPM_IOERROR, 'SET_DATAFD without fd while connected')
        # The second fd was not adopted: its peer sees nothing.
        self.assertRc(c.init(), 0, 'CMD_INIT')
        ours.settimeout(5)
        data = Data(ours)
        self.assertTpmOk(data.transact(tpm2_startup()), 'Startup over the first fd')
        self.assertEqual(recv_pending(other_a, 0.05), b'', 'rejected fd must not be served')
        ours.close()
        # After the hang-up the slot is free again.
        deadline = time.monotonic() + 3
        while True:
            n_ours, n_theirs = socket.socketpair()
            rc = c.set_datafd(n_theirs.fileno())
            n_theirs.close()
            if rc == 0:
                break
            n_ours.close()
            self.assertEqual(rc, TPM_IOERROR)
            self.assertLess(time.monotonic(), deadline, 'SET_DATAFD not accepted after the data peer hung up')
            time.sleep(0.02)
        self.addCleanup(n_ours.close)
        n_ours.settimeout(5)
        data2 = Data(n_ours)
        self.assertTpmOk(data2.transact(tpm2_getrandom(8)), 'TPM keeps running across data connections')

    def test_terminate_when_passed_fd_closes(self):
        """libvirt's configuration: no --server, -t, data via SET_DATAFD."""
        d = self.start_daemon(tpm2=True, data=None, terminate=True)
        ours, theirs = socket.socketpair()
        with d.ctrl() as c:
            self.assertRc(c.set_datafd(theirs.fileno()), 0, 'SET_DATAFD')
            theirs.close()
            self.assertRc(c.init(), 0, 'CMD_INIT')
            ours.settimeout(5)
            self.assertTpmOk(Data(ours).transact(tpm2_startup()), 'Startup')
            ours.close()
            self.assertEqual(d.wait_exit(5), 0, 'daemon must exit (status 0) when the data fd closes with -t')
        self.assertEqual(wait_gone([d.ctrl_path]), [], 'control socket path removed')


class Termination(DaemonTestCase):
    """§2.2: -t, CMD_SHUTDOWN, SIGTERM, --ctrl ...,terminate."""

    def test_terminate_on_tcp_data_disconnect(self):
        d = self.start_daemon(tpm2=True, data='tcp', terminate=True)
        with d.ctrl() as c:
            self.assertRc(c.init(), 0, 'CMD_INIT')
        with d.data() as data:
            self.assertTpmOk(data.transact(tpm2_startup()), 'Startup')
            self.assertTrue(d.alive())
        self.assertEqual(d.wait_exit(5), 0, 'daemon must exit with status 0 after the data client left (-t)')

    def test_no_terminate_without_t(self):
        d = self.start_daemon(tpm2=True, data='tcp')
        with d.ctrl() as c:
            self.assertRc(c.init(), 0, 'CMD_INIT')
        for _ in range(2):
            with d.data() as data:
                data.transact(tpm2_getrandom(4))
        self.assertTrue(d.alive(), 'without -t the daemon re-accepts data clients')
        with d.data() as data:
            self.assertNotEqual(rsp_rc(data.transact(tpm2_getrandom(4))), TPM2_RC_FAILURE)

    def test_cmd_shutdown_exits(self):
        d = self.start_daemon(tpm2=True, data='unix')
        with d.ctrl() as c:
            self.assertRc(c.init(), 0, 'CMD_INIT')
            c.send(struct.pack('>I', CMD_SHUTDOWN))
            self.assertBytes(c.recv(4), bytes(4), 'CMD_SHUTDOWN reply')
            self.assertEqual(d.wait_exit(5), 0, 'exit status after CMD_SHUTDOWN')
        self.assertEqual(wait_gone([d.ctrl_path, d.data_path, d.pid_path]), [],
                         'socket paths and pid file must be removed')

    def test_cmd_shutdown_before_init(self):
        d = self.start_daemon(tpm2=False, data='tcp')
        with d.ctrl() as c:
            self.assertRc(c.shutdown(), 0, 'CMD_SHUTDOWN on a never-initialised TPM')
        self.assertEqual(d.wait_exit(5), 0)

    def test_sigterm_cleanup(self):
        d = self.start_daemon(tpm2=True, data='unix')
        with d.ctrl() as c, d.data() as data:
            self.assertRc(c.init(), 0, 'CMD_INIT')
            self.assertTpmOk(data.transact(tpm2_startup()), 'Startup')
            for p in (d.ctrl_path, d.data_path, d.pid_path):
                self.assertTrue(os.path.exists(p), f'{p} should exist while running')
            d.signal(signal.SIGTERM)
            self.assertEqual(d.wait_exit(5), 0, 'exit status after SIGTERM')
        self.assertEqual(wait_gone([d.ctrl_path, d.data_path, d.pid_path], 0.5), [],
                         'socket paths and pid file must be removed on SIGTERM')

    def test_ctrl_terminate(self):
        if REFERENCE:
            d = self.make_daemon(tpm2=True, ctrl_opts=',terminate')
            d.spawn()
            rc = d.wait_exit(5)
            self.assertIsNotNone(rc, 'swtpm 0.7.1 should reject ",terminate"')
            self.assertNotEqual(rc, 0)
            return
        d = self.start_daemon(tpm2=True, ctrl_opts=',terminate')
        with d.ctrl() as c:
            self.assertRc(c.init(), 0, 'CMD_INIT')
            self.assertTrue(d.alive())
        self.assertEqual(d.wait_exit(5), 0, 'daemon must exit when the control client disconnects')
        self.assertEqual(wait_gone([d.ctrl_path]), [], 'control socket path removed')

    def test_second_control_client_waits(self):
        """§12 item 18: one control client at a time."""
        d = self.start_daemon(tpm2=True)
        first = d.ctrl()
        self.addCleanup(first.close)
        self.assertEqual(first.get_config(), (0, 0))
        second = d.ctrl()
        self.addCleanup(second.close)
        second.send(struct.pack('>I', CMD_GET_CONFIG))
        self.assertEqual(second.pending(0.3), b'', 'second client must not be served while the first is connected')
        self.assertEqual(first.get_capability()[0], 0, 'first client still served')
        first.close()
        self.assertBytes(second.recv(8, timeout=3), bytes(8), 'second client served after the first left')


class AutoShutdown(DaemonTestCase):
    """§8.5: automatic TPM2_Shutdown (vtpmd follows swtpm HEAD; 0.7.1 lacks it)."""

    def _prepared(self, **kw):
        d, c, data = started_tpm2(self, **kw)
        self.assertTpmOk(data.transact(tpm2_pcr_extend(16, b'\x01' * 32)), 'PCR_Extend')
        self.assertTpmOk(data.transact(tpm2_getrandom(8)), 'GetRandom')
        return d, c, data, snapshot(d.state_file('permall'))

    def _rewritten(self, d, before) -> bool:
        return snapshot(d.state_file('permall')) != before

    def test_stop_sends_shutdown(self):
        d, c, data, before = self._prepared()
        self.assertRc(c.stop(), 0, 'CMD_STOP')
        self.assertEqual(self._rewritten(d, before), not REFERENCE,
                         'permall rewritten by the automatic TPM2_Shutdown at CMD_STOP')
        # The orderly shutdown is visible: Startup(SU_STATE) is accepted.
        self.assertRc(c.init(), 0, 'CMD_INIT')
        rc = rsp_rc(data.transact(tpm2_startup(TPM_SU_STATE)))
        if REFERENCE:
            self.assertNotEqual(rc, 0, 'without an orderly shutdown SU_STATE startup fails')
        else:
            self.assertEqual(rc, 0, 'Startup(SU_STATE) after the automatic Shutdown(SU_STATE)')

    def test_init_sends_shutdown(self):
        d, c, data, before = self._prepared()
        self.assertRc(c.init(), 0, 'CMD_INIT while running')
        self.assertEqual(self._rewritten(d, before), not REFERENCE, 'permall rewritten at CMD_INIT')

    def test_cmd_shutdown_sends_shutdown(self):
        d, c, data, before = self._prepared()
        self.assertRc(c.shutdown(), 0, 'CMD_SHUTDOWN')
        self.assertEqual(d.wait_exit(5), 0)
        self.assertEqual(self._rewritten(d, before), not REFERENCE, 'permall rewritten at CMD_SHUTDOWN')

    def test_sigterm_sends_shutdown(self):
        d, c, data, before = self._prepared()
        d.signal(signal.SIGTERM)
        self.assertEqual(d.wait_exit(5), 0)
        self.assertEqual(self._rewritten(d, before), not REFERENCE, 'permall rewritten at SIGTERM')

    def test_not_after_guest_shutdown(self):
        d, c, data, _ = self._prepared()
        self.assertTpmOk(data.transact(tpm2_shutdown(TPM_SU_CLEAR)), 'guest TPM2_Shutdown')
        before = snapshot(d.state_file('permall'))
        self.assertRc(c.stop(), 0, 'CMD_STOP')
        self.assertFalse(self._rewritten(d, before), 'no automatic Shutdown after the guest sent one')

    def test_disable_auto_shutdown(self):
        if REFERENCE:
            d = self.make_daemon(tpm2=True, flags='disable-auto-shutdown')
            d.spawn()
            rc = d.wait_exit(5)
            self.assertIsNotNone(rc, 'swtpm 0.7.1 should reject disable-auto-shutdown')
            self.assertNotEqual(rc, 0)
            # With --log file=… swtpm writes the message into the log file.
            self.assertIn('disable-auto-shutdown', d.stderr_text() + d.log_text(), 'error message expected')
            return
        d, c, data, before = self._prepared(flags='disable-auto-shutdown')
        self.assertRc(c.stop(), 0, 'CMD_STOP')
        self.assertFalse(self._rewritten(d, before), 'permall must not change with disable-auto-shutdown')
        self.assertRc(c.init(), 0, 'CMD_INIT')
        self.assertNotEqual(rsp_rc(data.transact(tpm2_startup(TPM_SU_STATE))), 0,
                            'no orderly shutdown happened, so Startup(SU_STATE) must fail')


class Storage(DaemonTestCase):
    """§7: persistence, modes, locking, corrupt files."""

    def test_restart_keeps_nv_index(self):
        d, c, data = started_tpm2(self)
        self.assertTpmOk(data.transact(tpm2_nv_definespace(NV_INDEX, len(NV_DATA))), 'NV_DefineSpace')
        self.assertTpmOk(data.transact(tpm2_nv_write(NV_INDEX, NV_DATA)), 'NV_Write')
        self.assertTpmOk(data.transact(tpm2_shutdown()), 'TPM2_Shutdown')
        self.assertRc(c.shutdown(), 0, 'CMD_SHUTDOWN')
        self.assertEqual(d.wait_exit(5), 0)
        mode = stat.S_IMODE(os.stat(d.state_file('permall')).st_mode)
        self.assertEqual(oct(mode), oct(0o640 if REFERENCE else 0o600), 'permall file mode')
        d2 = self.start_daemon(tpm2=True, statedir=d.statedir)
        with d2.ctrl() as c2, d2.data() as data2:
            self.assertRc(c2.init(), 0, 'CMD_INIT after restart')
            self.assertTpmOk(data2.transact(tpm2_startup()), 'Startup after restart')
            rsp = data2.transact(tpm2_nv_read(NV_INDEX, len(NV_DATA)))
            self.assertTpmOk(rsp, 'NV_Read after restart')
            self.assertEqual(parse_nv_read(rsp), NV_DATA)

    def test_volatilestate_file_mode(self):
        d, c, data = started_tpm2(self)
        self.assertRc(c.store_volatile(), 0, 'STORE_VOLATILE')
        mode = stat.S_IMODE(os.stat(d.state_file('volatilestate')).st_mode)
        self.assertEqual(oct(mode), oct(0o640 if REFERENCE else 0o600), 'volatilestate file mode')
        self.assertRc(c.init(PTM_INIT_FLAG_DELETE_VOLATILE), 0, 'INIT(DELETE_VOLATILE)')

    def test_second_daemon_on_same_state_dir(self):
        a, ca, dataa = started_tpm2(self)
        b = self.make_daemon(tpm2=True, statedir=a.statedir)
        if REFERENCE:
            # 0.7.1 starts, but the storage lock fails at CMD_INIT.
            b.start()
            with b.ctrl() as cb, b.data() as datab:
                rc = cb.init()
                self.assertNotEqual(rc, 0, 'CMD_INIT on the second daemon must fail (state dir locked)')
                self.assertEqual(rc, TPM_FAIL)
                self.assertBytes(datab.transact(tpm2_readclock()), TPM2_FATAL_RESPONSE, 'second daemon data')
                self.assertEqual(cb.get_capability()[0], 0, 'second daemon keeps answering control')
        else:
            b.spawn()
            rc = b.wait_exit(5)
            self.assertIsNotNone(rc, 'second daemon on a locked state dir must refuse to start')
            self.assertNotEqual(rc, 0, 'exit status of the refused daemon')
            err = b.stderr_text()
            self.assertTrue(re.search(r'lock', err, re.I) or a.statedir in err,
                            f'stderr should mention the lock / state dir: {err!r}')
        # The first one keeps serving.
        self.assertTrue(a.alive())
        self.assertTpmOk(dataa.transact(tpm2_getrandom(8)), 'first daemon still serves data')
        self.assertRc(ca.init(), 0, 'first daemon can still INIT')

    def test_lock_released_at_exit(self):
        a = self.start_daemon(tpm2=True)
        with a.ctrl() as c:
            self.assertRc(c.init(), 0, 'CMD_INIT')
            self.assertRc(c.shutdown(), 0, 'CMD_SHUTDOWN')
        self.assertEqual(a.wait_exit(5), 0)
        b = self.start_daemon(tpm2=True, statedir=a.statedir)
        with b.ctrl() as c:
            self.assertRc(c.init(), 0, 'CMD_INIT on the next daemon after the first exited')


_TEMPLATE: dict[str, bytes] = {}


def template_permall() -> bytes:
    """A valid TPM 2 permall produced by the daemon under test (cached)."""
    if 'p' not in _TEMPLATE:
        d = Daemon(tpm2=True)
        try:
            d.start()
            with d.ctrl() as c, d.data() as data:
                assert c.init() == 0
                data.transact(tpm2_startup())
                data.transact(tpm2_shutdown())
                c.shutdown()
            d.wait_exit(5)
            with open(d.state_file('permall'), 'rb') as f:
                _TEMPLATE['p'] = f.read()
        finally:
            d.cleanup()
    return _TEMPLATE['p']


class CorruptState(DaemonTestCase):
    """A corrupt tpm2-00.permall: CMD_INIT fails, the daemon stays up, the
    file is not overwritten."""

    CASES = {
        'header version bytes flipped': lambda b: bytes([b[0] ^ 0xff, b[1] ^ 0xff]) + b[2:],
        'header hdrsize changed': lambda b: b[:2] + b'\x00\x0b' + b[4:],
        'truncated to half': lambda b: b[:len(b) // 2],
        'truncated inside the header': lambda b: b[:5],
    }

    def _run_case(self, name):
        good = template_permall()
        bad = self.CASES[name](good)
        statedir = os.path.join(self.tempdir(), 'state')
        os.makedirs(statedir)
        path = os.path.join(statedir, 'tpm2-00.permall')
        with open(path, 'wb') as f:
            f.write(bad)
        d = self.start_daemon(tpm2=True, statedir=statedir)
        with d.ctrl() as c, d.data() as data:
            rc = c.init()
            self.assertNotEqual(rc, 0, f'{name}: CMD_INIT must fail')
            self.assertEqual(c.get_capability()[0], 0, f'{name}: control channel still answers')
            self.assertEqual(c.get_config(), (0, 0))
            self.assertBytes(data.transact(tpm2_readclock()), TPM2_FATAL_RESPONSE, f'{name}: data channel')
            self.assertNotEqual(c.init(), 0, f'{name}: second CMD_INIT also fails')
            self.assertRc(c.stop(), 0, 'CMD_STOP')
            self.assertRc(c.shutdown(), 0, 'CMD_SHUTDOWN')
        self.assertEqual(d.wait_exit(5), 0)
        with open(path, 'rb') as f:
            self.assertEqual(f.read(), bad, f'{name}: corrupt permall must not be overwritten')
        self.assertFalse(os.path.exists(os.path.join(statedir, 'tpm2-00.volatilestate')))

    def test_header_flipped(self):
        self._run_case('header version bytes flipped')

    def test_header_hdrsize(self):
        self._run_case('header hdrsize changed')

    def test_truncated_half(self):
        self._run_case('truncated to half')

    def test_truncated_header(self):
        self._run_case('truncated inside the header')


class CommandLine(DaemonTestCase):
    """Bad options, pid file, log file, --print-*."""

    BAD = [
        ['--frobnicate'],
        ['--flags', 'bogus'],
        ['--ctrl', 'type=bogus,path=/tmp/x'],
        ['--server', 'type=tcp,port=notanumber'],
        ['--server', 'type=tcp,port=99999'],
        ['--log', 'file=/dev/null,level=abc'],
        ['--locality', 'bogus'],
        ['--pid', 'bogus=1'],
        ['--tpmstate', 'frob=1'],
    ]

    def test_bad_options(self):
        workdir = self.tempdir()
        statedir = os.path.join(workdir, 'state')
        os.makedirs(statedir)
        ctrl = os.path.join(workdir, 'ctrl.sock')
        for bad in self.BAD:
            with self.subTest(option=' '.join(bad)):
                argv = [VTPMD, 'socket', '--tpm2', '--ctrl', f'type=unixio,path={ctrl}',
                        '--tpmstate', f'dir={statedir}'] + bad
                if bad[0] == '--tpmstate':
                    argv = [VTPMD, 'socket', '--tpm2', '--ctrl', f'type=unixio,path={ctrl}'] + bad
                r = run_tool(argv, timeout=5)
                self.assertNotEqual(r.returncode, 0, f'{bad}: must fail')
                self.assertTrue(r.stderr.strip(), f'{bad}: error message expected on stderr')
                self.assertEqual(os.listdir(statedir), [], f'{bad}: state dir must stay untouched')
                self.assertFalse(os.path.exists(ctrl), f'{bad}: no control socket left behind')

    def test_pid_file(self):
        d = self.start_daemon(tpm2=True)
        with open(d.pid_path) as f:
            self.assertEqual(int(f.read().strip()), d.proc.pid, 'pid file content')

    def test_log_file_has_command_names(self):
        d = self.start_daemon(tpm2=True, log_level=20)
        with d.ctrl() as c:
            c.get_capability()
            self.assertRc(c.init(), 0, 'CMD_INIT')
            c.set_locality(0)
            c.get_config()
        time.sleep(0.05)
        log = d.log_text()
        if REFERENCE:
            # swtpm 0.7.1 logs control traffic as hex dumps.
            self.assertIn('Ctrl Cmd', log)
            self.assertIn('00 00 00 01', log)
            return
        for pattern in (r'get_?capability', r'\binit\b|cmd_init', r'set_?locality', r'get_?config'):
            self.assertRegex(log.lower(), pattern, f'log should name the commands; log was:\n{log[-3000:]}')

    def test_print_capabilities(self):
        for tpm2 in (True, False):
            with self.subTest(tpm2=tpm2):
                argv = [VTPMD, 'socket'] + (['--tpm2'] if tpm2 else []) + ['--print-capabilities']
                r = run_tool(argv, timeout=5)
                self.assertEqual(r.returncode, 0, r.stderr)
                out = r.stdout.decode()
                self.assertEqual(out.strip().count('\n'), 0, f'one line expected: {out!r}')
                caps = json.loads(out)
                self.assertEqual(caps['type'], 'swtpm')
                self.assertIsInstance(caps['version'], str)
                self.assertTrue(caps['version'])
                feats = caps['features']
                self.assertIsInstance(feats, list)
                self.assertTrue(out.startswith('{ "type": "swtpm", "features": [ '), out)
                must = ['tpm-1.2', 'tpm-2.0', 'tpm-send-command-header', 'flags-opt-startup',
                        'cmdarg-print-states', 'nvram-backend-dir']
                if REFERENCE:
                    must_not = ['flags-opt-disable-auto-shutdown', 'ctrl-opt-terminate']
                else:
                    must += ['flags-opt-disable-auto-shutdown', 'ctrl-opt-terminate',
                             'cmdarg-migration', 'tpmstate-opt-lock', 'systemd-notify']
                    # Listed only once implemented: libvirt switches features on by them.
                    must_not = ['cmdarg-seccomp', 'cmdarg-chroot', 'cmdarg-profile', 'cmdarg-pcap']
                for f in must:
                    self.assertIn(f, feats)
                for f in must_not:
                    self.assertNotIn(f, feats)
                self.assertEqual(len(feats), len(set(feats)), 'no duplicate features')

    def test_print_states(self):
        workdir = self.tempdir()
        statedir = os.path.join(workdir, 'state')
        os.makedirs(statedir)
        argv = [VTPMD, 'socket', '--tpm2', '--tpmstate', f'dir={statedir}', '--print-states']
        r = run_tool(argv, timeout=5)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.decode(), '{ "type": "swtpm", "states": [] }', 'empty state dir')
        # Create permall + volatilestate.
        d, c, data = started_tpm2(self, statedir=statedir)
        self.assertRc(c.store_volatile(), 0, 'STORE_VOLATILE')
        self.assertRc(c.stop(), 0, 'CMD_STOP')
        # Snapshot sizes, then stop the daemon (volatilestate stays).
        d.signal(signal.SIGTERM)
        self.assertEqual(d.wait_exit(5), 0)
        psize = os.path.getsize(os.path.join(statedir, 'tpm2-00.permall'))
        vsize = os.path.getsize(os.path.join(statedir, 'tpm2-00.volatilestate'))
        r = run_tool(argv, timeout=5)
        self.assertEqual(r.returncode, 0, r.stderr)
        want = ('{ "type": "swtpm", "states": [ '
                f'{{"name": "permall", "size": {psize}}}, {{"name": "volatilestate", "size": {vsize}}} ] }}')
        self.assertEqual(r.stdout.decode(), want)
        # TPM 1.2 names in the same dir: none exist.
        r = run_tool([VTPMD, 'socket', '--tpmstate', f'dir={statedir}', '--print-states'], timeout=5)
        self.assertEqual((r.returncode, r.stdout.decode()), (0, '{ "type": "swtpm", "states": [] }'))
        # --tpmstate is required.
        r = run_tool([VTPMD, 'socket', '--tpm2', '--print-states'], timeout=5)
        self.assertNotEqual(r.returncode, 0, '--print-states without --tpmstate must fail')


if __name__ == '__main__':
    unittest.main(verbosity=2)

"""Interoperability with Debian's swtpm_ioctl and swtpm_bios (0.7.1).

These tools are the reference clients of the control and data channels; a
missing tool is a test FAILURE, not a skip."""

import hashlib
import json
import os
import shutil
import unittest

from vtpm_client import *  # noqa: F401,F403
from vtpm_client import CAPS_TPM2, CAPS_TPM12, Daemon, DaemonTestCase, hx, run_tool

SWTPM_IOCTL = shutil.which('swtpm_ioctl') or '/usr/bin/swtpm_ioctl'
SWTPM_BIOS = shutil.which('swtpm_bios') or '/usr/bin/swtpm_bios'


class ToolTestCase(DaemonTestCase):

    def setUp(self):
        for tool in (SWTPM_IOCTL, SWTPM_BIOS):
            if not os.access(tool, os.X_OK):
                self.fail(f'required tool missing: {tool} (install Debian package swtpm-tools)')

    def ioctl(self, d: Daemon, *args: str, ok: bool = True, stdin: bytes | None = None):
        """Run swtpm_ioctl against d's control channel; returns stdout."""
        if d.ctrl_kind == 'unix':
            where = ['--unix', d.ctrl_path]
        else:
            where = ['--tcp', f'127.0.0.1:{d.ctrl_port}']
        r = run_tool([SWTPM_IOCTL] + where + list(args), input=stdin)
        out = r.stdout.decode(errors='replace')
        err = r.stderr.decode(errors='replace')
        if ok and r.returncode != 0:
            self.fail(f'swtpm_ioctl {" ".join(args)} failed ({r.returncode}): {err.strip()} {out.strip()}')
        if not ok and r.returncode == 0:
            self.fail(f'swtpm_ioctl {" ".join(args)} should have failed: {out.strip()}')
        return out + err if not ok else out

    def bios(self, d: Daemon, *args: str, tpm2: bool = True):
        if d.data_kind == 'unix':
            where = ['--unix', d.data_path]
        else:
            where = ['--tcp', f'127.0.0.1:{d.data_port}']
        r = run_tool([SWTPM_BIOS] + (['--tpm2'] if tpm2 else []) + where + list(args))
        return r.returncode, (r.stdout + r.stderr).decode(errors='replace')


class SwtpmIoctl(ToolTestCase):

    def _basic(self, ctrl: str):
        d = self.start_daemon(tpm2=True, ctrl=ctrl, data='tcp')
        self.assertEqual(self.ioctl(d, '-c').strip(), f'ptm capability is {CAPS_TPM2:#x}')
        self.assertEqual(self.ioctl(d, '-g').strip(), 'ptm configuration flags: 0x0')
        info = json.loads(self.ioctl(d, '--info', '1'))
        self.assertEqual(info, {'TPMSpecification': info['TPMSpecification']})
        self.assertEqual(info['TPMSpecification']['family'], '2.0')
        info = json.loads(self.ioctl(d, '--info', '3'))
        self.assertIn('TPMAttributes', info)
        self.assertIn('0xa', self.ioctl(d, '-e', ok=False), 'GET_TPMESTABLISHED before INIT → 0xa')
        self.ioctl(d, '-i')
        with d.data() as data:
            self.assertTpmOk(data.transact(tpm2_startup()), 'Startup after swtpm_ioctl -i')
            self.assertTpmOk(data.transact(tpm2_pcr_extend(16, b'\x42' * 32)), 'PCR_Extend')
            pcr = parse_pcr_read(data.transact(tpm2_pcr_read(16)))
        self.assertEqual(self.ioctl(d, '-e').strip(), 'tpmEstablished is 0')
        self.ioctl(d, '-l', '3')
        self.ioctl(d, '-l', '0')
        self.assertIn('Locality', self.ioctl(d, '-l', '5', ok=False))
        self.ioctl(d, '-C')
        self.assertEqual(self.ioctl(d, '-b', '0').split(),
                         'TPM buffersize: 4096 minimum size : 2808 maximum size : 4096'.split())
        self.assertIn('0xa', self.ioctl(d, '-b', '3000', ok=False), 'set buffer size while running')
        self.ioctl(d, '-v')
        self.assertTrue(os.path.exists(d.state_file('volatilestate')), 'swtpm_ioctl -v stores volatilestate')
        self.ioctl(d, '--stop')
        with d.data() as data:
            self.assertBytes(data.transact(tpm2_readclock()), TPM2_FATAL_RESPONSE, 'after --stop')
        self.assertIn('TPM buffersize: 3000', self.ioctl(d, '-b', '3000'))
        # -i = INIT(DELETE_VOLATILE): resumes from the stored state.
        self.ioctl(d, '-i')
        self.assertFalse(os.path.exists(d.state_file('volatilestate')), '-i deletes volatilestate')
        with d.data() as data:
            rsp = data.transact(tpm2_pcr_read(16))
            self.assertTpmOk(rsp, 'PCR_Read after resume')
            self.assertEqual(parse_pcr_read(rsp), pcr, 'PCR restored by -v / --stop / -i')
            props = parse_getcap_property(data.transact(tpm2_getcap_property(TPM_PT_MAX_COMMAND_SIZE)))
            self.assertEqual(props[TPM_PT_MAX_COMMAND_SIZE], 3000)
        self.ioctl(d, '-s')
        self.assertEqual(d.wait_exit(5), 0, 'daemon exits after swtpm_ioctl -s')

    def test_unix(self):
        self._basic('unix')

    def test_tcp(self):
        self._basic('tcp')

    def test_tpm12_capabilities(self):
        d = self.start_daemon(tpm2=False, ctrl='tcp')
        self.assertEqual(self.ioctl(d, '-c').strip(), f'ptm capability is {CAPS_TPM12:#x}')
        self.assertEqual(json.loads(self.ioctl(d, '--info', '1'))['TPMSpecification']['family'], '1.2')
        self.ioctl(d, '-s')
        self.assertEqual(d.wait_exit(5), 0)

    def test_hash_sequence(self):
        d = self.start_daemon(tpm2=True, ctrl='unix')
        self.ioctl(d, '-i')
        with d.data() as data:
            self.assertTpmOk(data.transact(tpm2_startup()), 'Startup')
            self.ioctl(d, '-h', 'abc')
            self.assertEqual(self.ioctl(d, '-e').strip(), 'tpmEstablished is 1')
            got = parse_pcr_read(data.transact(tpm2_pcr_read(17)))
            want = hashlib.sha256(bytes(32) + hashlib.sha256(b'abc').digest()).digest()
            self.assertEqual(got.hex(), want.hex(), 'PCR 17 after swtpm_ioctl -h abc')
            self.ioctl(d, '-r', '3')
            self.assertEqual(self.ioctl(d, '-e').strip(), 'tpmEstablished is 0')
            # Data from stdin.
            self.ioctl(d, '-h', '-', stdin=b'xyz' * 1000)
            got = parse_pcr_read(data.transact(tpm2_pcr_read(17)))
            want = hashlib.sha256(bytes(32) + hashlib.sha256(b'xyz' * 1000).digest()).digest()
            self.assertEqual(got.hex(), want.hex(), 'PCR 17 after swtpm_ioctl -h - (3000 bytes)')

    def test_save_load_tpm2(self):
        work = self.tempdir()
        src = self.start_daemon(tpm2=True, ctrl='unix')
        self.ioctl(src, '-i')
        with src.data() as data:
            self.assertTpmOk(data.transact(tpm2_startup()), 'Startup')
            self.assertTpmOk(data.transact(tpm2_pcr_extend(16, b'\x07' * 32)), 'PCR_Extend')
            pcr = parse_pcr_read(data.transact(tpm2_pcr_read(16)))
        files = {t: os.path.join(work, t + '.bin') for t in ('permanent', 'volatile', 'savestate')}
        for t, path in files.items():
            self.ioctl(src, '--save', t, path)
        for t in ('permanent', 'volatile'):
            with open(files[t], 'rb') as f:
                blob = f.read()
            self.assertGreater(len(blob), 10, f'{t} blob')
            self.assertEqual(blob[:4], bytes.fromhex('0201000a'), f'{t} blob header: {hx(blob[:10])}')
        self.assertEqual(os.path.getsize(files['savestate']), 0, 'TPM 2 has no savestate blob')
        dst = self.start_daemon(tpm2=True, ctrl='tcp')
        self.ioctl(dst, '--stop')
        self.ioctl(dst, '--load', 'permanent', files['permanent'])
        self.ioctl(dst, '--load', 'volatile', files['volatile'])
        self.ioctl(dst, '-i')
        with dst.data() as data:
            rsp = data.transact(tpm2_pcr_read(16))
            self.assertTpmOk(rsp, 'PCR_Read on the destination')
            self.assertEqual(parse_pcr_read(rsp), pcr, 'state moved with --save / --load')

    def test_save_load_tpm12_savestate(self):
        work = self.tempdir()
        src = self.start_daemon(tpm2=False, ctrl='unix')
        self.ioctl(src, '-i')
        with src.data() as data:
            self.assertTpmOk(data.transact(tpm12_startup()), 'TPM_Startup')
            self.assertTpmOk(data.transact(tpm12_extend(10, b'\x09' * 20)), 'TPM_Extend')
            pcr = parse_tpm12_digest(data.transact(tpm12_pcrread(10)))
            self.assertTpmOk(data.transact(tpm12_cmd(0x98)), 'TPM_SaveState')
        files = {t: os.path.join(work, t + '.bin') for t in ('permanent', 'volatile', 'savestate')}
        for t, path in files.items():
            self.ioctl(src, '--save', t, path)
            self.assertGreater(os.path.getsize(path), 10, f'TPM 1.2 {t} blob')
        dst = self.start_daemon(tpm2=False, ctrl='unix')
        self.ioctl(dst, '--load', 'permanent', files['permanent'])
        self.ioctl(dst, '--load', 'savestate', files['savestate'])
        self.ioctl(dst, '-i')
        with dst.data() as data:
            self.assertTpmOk(data.transact(tpm12_startup(2)), 'TPM_Startup(ST_STATE) with the loaded savestate')
            self.assertEqual(parse_tpm12_digest(data.transact(tpm12_pcrread(10))), pcr, 'PCR 10 restored')


class SwtpmBios(ToolTestCase):

    def test_tpm2_unix(self):
        d = self.start_daemon(tpm2=True, data='unix')
        rc, out = self.bios(d)
        self.assertNotEqual(rc, 0, f'swtpm_bios before INIT must fail: {out}')
        self.ioctl(d, '-i')
        rc, out = self.bios(d)
        self.assertEqual(rc, 0, f'swtpm_bios --tpm2 --unix: {out}')
        with d.data() as data:
            self.assertEqual(rsp_rc(data.transact(tpm2_startup())), TPM2_RC_INITIALIZE,
                             'swtpm_bios already sent TPM2_Startup')
        rc, out = self.bios(d)
        self.assertNotEqual(rc, 0, 'second Startup is refused')
        self.assertIn('0x00000100', out)

    def test_tpm2_tcp(self):
        d = self.start_daemon(tpm2=True, data='tcp')
        self.ioctl(d, '-i')
        rc, out = self.bios(d, '-cs', '-u')
        self.assertEqual(rc, 0, f'swtpm_bios --tpm2 --tcp -cs -u: {out}')
        with d.data() as data:
            self.assertTpmOk(data.transact(tpm2_getrandom(8)), 'TPM usable after swtpm_bios')

    def test_tpm12_tcp(self):
        d = self.start_daemon(tpm2=False, data='tcp')
        self.ioctl(d, '-i')
        rc, out = self.bios(d, tpm2=False)
        self.assertEqual(rc, 0, f'swtpm_bios --tcp (TPM 1.2): {out}')
        rc, out = self.bios(d, '-n', '-cs', tpm2=False)
        self.assertEqual(rc, 0, f'swtpm_bios -n -cs: {out}')
        self.ioctl(d, '-i')
        rc, out = self.bios(d, '-ea', tpm2=False)
        self.assertEqual(rc, 0, f'swtpm_bios -ea after reset: {out}')
        with d.data() as data:
            self.assertTpmOk(data.transact(tpm12_getticks()), 'GetTicks after swtpm_bios')

    def test_tpm12_unix(self):
        d = self.start_daemon(tpm2=False, data='unix')
        self.ioctl(d, '-i')
        rc, out = self.bios(d, '-o', tpm2=False)
        self.assertEqual(rc, 0, f'swtpm_bios --unix -o (TPM 1.2): {out}')
        with d.data() as data:
            self.assertEqual(rsp_rc(data.transact(tpm12_startup())), 0x26,
                             'TPM_Startup again → TPM_INVALID_POSTINIT')


if __name__ == '__main__':
    unittest.main(verbosity=2)

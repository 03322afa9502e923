"""swtpm_ioctl / swtpm_bios (Debian swtpm-tools 0.7.1) against vtpmd: the parts
of issue 3 item 5 that test/integration/test_swtpm_ioctl.py does not cover.

Already covered there: the TPM 2 control commands over --unix and --tcp, the
TPM 2 hash sequence over --unix, --save/--load, swtpm_bios for both versions
over both transports, TPM 1.2 capabilities (-c, --info 1).

Added here, for TPM 1.2 AND TPM 2, each over --unix and --tcp (control and
data channel on the same transport), with the PCR effects checked on the data
channel:
  * TPM 1.2 control commands: -g, --info 2, -e, -l 0..4 / -l 5, -C, -b,
    -h (PCR 17 = SHA-1(0^20 || SHA-1(data))), -r, -v + --stop + -i resume, -s;
  * the TPM 2 hash sequence over --tcp;
  * suspend/resume as a firmware does it: TPM_SaveState / TPM2_Shutdown(STATE),
    --stop, -i, then `swtpm_bios -s` (Startup(STATE)): PCR 10 survives;
  * swtpm_bios -n / -o / -cs / -u / -d combinations per version.
"""

import hashlib
import json
import os
import unittest

from clients_common import ClientTestCase, require_programs
from vtpm_client import (
    CAPS_TPM2, CAPS_TPM12, TPM2_RC_INITIALIZE, Daemon, parse_pcr_read, parse_tpm12_digest,
    rsp_rc, tpm12_cmd, tpm12_extend, tpm12_getticks, tpm12_pcrread, tpm12_startup,
    tpm2_getrandom, tpm2_pcr_extend, tpm2_pcr_read, tpm2_shutdown, tpm2_startup, TPM_SU_STATE,
)

TPM12_ORD_SAVESTATE = 0x98
TPM12_INVALID_POSTINIT = 0x26


class SwtpmToolsBothVersions(ClientTestCase):

    def setUp(self):
        super().setUp()
        self.bin = require_programs(self, 'swtpm_ioctl', 'swtpm_bios', 'timeout')

    # -- helpers ---------------------------------------------------------------

    def daemon(self, tpm2: bool, transport: str) -> Daemon:
        d = self.start_daemon(tpm2=tpm2, data=transport, ctrl=transport,
                              workdir=self.path(f'vtpmd-{"tpm2" if tpm2 else "tpm12"}-{transport}'))
        self.tpm2 = tpm2
        return d

    def ioctl(self, d: Daemon, *args: str, ok: bool = True, stdin: bytes | None = None) -> str:
        where = ['--unix', d.ctrl_path] if d.ctrl_kind == 'unix' else ['--tcp', f'127.0.0.1:{d.ctrl_port}']
        r = self.run_cmd([self.bin['swtpm_ioctl']] + where + list(args), ok=ok, input=stdin,
                         what='swtpm_ioctl ' + ' '.join(args))
        return r.out if ok else r.text

    def bios(self, d: Daemon, *args: str, ok: bool = True) -> str:
        where = ['--unix', d.data_path] if d.data_kind == 'unix' else ['--tcp', f'127.0.0.1:{d.data_port}']
        version = ['--tpm2'] if self.tpm2 else []
        r = self.run_cmd([self.bin['swtpm_bios']] + version + where + list(args), ok=ok,
                         what='swtpm_bios ' + ' '.join(version + list(args)))
        return r.text

    def transact(self, d: Daemon, cmd: bytes) -> bytes:
        with d.data() as data:
            return data.transact(cmd)

    def extend(self, d: Daemon, pcr: int, seed: bytes) -> bytes:
        """Extend pcr with a digest of seed; returns the expected new value when
        the PCR was zero."""
        if self.tpm2:
            digest = hashlib.sha256(seed).digest()
            self.assertTpmOk(self.transact(d, tpm2_pcr_extend(pcr, digest)), f'TPM2_PCR_Extend({pcr})')
            return hashlib.sha256(bytes(32) + digest).digest()
        digest = hashlib.sha1(seed).digest()
        self.assertTpmOk(self.transact(d, tpm12_extend(pcr, digest)), f'TPM_Extend({pcr})')
        return hashlib.sha1(bytes(20) + digest).digest()

    def pcr(self, d: Daemon, pcr: int) -> bytes:
        if self.tpm2:
            rsp = self.transact(d, tpm2_pcr_read(pcr))
            self.assertTpmOk(rsp, f'TPM2_PCR_Read({pcr})')
            return parse_pcr_read(rsp)
        rsp = self.transact(d, tpm12_pcrread(pcr))
        self.assertTpmOk(rsp, f'TPM_PCRRead({pcr})')
        return parse_tpm12_digest(rsp)

    def save_state(self, d: Daemon):
        """What firmware does before S3: TPM_SaveState / TPM2_Shutdown(SU_STATE)."""
        cmd = tpm2_shutdown(TPM_SU_STATE) if self.tpm2 else tpm12_cmd(TPM12_ORD_SAVESTATE)
        self.assertTpmOk(self.transact(d, cmd), 'save state')

    def zero(self) -> bytes:
        return bytes(32 if self.tpm2 else 20)

    # -- the scenario ------------------------------------------------------------

    def lifecycle(self, tpm2: bool, transport: str):
        d = self.daemon(tpm2, transport)
        caps = CAPS_TPM2 if tpm2 else CAPS_TPM12
        family = '2.0' if tpm2 else '1.2'
        hash_ = hashlib.sha256 if tpm2 else hashlib.sha1

        # Queries before the TPM runs.
        self.assertEqual(self.ioctl(d, '-c').strip(), f'ptm capability is {caps:#x}')
        self.assertEqual(self.ioctl(d, '-g').strip(), 'ptm configuration flags: 0x0')
        self.assertEqual(json.loads(self.ioctl(d, '--info', '1'))['TPMSpecification']['family'], family)
        attrs = json.loads(self.ioctl(d, '--info', '2'))['TPMAttributes']
        self.assertEqual(attrs.get('manufacturer'), 'id:00001014', f'TPMAttributes {attrs}')
        self.assertIn('0xa', self.ioctl(d, '-e', ok=False), 'GET_TPMESTABLISHED before INIT')
        self.bios(d, ok=False)                                   # data channel: TPM not running

        # Power on, firmware start-up.
        self.ioctl(d, '-i')
        self.bios(d)
        self.assertEqual(self.ioctl(d, '-e').strip(), 'tpmEstablished is 0')
        for loc in ('1', '2', '3', '4', '0'):
            self.ioctl(d, '-l', loc)
        self.assertIn('Locality', self.ioctl(d, '-l', '5', ok=False))
        if tpm2:
            self.ioctl(d, '-C')
        else:
            # libtpms implements no cancel for TPM 1.2: TPMLIB_CancelCommand -> TPM_FAIL.
            self.assertIn('PTM_CANCEL_TPM_CMD: 0x9', self.ioctl(d, '-C', ok=False))
        self.assertRegex(self.ioctl(d, '-b', '0'), r'TPM buffersize: 4096\b')

        # DRTM-style hash sequence: PCR 17 reset and extended with the hash.
        data = b'vtpmd swtpm_ioctl -h ' * 50
        self.ioctl(d, '-h', '-', stdin=data)
        self.assertEqual(self.ioctl(d, '-e').strip(), 'tpmEstablished is 1')
        self.assertEqual(self.pcr(d, 17).hex(), hash_(self.zero() + hash_(data).digest()).hexdigest(),
                         'PCR 17 after swtpm_ioctl -h')
        self.ioctl(d, '-r', '3')
        self.assertEqual(self.ioctl(d, '-e').strip(), 'tpmEstablished is 0')

        # Volatile state: -v, --stop, -i restores the running TPM (no Startup).
        want11 = self.extend(d, 11, b'volatile')
        self.ioctl(d, '-v')
        self.assertTrue(os.path.exists(d.state_file('volatilestate')), 'swtpm_ioctl -v')
        self.ioctl(d, '--stop')
        self.ioctl(d, '-i')
        self.assertEqual(self.pcr(d, 11), want11, 'PCR 11 restored from the volatile state')
        if tpm2:
            rc = rsp_rc(self.transact(d, tpm2_startup()))
            self.assertEqual(rc, TPM2_RC_INITIALIZE, f'Startup after resume: {rc:#x}')
        else:
            rc = rsp_rc(self.transact(d, tpm12_startup()))
            self.assertEqual(rc, TPM12_INVALID_POSTINIT, f'TPM_Startup after resume: {rc:#x}')

        # Suspend to RAM and resume, the firmware way: Startup(STATE) by swtpm_bios -s.
        want10 = self.extend(d, 10, b'suspend')
        self.save_state(d)
        self.ioctl(d, '--stop')
        self.ioctl(d, '-i')
        self.bios(d, '-s')
        self.assertEqual(self.pcr(d, 10), want10, 'PCR 10 after Startup(STATE)')
        self.assertEqual(self.pcr(d, 11), want11, 'PCR 11 after Startup(STATE)')

        # Reboot: Startup(CLEAR) clears them again.
        self.ioctl(d, '-i')
        self.bios(d, '-c')
        self.assertEqual(self.pcr(d, 10), self.zero(), 'PCR 10 after reboot')

        self.ioctl(d, '-s')
        self.assertEqual(d.wait_exit(5), 0, 'exit status after swtpm_ioctl -s')

    def test_tpm12_unix(self):
        self.lifecycle(False, 'unix')

    def test_tpm12_tcp(self):
        self.lifecycle(False, 'tcp')

    def test_tpm2_unix(self):
        self.lifecycle(True, 'unix')

    def test_tpm2_tcp(self):
        self.lifecycle(True, 'tcp')

    # -- swtpm_bios option combinations -----------------------------------------

    def bios_options(self, tpm2: bool, transport: str):
        d = self.daemon(tpm2, transport)
        self.ioctl(d, '-i')
        if tpm2:
            self.bios(d, '-n')                                   # no Startup at all
            self.assertEqual(rsp_rc(self.transact(d, tpm2_getrandom(8))), TPM2_RC_INITIALIZE)
        else:
            # -n skips TPM_Startup, so the physical-presence commands that follow
            # are refused with TPM_INVALID_POSTINIT.
            out = self.bios(d, '-n', ok=False)
            self.assertIn('TSC_PhysicalPresence(CMD_ENABLE) returned error code 0x00000026', out)
        self.bios(d, '-o')                                       # Startup only
        self.bios(d, '-n', '-cs')                                # self test on the started TPM
        self.bios(d, '-n', '-u')                                 # give up PP / random platform auth
        if tpm2:
            self.assertTpmOk(self.transact(d, tpm2_getrandom(8)), 'GetRandom after swtpm_bios')
            # "-d: no effect on TPM2" means: swtpm_bios sends no Startup at all.
            self.ioctl(d, '-i')
            self.bios(d, '-d')
            self.assertEqual(rsp_rc(self.transact(d, tpm2_getrandom(8))), TPM2_RC_INITIALIZE,
                             'swtpm_bios --tpm2 -d sends no TPM2_Startup')
        else:
            self.assertTpmOk(self.transact(d, tpm12_getticks()), 'GetTicks after swtpm_bios')
            self.ioctl(d, '-i')
            self.bios(d, '-d', '-o')                             # TPM_Startup(ST_DEACTIVATED)
            self.assertEqual(rsp_rc(self.transact(d, tpm12_startup())), TPM12_INVALID_POSTINIT,
                             'TPM started (deactivated) by swtpm_bios -d')
            self.ioctl(d, '-i')
            self.bios(d, '-ea')                                  # activated: exit 0, not 129
        self.ioctl(d, '-s')
        self.assertEqual(d.wait_exit(5), 0)

    def test_bios_options_tpm12_tcp(self):
        self.bios_options(False, 'tcp')

    def test_bios_options_tpm2_unix(self):
        self.bios_options(True, 'unix')


if __name__ == '__main__':
    unittest.main(verbosity=2)

"""TrouSerS (tcsd) + tpm-tools against a TPM 1.2 vtpmd over TCP.

Chain: tpm-tools → libtspi → TCP → tcsd (-e: TPM over TCP; env
TCSD_USE_TCP_DEVICE/TCSD_TCP_DEVICE_HOSTNAME/TCSD_TCP_DEVICE_PORT) → vtpmd data
port P.  The TPM is initialised first with `swtpm_ioctl -i` on the control
port P+1 and `swtpm_bios` on P (TPM_Startup(ST_CLEAR), physical presence,
enable, activate).

tcsd refuses a configuration file that is not owned by root:tss with mode
0640; it starts as root and drops to user tss, so its state directory must
belong to tss.  tpm-tools find tcsd through TSS_TCSD_HOSTNAME/TSS_TCSD_PORT.
The whole test therefore needs root (as it runs in CI).
"""

import grp
import os
import pwd
import re
import unittest

from clients_common import ClientTestCase, free_port_pair, require_programs

TOOLS = ['tcsd', 'tpm_version', 'tpm_createek', 'tpm_takeownership', 'tpm_getpubek',
         'tpm_nvdefine', 'tpm_nvwrite', 'tpm_nvread', 'tpm_nvinfo', 'tpm_nvrelease',
         'tpm_setenable', 'tpm_setactive', 'tpm_selftest', 'swtpm_ioctl', 'swtpm_bios', 'timeout']

NV_DATA = b'vtpmd TPM 1.2 NV through tcsd!!!'    # 32 bytes
TPM_DISABLED_CMD = '0x00000008'     # CreateEndorsementKeyPair with an EK, ReadPubek with an owner


def ek_modulus(text: str) -> str:
    """The 'Public Key:' hex block of tpm_getpubek output (lines of 8-digit groups)."""
    lines = text.split('Public Key:', 1)[1].splitlines()[1:] if 'Public Key:' in text else []
    hexdigits = ''
    for line in lines:
        if not re.fullmatch(r'\s*[0-9a-f]{8}( [0-9a-f]{8})*\s*', line):
            break
        hexdigits += line.replace(' ', '').strip()
    return hexdigits


class TrousersTpmTools(ClientTestCase):

    def setUp(self):
        super().setUp()
        self.bin = require_programs(self, *TOOLS)
        if os.geteuid() != 0:
            self.fail('tcsd needs a config file owned by root:tss (mode 0640) and starts as root '
                      'to drop to user tss: run this test as root')
        try:
            self.tss_uid = pwd.getpwnam('tss').pw_uid
            self.tss_gid = grp.getgrnam('tss').gr_gid
        except KeyError:
            self.fail('user/group tss missing (created by the Debian package trousers)')
        self.statedir = self.path('state')
        os.makedirs(self.statedir)
        self.tcsd_dir = self.path('tcsd')
        os.makedirs(self.tcsd_dir, mode=0o700)
        os.chown(self.tcsd_dir, self.tss_uid, self.tss_gid)

    # -- plumbing ------------------------------------------------------------------

    def start_tpm(self, name: str):
        """vtpmd (TPM 1.2) + swtpm_ioctl -i + swtpm_bios."""
        d = self.start_pair_daemon(tpm2=False, statedir=self.statedir, name=name)
        self.run_cmd([self.bin['swtpm_ioctl'], '--tcp', f'127.0.0.1:{d.ctrl_port}', '-i'],
                     what='swtpm_ioctl -i')
        self.run_cmd([self.bin['swtpm_bios'], '--tcp', f'127.0.0.1:{d.data_port}'], what='swtpm_bios')
        return d

    def start_tcsd(self, d, name: str):
        """tcsd in the foreground, talking to d's data port."""
        port = free_port_pair()
        conf = self.path(name + '.conf')
        for log in ('firmware.log', 'kernel.log'):
            open(os.path.join(self.tcsd_dir, log), 'ab').close()
        with open(conf, 'w') as f:
            f.write(f'port = {port}\n'
                    f'system_ps_file = {self.tcsd_dir}/system.data\n'
                    f'firmware_log_file = {self.tcsd_dir}/firmware.log\n'
                    f'kernel_log_file = {self.tcsd_dir}/kernel.log\n')
        os.chown(conf, 0, self.tss_gid)
        os.chmod(conf, 0o640)
        env = {'TCSD_USE_TCP_DEVICE': '1', 'TCSD_TCP_DEVICE_HOSTNAME': '127.0.0.1',
               'TCSD_TCP_DEVICE_PORT': str(d.data_port)}
        proc = self.spawn_bg([self.bin['tcsd'], '-f', '-e', '-c', conf], env=env, name=name)
        self.wait_listening(proc, port, name)
        self.tss_env = {'TSS_TCSD_HOSTNAME': '127.0.0.1', 'TSS_TCSD_PORT': str(port)}
        return proc

    def tool(self, name: str, *args: str, ok: bool = True):
        return self.run_cmd([self.bin[name]] + list(args), env=self.tss_env, ok=ok, what=name)

    # -- the test --------------------------------------------------------------------

    def test_tpm12_stack_and_restart(self):
        d = self.start_tpm('vtpmd1')
        tcsd = self.start_tcsd(d, 'tcsd1')

        out = self.tool('tpm_version').out
        self.assertIn('TPM 1.2 Version Info', out)
        self.assertRegex(out, r'Chip Version:\s+1\.2\.\d+\.\d+')
        self.assertRegex(out, r'TPM Vendor ID:\s+IBM')
        self.tool('tpm_selftest')

        # A freshly manufactured libtpms TPM 1.2 has no EK: tpm_createek makes one.
        self.tool('tpm_createek')
        r = self.tool('tpm_createek', ok=False)
        self.assertIn(TPM_DISABLED_CMD, r.text, 'second tpm_createek: EK exists')
        ek_before = ek_modulus(self.tool('tpm_getpubek').out)           # no owner yet: ReadPubek
        self.assertEqual(len(ek_before), 512, 'RSA-2048 EK modulus')

        self.tool('tpm_takeownership', '-y', '-z')
        out = self.tool('tpm_getpubek', '-z').out                        # owner-authorised now
        self.assertRegex(out, r'Key Size:\s+2048 bits')
        self.assertEqual(ek_modulus(out), ek_before, 'same EK before and after TakeOwnership')
        # swtpm_bios enabled and activated the TPM (owner-authorised status queries).
        self.assertRegex(self.tool('tpm_setenable', '-z', '-s').out, r'Disabled status: false')
        self.assertRegex(self.tool('tpm_setactive', '-z', '-s').out,
                         r'Persistent Deactivated Status: false')

        self.tool('tpm_nvdefine', '-i', '1', '-s', '32', '-p', 'OWNERREAD|OWNERWRITE', '-y', '-z')
        self.write('nv.in', NV_DATA)
        self.tool('tpm_nvwrite', '-i', '1', '-s', '32', '-f', 'nv.in', '-z')
        self.tool('tpm_nvread', '-i', '1', '-s', '32', '-z', '-f', 'nv.out1')
        self.assertEqual(self.read('nv.out1'), NV_DATA, 'tpm_nvread returns what tpm_nvwrite wrote')
        hexdump = self.tool('tpm_nvread', '-i', '1', '-s', '32', '-z').out
        self.assertIn('76 74 70 6d 64', hexdump)                         # "vtpmd"
        info = self.tool('tpm_nvinfo', '-i', '1').out
        self.assertRegex(info, r'NVRAM index\s*: 0x00000001')
        self.assertRegex(info, r'Permissions\s*: 0x00020002 \(OWNERREAD\|OWNERWRITE\)')
        self.assertRegex(info, r'Size\s*: 32 \(0x20\)')
        r = self.tool('tpm_nvread', '-i', '1', '-s', '32', '--password=wrong', ok=False)
        self.assertRegex(r.text, r'Auth\w+ failed', 'tpm_nvread with a wrong owner password')

        # Stop everything; restart vtpmd on the same state, then tcsd.
        self.stop_bg(tcsd)
        self.stop_daemon(d)
        d = self.start_tpm('vtpmd2')
        self.start_tcsd(d, 'tcsd2')
        self.tool('tpm_nvread', '-i', '1', '-s', '32', '-z', '-f', 'nv.out2')
        self.assertEqual(self.read('nv.out2'), NV_DATA, 'NV content after restart')
        # The owner persisted: TPM_ReadPubek (no auth) is disabled once an owner
        # exists, which is also why a second tpm_takeownership fails (the TSP
        # reads the EK first).
        self.assertIn(TPM_DISABLED_CMD, self.tool('tpm_getpubek', ok=False).text, 'owner persisted')
        self.assertIn(TPM_DISABLED_CMD, self.tool('tpm_takeownership', '-y', '-z', ok=False).text)
        self.assertIn(TPM_DISABLED_CMD, self.tool('tpm_createek', ok=False).text, 'EK persisted')
        self.assertEqual(ek_modulus(self.tool('tpm_getpubek', '-z').out), ek_before)
        self.tool('tpm_nvrelease', '-i', '1', '-y')
        self.assertNotRegex(self.tool('tpm_nvinfo').out, r'NVRAM index\s*: 0x00000001 ')


if __name__ == '__main__':
    unittest.main(verbosity=2)

"""Items 1 + 2 of issue 3 for TPM 2.0 behind tpm-tis on q35, in one guest boot.

vtpmd is started as libvirt starts swtpm; QEMU + SeaBIOS boot Debian's kernel
with a busybox initramfs whose /init reports what the guest sees.

What is compared with what:
  * guest: /sys/class/tpm/tpm0 says TPM 2.0 behind tpm_tis; PCRs 0-7 (sha256)
    are non-zero; TPM2_GetRandom and TPM2_PCR_Extend(16) written raw to
    /dev/tpm0 succeed and PCR 16 then has the value computed here.
  * firmware: the event log SeaBIOS left (securityfs binary_bios_measurements,
    read by the guest) replays to exactly the guest's PCRs 0-7, i.e. SeaBIOS
    did the measuring, into vtpmd.
  * vtpmd's own view: the host quits QEMU through QMP; QEMU sends CMD_SHUTDOWN
    and vtpmd performs the automatic TPM2_Shutdown(SU_STATE) before exiting.
    vtpmd is then restarted on the same state directory with TCP channels and
    `--flags not-need-init,startup-state`, and tpm2_pcrread (swtpm TCTI)
    reads PCRs 0-15: they must equal what the guest read.  (PCR 16 is not a
    state-saved PCR, so it is reset by Startup(STATE) and is not compared.)
  * QMP query-tpm reports the emulator backend; QEMU exits with status 0; vtpmd
    exits with status 0 and removes its control socket and pid file.
"""

import base64
import re
import unittest

from qemu_harness import (EXTEND_DIGEST, QemuTestCase, extended, read_text, replay_tcg2_event_log,
                          tpm2_pcrread_after_restart, tpm_response_code)

ZERO = '0' * 64


class Tpm2Tis(QemuTestCase):
    NEEDS_TPM2_TOOLS = True

    def test_seabios_and_linux_guest(self):
        d = self.start_vtpmd('vtpmd', tpm2=True)
        vm = self.start_vm('vm', d, 'tpm-tis', machine='q35', append='vtpm.end=wait vtpm.extend=1')
        self.on_failure_dump(vm)
        vm.connect_qmp()
        self.assert_query_tpm(vm, 'tpm-tis')

        r = vm.wait_done(110)
        self.log('guest reported')
        self.assertEqual(r['errors'], [])
        self.assertEqual(r.get('version'), '2', 'guest kernel must see a TPM 2.0')
        self.assertEqual(r.get('driver'), 'tpm_tis')
        for i in range(8):
            self.assertIn(i, r['pcr'], f'guest did not read PCR {i}')
            self.assertRegex(r['pcr'][i], '^[0-9a-f]{64}$')
            self.assertNotEqual(r['pcr'][i], ZERO, f'SeaBIOS did not extend PCR {i}')
            self.log(f'guest PCR {i:2d} sha256 {r["pcr"][i]}')
        self.assertEqual(r['pcr'][16], ZERO, 'PCR 16 before the guest extended it')

        self.assertEqual(tpm_response_code(r['getrandom']), 0, r['getrandom'])
        self.assertEqual(len(bytes.fromhex(r['getrandom'])), 10 + 2 + 16)
        self.assertEqual(tpm_response_code(r['extend']), 0, r['extend'])
        expect16 = extended(b'\0' * 32, EXTEND_DIGEST).hex()
        self.assertEqual(r['pcr16-after-extend'].lower(), expect16)
        self.log(f'guest: GetRandom ok, PCR_Extend(16) ok, PCR 16 = {expect16[:16]}...')

        self.assertIn('eventlog', r, 'guest found no firmware event log')
        replay, events = replay_tcg2_event_log(base64.b64decode(r['eventlog']))
        for i in range(8):
            self.assertEqual(replay.get(i, b'').hex(), r['pcr'][i], f'event log replay of PCR {i}')
        self.log(f'SeaBIOS event log: {events} events, replay matches PCRs 0-7')

        vm.qmp.execute('quit')
        self.assert_both_exit_cleanly(vm)
        self.log('QEMU quit via QMP: exit 0; vtpmd exited 0, control socket and pid file removed')
        ctrl = re.findall(r'control: (CMD_\w+)', read_text(d.log))
        self.log('control commands QEMU sent (vtpmd log): ' + ' '.join(c[4:] for c in ctrl))

        values, _, _ = tpm2_pcrread_after_restart(self, d.statedir, self.tmp, list(range(16)))
        for i in range(16):
            self.assertEqual(values.get(i), r['pcr'][i], f'PCR {i}: vtpmd (after restart) vs guest')
        self.log('vtpmd restarted on the state dir (startup-state): tpm2_pcrread PCRs 0-15 == guest')


if __name__ == '__main__':
    unittest.main()

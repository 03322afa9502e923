"""Items 1 + 2 of issue 3 for TPM 1.2 behind tpm-tis on the i440fx `pc` machine.

vtpmd runs without --tpm2 (started as libvirt starts swtpm). The guest must
see a TPM 1.2 (tpm_version_major 1, the TPM 1.2 `pcrs` sysfs file), SeaBIOS
must have extended PCRs 0-7 (SHA-1) and its TCPA event log must replay to
them, TPM_GetRandom through /dev/tpm0 must succeed, and after the guest's
`poweroff -f` QEMU and vtpmd must both exit with status 0.
"""

import base64
import unittest

from qemu_harness import QemuTestCase, replay_tcpa_event_log, tpm_response_code

ZERO = '0' * 40


class Tpm12Tis(QemuTestCase):

    def test_seabios_and_linux_guest(self):
        d = self.start_vtpmd('vtpmd', tpm2=False)
        vm = self.start_vm('vm', d, 'tpm-tis', machine='pc', append='vtpm.end=poweroff')
        self.on_failure_dump(vm)
        vm.connect_qmp()
        self.assert_query_tpm(vm, 'tpm-tis')

        r = vm.wait_done(110)
        self.log('guest reported')
        self.assertEqual(r['errors'], [])
        self.assertEqual(r.get('version'), '1', 'guest kernel must see a TPM 1.2')
        self.assertEqual(r.get('driver'), 'tpm_tis')
        self.log('guest TPM 1.2 flags: ' + ', '.join(f'{k[6:]}={r[k]}' for k in sorted(r) if k.startswith('tpm12-')))
        for i in range(8):
            self.assertIn(i, r['pcr12'], f'guest could not read PCR {i}')
            self.assertRegex(r['pcr12'][i], '^[0-9a-f]{40}$')
            self.assertNotEqual(r['pcr12'][i], ZERO, f'SeaBIOS did not extend PCR {i}')
            self.log(f'guest PCR {i:2d} sha1 {r["pcr12"][i]}')
        resp = bytes.fromhex(r['getrandom'])
        self.assertEqual(resp[:2], b'\x00\xc4', r['getrandom'])
        self.assertEqual(tpm_response_code(r['getrandom']), 0, r['getrandom'])
        self.assertEqual(int.from_bytes(resp[10:14], 'big'), 16, r['getrandom'])
        self.assertIn('eventlog', r, 'guest found no firmware event log')
        replay, events = replay_tcpa_event_log(base64.b64decode(r['eventlog']))
        for i in range(8):
            self.assertEqual(replay.get(i, b'').hex(), r['pcr12'][i], f'event log replay of PCR {i}')
        self.log(f'SeaBIOS TCPA event log: {events} events, replay matches PCRs 0-7')

        self.assert_both_exit_cleanly(vm)
        self.log('guest powered off: QEMU exit 0; vtpmd exited 0, control socket and pid file removed')


if __name__ == '__main__':
    unittest.main()

"""Items 1 + 2 of issue 3 for TPM 2.0 behind tpm-crb (q35).

The guest (Debian kernel + busybox initramfs) reports the TPM it sees and its
PCRs, uses /dev/tpm0, then powers itself off (`poweroff -f`, QEMU runs with
-no-reboot): QEMU must exit with status 0 on its own and vtpmd must follow
(--terminate / CMD_SHUTDOWN), leaving no control socket or pid file.
SeaBIOS's event log must replay to the PCRs 0-7 the guest read.
"""

import base64
import unittest

from qemu_harness import QemuTestCase, replay_tcg2_event_log, tpm_response_code

ZERO = '0' * 64


class Tpm2Crb(QemuTestCase):

    def test_seabios_and_linux_guest(self):
        d = self.start_vtpmd('vtpmd', tpm2=True)
        vm = self.start_vm('vm', d, 'tpm-crb', machine='q35', append='vtpm.end=poweroff')
        self.on_failure_dump(vm)
        vm.connect_qmp()
        self.assert_query_tpm(vm, 'tpm-crb')

        r = vm.wait_done(110)
        self.log('guest reported')
        self.assertEqual(r['errors'], [])
        self.assertEqual(r.get('version'), '2', 'guest kernel must see a TPM 2.0')
        self.assertEqual(r.get('driver'), 'tpm_crb')
        for i in range(8):
            self.assertNotEqual(r['pcr'].get(i, '0' * 64), ZERO, f'SeaBIOS did not extend PCR {i}')
        self.log('guest PCRs 0-7 non-zero: ' + ' '.join(r['pcr'][i][:8] for i in range(8)))
        self.assertEqual(tpm_response_code(r['getrandom']), 0, r['getrandom'])
        self.assertEqual(len(bytes.fromhex(r['getrandom'])), 10 + 2 + 16)
        self.assertIn('eventlog', r, 'guest found no firmware event log')
        replay, events = replay_tcg2_event_log(base64.b64decode(r['eventlog']))
        for i in range(8):
            self.assertEqual(replay.get(i, b'').hex(), r['pcr'][i], f'event log replay of PCR {i}')
        self.log(f'SeaBIOS event log: {events} events, replay matches PCRs 0-7')

        self.assert_both_exit_cleanly(vm)
        self.log('guest powered off: QEMU exit 0; vtpmd exited 0, control socket and pid file removed')


if __name__ == '__main__':
    unittest.main()

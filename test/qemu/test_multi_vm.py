"""Item 6 of issue 3: three VMs at once, each with its own vtpmd and state dir.

vm-a (tpm-tis), vm-b (tpm-crb) and vm-c (tpm-tis) boot together. Their /init
reports, then loops: every second it reads PCR 16 through sysfs and does a
TPM2_GetRandom through /dev/tpm0 and prints a numbered "tick" line. Only vm-a
extends PCR 16.

Asserted:
  * all three see a TPM 2.0 with SeaBIOS-extended PCRs 0-7;
  * vm-a's PCR 16 has the extended value; vm-b's and vm-c's stay all zero
    (no state leaks between daemons);
  * vm-a is stopped with QMP `quit`: QEMU and its vtpmd exit 0 and clean up,
    and vm-b and vm-c keep ticking afterwards with successful TPM commands;
  * vm-c's QEMU is then killed with SIGKILL (a crash): its vtpmd notices the
    data connection drop and exits by itself because of --terminate, and
    vm-b still keeps ticking;
  * vm-b is stopped with QMP `quit`, cleanly.
"""

import os
import signal
import unittest

from qemu_harness import EXTEND_DIGEST, QemuTestCase, extended, read_text, tpm_response_code

ZERO = '0' * 64


def ticks_after(vm, n0: int, count: int, timeout: float, case):
    """Wait until `vm` printed `count` tick lines numbered above n0; return them."""
    def enough(lines):
        from qemu_harness import parse_results
        t = [x for x in parse_results(lines)['ticks'] if x['n'] > n0]
        return t if len(t) >= count else None
    return vm.wait_for(enough, timeout, f'{count} more tick(s) after tick {n0}')


def last_tick(vm) -> int:
    from qemu_harness import parse_results
    ticks = parse_results(vm.results())['ticks']
    return ticks[-1]['n'] if ticks else 0


class MultiVm(QemuTestCase):

    def assert_tick_ok(self, vm, tick, pcr16):
        self.assertEqual(tick['pcr16'], pcr16, f'{vm.name} PCR 16 at tick {tick["n"]}')
        self.assertEqual(tpm_response_code(tick['random']), 0, f'{vm.name} GetRandom at tick {tick["n"]}')

    def test_three_vms(self):
        vms = {}
        for name, device, extend in (('a', 'tpm-tis', 1), ('b', 'tpm-crb', 0), ('c', 'tpm-tis', 0)):
            d = self.start_vtpmd('vtpmd-' + name, tpm2=True)
            vm = self.start_vm('vm-' + name, d, device, append=f'vtpm.end=loop vtpm.extend={extend}')
            self.on_failure_dump(vm)
            vms[name] = vm
        for vm in vms.values():
            vm.connect_qmp()
        statedirs = {vm.vtpmd.statedir for vm in vms.values()}
        self.assertEqual(len(statedirs), 3)

        expect16 = extended(b'\0' * 32, EXTEND_DIGEST).hex()
        reports = {}
        for name, vm in vms.items():
            r = vm.wait_done(100)
            reports[name] = r
            self.assertEqual(r['errors'], [], name)
            self.assertEqual(r.get('version'), '2', name)
            for i in range(8):
                self.assertNotEqual(r['pcr'].get(i, ZERO), ZERO, f'{vm.name}: PCR {i}')
            self.assertEqual(tpm_response_code(r['getrandom']), 0, name)
        self.log('all three guests up: TPM 2.0, PCRs 0-7 non-zero')
        self.assertEqual(tpm_response_code(reports['a']['extend']), 0)
        self.assertEqual(reports['a']['pcr16-after-extend'].lower(), expect16)
        self.assertEqual(reports['b']['pcr'][16], ZERO)
        self.assertEqual(reports['c']['pcr'][16], ZERO)

        want16 = {'a': expect16, 'b': ZERO, 'c': ZERO}
        for name, vm in vms.items():
            for t in ticks_after(vm, 0, 1, 60, self):
                self.assert_tick_ok(vm, t, want16[name])
        self.log(f'running together: PCR 16 of vm-a = {expect16[:16]}..., of vm-b and vm-c = 0')

        # Stop vm-a through QMP; the other two must not notice.
        vms['a'].qmp.execute('quit')
        self.assert_both_exit_cleanly(vms['a'])
        self.log('vm-a quit via QMP: QEMU exit 0, vtpmd-a exit 0, socket + pid file gone')
        marks = {n: last_tick(vms[n]) for n in 'bc'}
        for n in 'bc':
            ts = ticks_after(vms[n], marks[n], 2, 60, self)
            for t in ts:
                self.assert_tick_ok(vms[n], t, ZERO)
            self.assertIsNone(vms[n].proc.poll())
            self.assertIsNone(vms[n].vtpmd.proc.poll())
            self.log(f'vm-{n} still served after vm-a stopped: ticks {[t["n"] for t in ts]}')

        # Crash vm-c's QEMU; its vtpmd exits because of --terminate (data fd hang-up).
        c = vms['c']
        c.proc.send_signal(signal.SIGKILL)
        c.proc.wait(10)
        rc = c.vtpmd.wait_exit(15)
        self.assertIsNotNone(rc, 'vtpmd-c kept running after its QEMU died (--terminate)\n' + c.vtpmd.diagnostics())
        self.assertEqual(rc, 0, c.vtpmd.diagnostics())
        self.assertFalse(os.path.exists(c.vtpmd.ctrl), 'vtpmd-c left its control socket behind')
        self.assertFalse(os.path.exists(c.vtpmd.pidfile), 'vtpmd-c left its pid file behind')
        self.assertNotIn('CMD_SHUTDOWN', read_text(c.vtpmd.log),
                         'a SIGKILLed QEMU cannot have sent CMD_SHUTDOWN')
        self.log('vm-c QEMU SIGKILLed: vtpmd-c exited 0 by itself (--terminate), socket + pid file gone')
        mark = last_tick(vms['b'])
        ts = ticks_after(vms['b'], mark, 2, 60, self)
        for t in ts:
            self.assert_tick_ok(vms['b'], t, ZERO)
        self.log(f'vm-b still served: ticks {[t["n"] for t in ts]}')

        vms['b'].qmp.execute('quit')
        self.assert_both_exit_cleanly(vms['b'])
        self.log('vm-b quit via QMP: QEMU exit 0, vtpmd-b exit 0')


if __name__ == '__main__':
    unittest.main()

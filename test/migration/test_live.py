"""Issue 4 item 3: live migration of a running Linux guest with QEMU.

Every test boots Debian's kernel + a busybox initramfs under QEMU/SeaBIOS with
tpm-tis (q35, TCG). The guest's /init extends PCR 16 once through /dev/tpm0,
then loops: every second it reads PCR 16 through sysfs (a TPM2_PCR_Read by
the guest kernel) and does a TPM2_GetRandom, and prints one "tick" line to
its serial port.

The destination QEMU has the same command line plus -incoming and its own
daemon (own state directory) and its own serial file, so every tick found in
the destination's serial file was printed after the migration, with PCR 16
read from the destination's TPM. A migration passes when QMP query-migrate
says completed, the destination is running, and its guest prints at least
two complete ticks with the PCR 16 value extended before the migration and a
successful GetRandom; the source QEMU is left in postmigrate and its daemon
exits 0 after QMP quit.

  test_vtpmd_to_vtpmd         vtpmd -> vtpmd
  test_vtpmd_swtpm_vtpmd      vtpmd -> swtpm 0.7.1 -> vtpmd (one guest, both
                              directions between the implementations)
  test_migration_key          vtpmd -> vtpmd, both with --migration-key (the
                              same AES-256 key file); before that, a vtpmd
                              without the key must refuse the stream: its
                              QEMU exits with a TPM load error, and the
                              source, resumed with QMP cont, keeps serving
                              the guest; then on, with the same key, to
                              swtpm 0.7.1 and back to vtpmd
"""

import os
import unittest

import mig_common as mc
import qemu_harness as qh


class LiveMigration(mc.MigrationTestCase):

    def test_vtpmd_to_vtpmd(self):
        a = self.start_daemon('a', mc.VTPMD)
        src, expect16 = self.boot_source(a)
        b = self.start_daemon('b', mc.VTPMD)
        dst = self.migrate_to(src, b, expect16)
        self.quit_source(src)
        log_b = qh.read_text(b.log)
        for cmd in ('CMD_SET_STATEBLOB', 'CMD_INIT'):
            self.assertIn(cmd, log_b, f'destination vtpmd log lacks {cmd}')
        t = mc.good_ticks(dst, mc.last_tick(dst) - 1)
        dst.qmp.execute('quit')
        self.assertEqual(dst.wait_exit(30), 0, dst.diagnostics())
        self.assertEqual(b.wait_exit(15), 0, b.diagnostics())
        self.log(f'source and destination QEMU + vtpmd exited 0 (last tick {t[-1]["n"] if t else "?"})')

    def test_vtpmd_swtpm_vtpmd(self):
        a = self.start_daemon('a', mc.VTPMD)
        vm_a, expect16 = self.boot_source(a)
        b = self.start_daemon('b-swtpm', mc.SWTPM)
        vm_b = self.migrate_to(vm_a, b, expect16)
        self.quit_source(vm_a)
        c = self.start_daemon('c', mc.VTPMD)
        vm_c = self.migrate_to(vm_b, c, expect16)
        self.quit_source(vm_b)
        vm_c.qmp.execute('quit')
        self.assertEqual(vm_c.wait_exit(30), 0, vm_c.diagnostics())
        self.assertEqual(c.wait_exit(15), 0, c.diagnostics())

    def test_migration_key(self):
        mc.require_vtpmd_option(self, '--migration-key')
        key = os.path.join(self.tmp, 'migration.key')
        mc.write_hex_key(key, 32, b'live migration key')
        opts = ['--migration-key', f'file={key},mode=aes-256-cbc']
        a = self.start_daemon('a', mc.VTPMD, extra=opts)
        vm_a, expect16 = self.boot_source(a)

        # A destination without the key cannot unwrap the blobs: migration fails,
        # the source resumes and its guest keeps ticking.
        n = self.start_daemon('nokey', mc.VTPMD)
        sock = os.path.join(self.tmp, 'mig-nokey.sock')
        vm_n = mc.make_vm(self, 'vm-nokey', n, incoming=sock)
        self.on_failure_dump(vm_n)
        vm_n.start()
        vm_n.connect_qmp()
        status, info, secs = mc.migrate(self, vm_a, vm_n, sock, expect='')
        # The source reports "completed" once it sent everything; the verdict is the destination's.
        rc = vm_n.wait_exit(30)
        err = qh.read_text(vm_n.stderr)
        self.assertIsNotNone(rc, 'QEMU with the keyless vtpmd accepted the migration (still running): the '
                             'TPM blobs were not wrapped with the migration key\n' + vm_n.diagnostics())
        self.assertNotEqual(rc, 0, vm_n.diagnostics())
        self.assertRegex(err, r'(?i)tpm', 'the keyless destination failed, but not because of the TPM state')
        log_n = qh.read_text(n.log)
        self.log(f'keyless destination: source said {status} in {secs:.1f}s, destination QEMU exit {rc}: '
                 + ' '.join(err.split())[-240:])
        # The source keeps the VM: resume it and require working TPM commands with the same PCR 16.
        vm_a.qmp.execute('cont')
        mc.wait_running(self, vm_a)
        mark = mc.last_tick(vm_a)
        ticks = vm_a.wait_for(lambda ls: (lambda t: t if len(t) >= 1 else None)(mc.good_ticks(vm_a, mark)),
                              30, 'a tick on the source after the failed migration')
        self.assertEqual(ticks[0]['pcr16'], expect16)
        self.assertEqual(qh.tpm_response_code(ticks[0]['random']), 0)
        self.log(f'source resumed (QMP cont): tick {ticks[0]["n"]} PCR 16 ok, GetRandom ok; keyless daemon log: '
                 + ' | '.join(l.strip() for l in log_n.splitlines() if 'STATEBLOB' in l or 'key' in l.lower())[-300:])

        b = self.start_daemon('b', mc.VTPMD, extra=opts)
        vm_b = self.migrate_to(vm_a, b, expect16)
        self.quit_source(vm_a)
        # The wrapped blobs are swtpm's format: on to swtpm with the same key and back.
        c = self.start_daemon('c-swtpm', mc.SWTPM, extra=opts)
        vm_c = self.migrate_to(vm_b, c, expect16)
        self.quit_source(vm_b)
        d = self.start_daemon('d', mc.VTPMD, extra=opts)
        self.migrate_to(vm_c, d, expect16)
        self.quit_source(vm_c)


if __name__ == '__main__':
    unittest.main()

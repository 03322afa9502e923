"""Issue 4 item 4: source and destination daemons on ONE state directory.

The source runs `vtpmd --tpmstate dir=D --migration release-lock-outgoing`,
the destination `vtpmd --tpmstate dir=D --migration incoming`. Who holds
D/.lock is asked from this test process (a third process) with fcntl
F_GETLK, which reports the pid of the process holding the POSIX write lock.

  test_handover_with_qemu
      A Linux guest runs on the source (PCR 16 extended, ticking). The
      destination daemon starts while the source holds the lock and does not
      take it. QMP migrate -> the destination holds the lock, the guest ticks
      on the destination with the old PCR 16. The source QEMU is quit (CMD_SHUTDOWN
      to the source daemon): D/tpm2-00.permall must not change (inode, size,
      mtime, content) — the source wrote nothing after the hand-over. The guest
      keeps ticking; after the destination quits the lock is free and a fresh
      vtpmd resumes the state with TPM2_Startup(SU_STATE).
  test_failed_migration_qemu
      As above, but the destination daemon is a TPM 1.2 one, so the
      destination QEMU rejects the TPM 2 state blobs in post_load (after the
      source sent the savestate blob and released the lock) and exits. The
      source VM resumes; QEMU 7.2 sends no CMD_LOCK_STORAGE, so the source
      daemon must take the lock back before the guest's next TPM command.
      The guest keeps ticking with PCR 16 intact and the lock is the source's.
  test_failed_migration_lock_storage
      Without QEMU, QEMU's sequence driven raw (protocol.md §9.3): GET_STATEBLOB
      permanent, volatile, savestate on the source (lock released after the
      savestate), STOP + SET_STATEBLOB permanent + volatile on the destination
      (which takes the lock), the destination dies (SIGKILL), the source gets
      CMD_LOCK_STORAGE(300): result 0, lock is the source's, NV and PCR state
      intact, new NV writes land in permall and survive a restart.
  test_lock_storage_retries
      CMD_LOCK_STORAGE while the destination still holds the lock: with 20
      retries -> TPM_FAIL after >= 0.2 s and the source keeps running; with
      300 retries and the destination killed 1 s later -> 0 within the 3 s.
"""

import hashlib
import os
import signal
import struct
import time
import unittest

import mig_common as mc
import qemu_harness as qh
from mig_common import vc

SRC_OPTS = ['--migration', 'release-lock-outgoing']
DST_OPTS = ['--migration', 'incoming']


def restart_startup_state(case, statedir: str) -> None:
    """A fresh vtpmd on the directory (no migration options): CMD_INIT and
    TPM2_Startup(SU_STATE) must succeed, i.e. the last writer left a
    consistent, orderly shut down state."""
    work = os.path.join(case.tmp, 'fresh-vtpmd')
    os.makedirs(work, exist_ok=True)
    d = mc.Peer(mc.VTPMD, tpm2=True, statedir=statedir, workdir=work)
    case.procs.append(d)
    d.start()
    with d.ctrl() as c, d.data() as data:
        case.assertEqual(c.init(), 0, 'CMD_INIT of a fresh vtpmd on the shared directory\n' + d.diagnostics())
        rsp = data.transact(vc.tpm2_startup(vc.TPM_SU_STATE))
        case.assertEqual(vc.rsp_rc(rsp), 0, f'TPM2_Startup(SU_STATE) on the shared state: {vc.hx(rsp)}\n'
                         + d.diagnostics())
        c.shutdown()
    case.assertEqual(d.wait_exit(10), 0, d.diagnostics())


class SharedStorageQemu(mc.MigrationTestCase):

    def shared_dir(self) -> tuple[str, str, str]:
        d = os.path.join(self.tmp, 'shared-state')
        os.makedirs(d)
        return d, os.path.join(d, '.lock'), os.path.join(d, 'tpm2-00.permall')

    def test_handover_with_qemu(self):
        statedir, lock, permall = self.shared_dir()
        src_d = self.start_daemon('src', mc.VTPMD, statedir=statedir, extra=SRC_OPTS)
        src, expect16 = self.boot_source(src_d)
        self.assertEqual(mc.lock_holder(lock), src_d.pid, 'source vtpmd must hold D/.lock while its VM runs')

        dst_d = self.start_daemon('dst', mc.VTPMD, statedir=statedir, extra=DST_OPTS)
        time.sleep(0.3)
        self.assertIsNone(dst_d.proc.poll(), 'destination vtpmd (--migration incoming) exited while the '
                          'source holds the lock\n' + dst_d.diagnostics())
        self.assertEqual(mc.lock_holder(lock), src_d.pid, 'lock holder after the destination started')
        self.log(f'source pid {src_d.pid} holds .lock; destination pid {dst_d.pid} started beside it')

        dst = self.migrate_to(src, dst_d, expect16)
        holder = mc.wait_lock_holder(lock, dst_d.pid, 10)
        self.assertEqual(holder, dst_d.pid, f'.lock holder after the migration (source {src_d.pid}, '
                         f'destination {dst_d.pid})\n' + src_d.diagnostics() + dst_d.diagnostics())
        before = mc.fingerprint(permall)
        self.assertIsNotNone(before, 'no permall in the shared directory')
        self.log(f'destination pid {dst_d.pid} holds .lock after the migration')

        self.quit_source(src)
        after = mc.fingerprint(permall)
        self.assertEqual(after, before, 'the source rewrote tpm2-00.permall after it handed the state over '
                         '(inode, size, mtime_ns, sha256 before vs after its CMD_SHUTDOWN)\n'
                         + src_d.diagnostics())
        leftovers = [n for n in os.listdir(statedir) if n.startswith('TMP')]
        self.assertEqual(leftovers, [], 'temporary files in the shared directory')
        self.assertEqual(mc.lock_holder(lock), dst_d.pid, 'lock holder after the source exited')
        self.log('source QEMU quit, source vtpmd exited 0: permall untouched, lock still the destination\'s')

        mark = mc.last_tick(dst)
        ticks = dst.wait_for(lambda ls: (lambda t: t if len(t) >= 2 else None)(mc.good_ticks(dst, mark)),
                             30, '2 more ticks after the source exited')
        for t in ticks:
            self.assertEqual(t['pcr16'], expect16)
            self.assertEqual(qh.tpm_response_code(t['random']), 0)
        dst.qmp.execute('quit')
        self.assertEqual(dst.wait_exit(30), 0, dst.diagnostics())
        self.assertEqual(dst_d.wait_exit(15), 0, dst_d.diagnostics())
        self.assertIsNone(mc.lock_holder(lock), 'lock still held after both daemons exited')
        changed = mc.fingerprint(permall) != before
        self.log(f'destination ticks {[t["n"] for t in ticks]} ok; destination quit, lock free '
                 f'(permall {"rewritten" if changed else "unchanged"} by the destination\'s shutdown)')
        restart_startup_state(self, statedir)
        self.log('fresh vtpmd on the shared directory: Startup(SU_STATE) ok')

    def test_failed_migration_qemu(self):
        statedir, lock, permall = self.shared_dir()
        src_d = self.start_daemon('src', mc.VTPMD, statedir=statedir, extra=SRC_OPTS)
        src, expect16 = self.boot_source(src_d)
        self.assertEqual(mc.lock_holder(lock), src_d.pid)

        # A TPM 1.2 destination: its QEMU gets the TPM 2 blobs and fails in post_load.
        dst_d = mc.MigDaemon(self.tmp, 'dst12', mc.VTPMD, statedir, DST_OPTS, tpm2=False)
        self.procs.append(dst_d)
        dst_d.start()
        sock = os.path.join(self.tmp, 'mig-dst12.sock')
        dst = mc.make_vm(self, 'vm-dst12', dst_d, incoming=sock)
        self.on_failure_dump(dst)
        dst.start()
        dst.connect_qmp()
        status, info, secs = mc.migrate(self, src, dst, sock, expect='')
        rc = dst.wait_exit(30)
        err = qh.read_text(dst.stderr)
        self.assertIsNotNone(rc, 'destination QEMU with a TPM 1.2 daemon accepted TPM 2 state\n' + dst.diagnostics())
        self.assertNotEqual(rc, 0)
        self.assertIn('tpm-emulator', err, 'destination failed, but not on the TPM state\n' + dst.diagnostics())
        self.log(f'migration to the TPM 1.2 destination: source says {status} ({secs:.1f}s); destination QEMU '
                 f'exit {rc}: ' + ' '.join(err.split())[-200:])
        drc = dst_d.wait_exit(15)
        self.assertIsNotNone(drc, 'destination daemon still running after its QEMU died (--terminate)\n'
                             + dst_d.diagnostics())
        dlog = qh.read_text(dst_d.log)

        if src.qmp.execute('query-status').get('status') != 'running':
            src.qmp.execute('cont')
        mc.wait_running(self, src)
        mark = mc.last_tick(src)
        ticks = src.wait_for(lambda ls: (lambda t: t if len(t) >= 2 else None)(mc.good_ticks(src, mark)),
                             30, '2 ticks on the source after the failed migration')
        for t in ticks:
            self.assertEqual(t['pcr16'], expect16, f'source PCR 16 at tick {t["n"]} after the failed migration')
            self.assertEqual(qh.tpm_response_code(t['random']), 0, f'source GetRandom at tick {t["n"]}')
        holder = mc.wait_lock_holder(lock, src_d.pid, 5)
        self.assertEqual(holder, src_d.pid, 'source vtpmd did not take the lock back after the failed migration\n'
                         + src_d.diagnostics())
        self.assertIsNone(src_d.proc.poll(), 'source vtpmd exited\n' + src_d.diagnostics())
        self.log(f'source resumed: ticks {[t["n"] for t in ticks]} PCR 16 ok, GetRandom ok, source pid '
                 f'{src_d.pid} holds .lock again (destination daemon exit {drc}; its log: '
                 + ' | '.join(l.strip() for l in dlog.splitlines() if 'STATEBLOB' in l or 'lock' in l.lower())[-240:]
                 + ')')

        before = mc.fingerprint(permall)
        src.qmp.execute('quit')
        self.assertEqual(src.wait_exit(30), 0, src.diagnostics())
        self.assertEqual(src_d.wait_exit(15), 0, src_d.diagnostics())
        self.assertNotEqual(mc.fingerprint(permall), before,
                            'the source, owner again, did not store its state at shutdown (TPM2_Shutdown)')
        restart_startup_state(self, statedir)
        self.log('source quit: it stored the state again (owner); fresh vtpmd: Startup(SU_STATE) ok')


class SharedStorageRaw(vc.DaemonTestCase):
    """QEMU's control sequence driven by hand (protocol.md §9.3)."""

    def setUp(self):
        self.t0 = time.monotonic()
        mc.require_vtpmd(self)
        self.dir = os.path.join(self.tempdir(), 'shared')
        os.makedirs(self.dir)
        self.lock = os.path.join(self.dir, '.lock')
        self.permall = os.path.join(self.dir, 'tpm2-00.permall')

    def log(self, msg: str) -> None:
        print(f'    [{time.monotonic() - self.t0:5.1f}s] {msg}', flush=True)

    def peer(self, opts: list[str]) -> mc.Peer:
        d = mc.Peer(mc.VTPMD, tpm2=True, statedir=self.dir, extra=tuple(opts))
        self.addCleanup(self._teardown_daemon, d)
        d.start()
        return d

    def source_with_state(self):
        """Source daemon: TPM started, NV index written, PCR 16 extended."""
        src = self.peer(SRC_OPTS)
        c = src.ctrl()
        self.addCleanup(c.close)
        self.assertRc(c.init(), 0, 'source CMD_INIT')
        data = src.data()
        self.addCleanup(data.close)
        self.assertTpmOk(data.transact(vc.tpm2_startup()), 'source Startup')
        self.assertTpmOk(data.transact(vc.tpm2_nv_definespace(mc.NV_INDEX, mc.NV_SIZE)), 'NV_DefineSpace')
        nv1 = hashlib.sha256(b'before migration').digest()
        self.assertTpmOk(data.transact(vc.tpm2_nv_write(mc.NV_INDEX, nv1)), 'NV_Write')
        digest = hashlib.sha256(b'pcr 16').digest()
        self.assertTpmOk(data.transact(vc.tpm2_pcr_extend(16, digest)), 'PCR_Extend')
        pcr16 = hashlib.sha256(b'\0' * 32 + digest).digest()
        self.assertEqual(mc.lock_holder(self.lock), src.proc.pid, 'source must hold the lock')
        return src, c, data, nv1, pcr16

    def outgoing(self, c: vc.Ctrl, src_pid: int) -> list:
        """QEMU's pre_save on the source: permanent, volatile, savestate."""
        blobs = []
        for btype, name in ((vc.BLOB_PERMANENT, 'permanent'), (vc.BLOB_VOLATILE, 'volatile'),
                            (vc.BLOB_SAVESTATE, 'savestate')):
            rc, flags, tot, length, blob = c.get_stateblob(btype, vc.PTM_STATE_FLAG_DECRYPTED)
            self.assertTrue(rc == 0 or rc & 0x800, f'GET_STATEBLOB({name}) -> {rc:#x}')
            self.assertEqual(tot, length, f'GET_STATEBLOB({name}) totlength != length')
            if btype == vc.BLOB_SAVESTATE:
                self.assertEqual(rc, vc.TPM_RETRY, 'TPM 2 has no savestate blob: TPM_RETRY expected')
            else:
                self.assertEqual(rc, 0, f'GET_STATEBLOB({name})')
                self.assertEqual(mc.lock_holder(self.lock), src_pid,
                                 f'lock holder after GET_STATEBLOB({name}) (released only after savestate)')
                blobs.append((btype, flags, blob))
        return blobs

    def incoming(self, dst: mc.Peer, blobs: list) -> vc.Ctrl:
        """QEMU's post_load on the destination, minus the final CMD_INIT."""
        dc = dst.ctrl()
        self.addCleanup(dc.close)
        self.assertRc(dc.stop(), 0, 'destination CMD_STOP')
        for btype, flags, blob in blobs:
            self.assertRc(dc.set_stateblob(btype, blob, flags, split=True), 0, f'destination SET_STATEBLOB({btype})')
        return dc

    def test_failed_migration_lock_storage(self):
        src, c, data, nv1, pcr16 = self.source_with_state()
        dst = self.peer(DST_OPTS)
        self.assertEqual(mc.lock_holder(self.lock), src.proc.pid, 'lock holder after the destination started')

        blobs = self.outgoing(c, src.proc.pid)
        self.assertIsNone(mc.lock_holder(self.lock),
                          'source still holds .lock after GET_STATEBLOB(savestate) with release-lock-outgoing')
        self.log(f'source pid {src.proc.pid}: GET_STATEBLOB permanent ({len(blobs[0][2])} B), volatile '
                 f'({len(blobs[1][2])} B), savestate (TPM_RETRY) -> lock released')
        self.incoming(dst, blobs)
        self.assertEqual(mc.lock_holder(self.lock), dst.proc.pid, 'destination took the lock at SET_STATEBLOB')
        self.log(f'destination pid {dst.proc.pid}: STOP, SET_STATEBLOB permanent + volatile -> holds .lock')

        dst.proc.send_signal(signal.SIGKILL)
        dst.proc.wait(5)
        self.assertIsNone(mc.lock_holder(self.lock), 'lock held after the destination died')
        t = time.monotonic()
        self.assertRc(c.lock_storage(300), 0, 'source CMD_LOCK_STORAGE(300) after the failed migration')
        self.assertEqual(mc.lock_holder(self.lock), src.proc.pid, 'lock holder after CMD_LOCK_STORAGE')
        self.log(f'destination SIGKILLed; source CMD_LOCK_STORAGE(300) -> 0 in {time.monotonic() - t:.2f}s, '
                 f'source holds .lock')

        before = mc.fingerprint(self.permall)
        rsp = data.transact(vc.tpm2_pcr_read(16))
        self.assertTpmOk(rsp, 'source PCR_Read after re-lock')
        self.assertBytes(vc.parse_pcr_read(rsp), pcr16, 'source PCR 16 after the failed migration')
        rsp = data.transact(vc.tpm2_nv_read(mc.NV_INDEX, mc.NV_SIZE))
        self.assertTpmOk(rsp, 'source NV_Read after re-lock')
        self.assertBytes(vc.parse_nv_read(rsp), nv1, 'source NV data after the failed migration')
        nv2 = hashlib.sha256(b'after failed migration').digest()
        self.assertTpmOk(data.transact(vc.tpm2_nv_write(mc.NV_INDEX, nv2)), 'source NV_Write after re-lock')
        self.assertNotEqual(mc.fingerprint(self.permall), before, 'the source\'s NV_Write did not reach permall')
        self.log('source serves: PCR 16 and NV intact, NV_Write stored in permall')

        data.close()
        self.assertRc(c.shutdown(), 0, 'source CMD_SHUTDOWN')
        self.assertEqual(src.wait_exit(10), 0, src.diagnostics())
        fresh = self.peer([])
        with fresh.ctrl() as fc, fresh.data() as fd:
            self.assertRc(fc.init(), 0, 'fresh CMD_INIT')
            self.assertTpmOk(fd.transact(vc.tpm2_startup(vc.TPM_SU_STATE)), 'fresh Startup(SU_STATE)')
            rsp = fd.transact(vc.tpm2_nv_read(mc.NV_INDEX, mc.NV_SIZE))
            self.assertTpmOk(rsp, 'fresh NV_Read')
            self.assertBytes(vc.parse_nv_read(rsp), nv2, 'NV data after restart')
        self.log('restart on the shared directory: Startup(SU_STATE) ok, NV has the post-failure write')

    def test_lock_storage_retries(self):
        src, c, data, nv1, pcr16 = self.source_with_state()
        dst = self.peer(DST_OPTS)
        blobs = self.outgoing(c, src.proc.pid)
        self.incoming(dst, blobs[:1])
        self.assertEqual(mc.lock_holder(self.lock), dst.proc.pid, 'destination holds the lock')

        t = time.monotonic()
        rc = c.lock_storage(20)
        dt = time.monotonic() - t
        self.assertRc(rc, vc.TPM_FAIL, 'CMD_LOCK_STORAGE(20) while the destination holds the lock')
        self.assertGreaterEqual(dt, 0.18, 'CMD_LOCK_STORAGE(20) gave up before 20 retries x 10 ms')
        self.assertIsNone(src.proc.poll(), 'source exited after a failed CMD_LOCK_STORAGE\n' + src.diagnostics())
        self.log(f'CMD_LOCK_STORAGE(20) -> TPM_FAIL after {dt:.2f}s; source still running')

        # 300 retries = 3 s: the destination goes away after 1 s.
        c.send(struct.pack('>II', vc.CMD_LOCK_STORAGE, 300))
        t = time.monotonic()
        time.sleep(1.0)
        dst.proc.send_signal(signal.SIGKILL)      # the kernel drops its lock at once
        (rc,) = struct.unpack('>I', c.recv(4, timeout=8))
        dt = time.monotonic() - t
        self.assertRc(rc, 0, 'CMD_LOCK_STORAGE(300) with the lock freed after 1 s')
        self.assertTrue(0.9 <= dt <= 3.6, f'CMD_LOCK_STORAGE(300) answered after {dt:.2f}s')
        self.assertEqual(mc.lock_holder(self.lock), src.proc.pid)
        rsp = data.transact(vc.tpm2_nv_read(mc.NV_INDEX, mc.NV_SIZE))
        self.assertTpmOk(rsp, 'source NV_Read')
        self.assertBytes(vc.parse_nv_read(rsp), nv1)
        self.log(f'CMD_LOCK_STORAGE(300), destination stopped 1 s later -> 0 after {dt:.2f}s; source serves')


if __name__ == '__main__':
    unittest.main()

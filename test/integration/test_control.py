"""Control channel (protocol.md §2.4, §3, §12 items 2-6, 10-12, 14)."""

import hashlib
import json
import os
import struct
import time
import unittest

from vtpm_client import *  # noqa: F401,F403  (test helpers and constants)
from vtpm_client import (CAPS_TPM12, CAPS_TPM2, CTRL_DEADLINE, REFERENCE, Ctrl, DaemonTestCase,
                         hx, started_tpm2, started_tpm12, wait_closed)

GET_CONFIG_REQ = struct.pack('>I', CMD_GET_CONFIG)
GET_CONFIG_OK = bytes(8)          # result 0, flags 0 (no keys configured)


class CapabilityAndUnknown(DaemonTestCase):
    """§3.2, §3.18, §12 item 3: capability word, unknown codes."""

    def test_get_capability_tpm2(self):
        d = self.start_daemon(tpm2=True)
        with d.ctrl() as c:
            c.send(struct.pack('>I', CMD_GET_CAPABILITY))
            reply = c.recv(8)
            self.assertBytes(reply, struct.pack('>II', 0, CAPS_TPM2), 'GET_CAPABILITY (TPM 2) reply')
            self.assertNoMore(c, 'GET_CAPABILITY')
            # The capability does not depend on the running state.
            self.assertRc(c.init(), 0, 'CMD_INIT')
            self.assertEqual(c.get_capability(), (0, CAPS_TPM2))

    def test_get_capability_tpm12(self):
        d = self.start_daemon(tpm2=False)
        with d.ctrl() as c:
            c.send(struct.pack('>I', CMD_GET_CAPABILITY))
            self.assertBytes(c.recv(8), struct.pack('>II', 0, CAPS_TPM12), 'GET_CAPABILITY (TPM 1.2) reply')
            self.assertNoMore(c, 'GET_CAPABILITY')

    def test_unknown_commands_bad_ordinal(self):
        d = self.start_daemon(tpm2=True)
        with d.ctrl() as c:
            for code in (0x00, 0x14, 0x20, 0xff, 0x80000001):
                with self.subTest(code=hex(code)):
                    c.send(struct.pack('>I', code))
                    self.assertBytes(c.recv(4), struct.pack('>I', TPM_BAD_ORDINAL), f'unknown command {code:#x}')
                    self.assertNoMore(c, f'unknown command {code:#x}', 0.05)
            # The connection is still usable afterwards.
            self.assertEqual(c.get_config(), (0, 0))

    def test_lock_storage(self):
        d = self.start_daemon(tpm2=True)
        with d.ctrl() as c:
            want = TPM_BAD_ORDINAL if REFERENCE else TPM_SUCCESS
            self.assertRc(c.lock_storage(0), want, 'LOCK_STORAGE(0) before INIT')
            self.assertRc(c.init(), 0, 'CMD_INIT')
            self.assertRc(c.lock_storage(300), want, 'LOCK_STORAGE(300) while running')
            self.assertNoMore(c, 'LOCK_STORAGE')

    def test_get_config(self):
        d = self.start_daemon(tpm2=True)
        with d.ctrl() as c:
            c.send(GET_CONFIG_REQ)
            self.assertBytes(c.recv(8), GET_CONFIG_OK, 'GET_CONFIG without keys')
            self.assertNoMore(c, 'GET_CONFIG')


class PayloadSizes(DaemonTestCase):
    """§3.1 payload size rules; §12 item 4; §2.4 framing.

    A "long" payload is sent as the command plus the 4 bytes of a complete
    GET_CONFIG request in the same write.  swtpm 0.7.1 counts them as payload
    (one 4-byte TPM_BAD_PARAMETER reply); vtpmd frames each message exactly,
    so it answers the command and then the GET_CONFIG."""

    ZERO_PAYLOAD = [
        (CMD_GET_TPMESTABLISHED, 8), (CMD_HASH_START, 4), (CMD_HASH_END, 4),
        (CMD_CANCEL_TPM_CMD, 4), (CMD_STORE_VOLATILE, 4), (CMD_GET_CONFIG, 8),
        (CMD_STOP, 4),                # last: on vtpmd it really stops the TPM
    ]

    def _running(self):
        d = self.start_daemon(tpm2=True)
        c = d.ctrl()
        self.addCleanup(c.close)
        self.assertRc(c.init(), 0, 'CMD_INIT')
        return d, c

    def test_zero_payload_commands_with_extra_bytes(self):
        d, c = self._running()
        for code, ok_len in self.ZERO_PAYLOAD:
            name = CMD_NAMES[code]
            with self.subTest(cmd=name):
                # What arrives in one write is one message (swtpm's framing, §2.4): the
                # extra bytes make the payload too long.
                c.send(struct.pack('>I', code) + GET_CONFIG_REQ)
                self.assertBytes(c.recv(4), struct.pack('>I', TPM_BAD_PARAMETER), f'{name} + 4 extra bytes')
                self.assertNoMore(c, name, 0.05)

    def test_init_payload_must_be_exactly_4(self):
        d, c = self._running()
        c.send(struct.pack('>II', CMD_INIT, 0) + GET_CONFIG_REQ)
        self.assertBytes(c.recv(4), struct.pack('>I', TPM_BAD_PARAMETER), 'INIT with 8-byte payload')
        self.assertNoMore(c, 'INIT')
        # Exactly 4 bytes works.
        self.assertRc(c.init(0), 0, 'INIT with 4-byte payload')

    def test_short_messages_are_dropped_after_deadline(self):
        """Incomplete control messages: no reply, connection closed after
        ~0.5 s; the daemon keeps serving new control connections."""
        d = self.start_daemon(tpm2=True)
        cases = [
            ('INIT with 2 payload bytes', struct.pack('>IH', CMD_INIT, 0)),
            ('SET_LOCALITY without payload', struct.pack('>I', CMD_SET_LOCALITY)),
            ('GET_STATEBLOB with 8 payload bytes', struct.pack('>III', CMD_GET_STATEBLOB, 1, 1)),
        ]
        for what, msg in cases:
            with self.subTest(case=what), d.ctrl() as c:
                t0 = time.monotonic()
                c.send(msg)
                closed, got, elapsed = wait_closed(c.sock, 3.0)
                self.assertBytes(got, b'', f'{what}: no reply expected')
                self.assertTrue(closed, f'{what}: connection not closed within 3 s')
                self.assertGreaterEqual(elapsed, 0.3, f'{what}: closed too early ({elapsed:.2f}s)')
                self.assertLess(time.monotonic() - t0, 2.5)
        with d.ctrl() as c:
            self.assertEqual(c.get_capability()[0], 0, 'daemon still serves the control channel')

    def test_short_fixed_payloads(self):
        """SET_BUFFERSIZE / GET_INFO with too few payload bytes: their payload is
        expected with the code, so the short message is answered TPM_BAD_PARAMETER."""
        d = self.start_daemon(tpm2=True)
        cases = [
            ('SET_BUFFERSIZE with 2 payload bytes', struct.pack('>IH', CMD_SET_BUFFERSIZE, 0)),
            ('GET_INFO with 8 payload bytes', struct.pack('>IQ', CMD_GET_INFO, 1)),
        ]
        for what, msg in cases:
            with self.subTest(case=what), d.ctrl() as c:
                c.send(msg)
                self.assertBytes(c.recv(4), struct.pack('>I', TPM_BAD_PARAMETER), what)
                self.assertEqual(c.get_config(), (0, 0), f'{what}: connection still in step')

    def test_set_locality_accepts_one_or_four_bytes(self):
        """§12 item 4: SET_LOCALITY / RESET_TPMESTABLISHED accept >= 1 byte."""
        d, c = self._running()
        self.assertRc(c.set_locality(2, size=1), 0, 'SET_LOCALITY with 1-byte payload')
        self.assertRc(c.set_locality(3, size=4), 0, 'SET_LOCALITY with 4-byte payload (QEMU)')
        self.assertRc(c.reset_tpmestablished(3, size=1), 0, 'RESET_TPMESTABLISHED with 1-byte payload')
        self.assertRc(c.reset_tpmestablished(3, size=4), 0, 'RESET_TPMESTABLISHED with 4-byte payload')
        self.assertNoMore(c, 'SET_LOCALITY')
        self.assertEqual(c.get_config(), (0, 0))

    def test_back_to_back_requests_in_one_write(self):
        """§2.4 item 4: lock-step protocol; what arrives in one write is one message, so
        GET_CAPABILITY (which ignores extra payload) swallows a GET_CONFIG sent with it,
        exactly as swtpm does. The connection stays usable."""
        d = self.start_daemon(tpm2=True)
        with d.ctrl() as c:
            c.send(struct.pack('>I', CMD_GET_CAPABILITY) + GET_CONFIG_REQ)
            self.assertBytes(c.recv(8), struct.pack('>II', 0, CAPS_TPM2), 'merged reply')
            self.assertNoMore(c, 'merged back-to-back requests')
            self.assertEqual(c.get_config(), (0, 0), 'next lock-step request answered')


class Gating(DaemonTestCase):
    """§3.1 running-state gates → 4-byte TPM_BAD_ORDINAL (§12 item 5)."""

    NEEDS_RUNNING = [
        ('GET_TPMESTABLISHED', struct.pack('>I', CMD_GET_TPMESTABLISHED)),
        ('HASH_START', struct.pack('>I', CMD_HASH_START)),
        ('HASH_DATA', struct.pack('>II', CMD_HASH_DATA, 3) + b'abc'),
        ('HASH_END', struct.pack('>I', CMD_HASH_END)),
        ('CANCEL_TPM_CMD', struct.pack('>I', CMD_CANCEL_TPM_CMD)),
        ('STORE_VOLATILE', struct.pack('>I', CMD_STORE_VOLATILE)),
        ('RESET_TPMESTABLISHED', struct.pack('>II', CMD_RESET_TPMESTABLISHED, 0x03000000)),
        ('GET_STATEBLOB', struct.pack('>IIII', CMD_GET_STATEBLOB, 1, 1, 0)),
    ]

    def _check_gated(self, c: Ctrl, when: str):
        for name, msg in self.NEEDS_RUNNING:
            with self.subTest(cmd=name, when=when):
                c.send(msg)
                self.assertBytes(c.recv(4), struct.pack('>I', TPM_BAD_ORDINAL), f'{name} {when}')
                self.assertNoMore(c, f'{name} {when}', 0.05)

    def test_commands_needing_running_tpm(self):
        d = self.start_daemon(tpm2=True)
        with d.ctrl() as c:
            self._check_gated(c, 'before INIT')
            self.assertRc(c.init(), 0, 'CMD_INIT')
            self.assertRc(c.stop(), 0, 'CMD_STOP')
            self._check_gated(c, 'after STOP')
            self.assertRc(c.stop(), 0, 'CMD_STOP on a stopped TPM')

    def test_commands_allowed_before_init(self):
        d = self.start_daemon(tpm2=True)
        with d.ctrl() as c:
            self.assertEqual(c.get_capability(), (0, CAPS_TPM2))
            self.assertEqual(c.get_config(), (0, 0))
            self.assertRc(c.set_locality(1), 0, 'SET_LOCALITY before INIT')
            self.assertEqual(c.set_buffersize(0), (0, 4096, 2808, 4096))
            self.assertEqual(c.get_info(INFO_TPMSPECIFICATION)[0], 0)
            self.assertRc(c.stop(), 0, 'STOP before INIT')

    def test_set_stateblob_while_running(self):
        d = self.start_daemon(tpm2=True)
        with d.ctrl() as c:
            self.assertRc(c.init(), 0, 'CMD_INIT')
            self.assertRc(c.set_stateblob(BLOB_PERMANENT, b''), TPM_BAD_ORDINAL, 'SET_STATEBLOB while running')
            self.assertNoMore(c, 'SET_STATEBLOB')
            self.assertEqual(c.get_config(), (0, 0))


class BufferSize(DaemonTestCase):
    """§3.16, §12 item 11."""

    def test_clamping_and_max_command_size_tpm2(self):
        d = self.start_daemon(tpm2=True)
        c = d.ctrl()
        self.addCleanup(c.close)
        self.assertEqual(c.set_buffersize(0), (0, 4096, 2808, 4096), 'default query')
        self.assertEqual(c.set_buffersize(100), (0, 2808, 2808, 4096), 'below minimum')
        self.assertEqual(c.set_buffersize(9999), (0, 4096, 2808, 4096), 'above maximum')
        self.assertEqual(c.set_buffersize(3968), (0, 3968, 2808, 4096), 'CRB size')
        self.assertEqual(c.set_buffersize(0), (0, 3968, 2808, 4096), 'query returns the new size')
        self.assertRc(c.init(), 0, 'CMD_INIT')
        # Query while running is allowed; setting is not.
        self.assertEqual(c.set_buffersize(0), (0, 3968, 2808, 4096), 'query while running')
        c.send(struct.pack('>II', CMD_SET_BUFFERSIZE, 4000))
        self.assertBytes(c.recv(4), struct.pack('>I', TPM_BAD_ORDINAL), 'SET_BUFFERSIZE(4000) while running')
        self.assertNoMore(c, 'SET_BUFFERSIZE while running')
        with d.data() as data:
            self.assertTpmOk(data.transact(tpm2_startup()), 'TPM2_Startup')
            for prop in (TPM_PT_MAX_COMMAND_SIZE, TPM_PT_MAX_RESPONSE_SIZE):
                rsp = data.transact(tpm2_getcap_property(prop))
                self.assertTpmOk(rsp, 'GetCapability')
                self.assertEqual(parse_getcap_property(rsp).get(prop), 3968,
                                 f'TPM property {prop:#x} after SET_BUFFERSIZE(3968): {hx(rsp)}')
        # The setting survives STOP/INIT.
        self.assertRc(c.stop(), 0, 'CMD_STOP')
        self.assertRc(c.init(), 0, 'CMD_INIT')
        self.assertEqual(c.set_buffersize(0), (0, 3968, 2808, 4096), 'size after STOP/INIT')

    def test_clamping_tpm12(self):
        d = self.start_daemon(tpm2=False)
        with d.ctrl() as c:
            self.assertEqual(c.set_buffersize(0), (0, 4096, 3072, 4096))
            self.assertEqual(c.set_buffersize(100), (0, 3072, 3072, 4096))
            self.assertEqual(c.set_buffersize(9999), (0, 4096, 3072, 4096))


class GetInfo(DaemonTestCase):
    """§3.17."""

    def test_get_info_before_init_and_chunks(self):
        d = self.start_daemon(tpm2=True)
        with d.ctrl() as c:
            rc, tot, length, chunk = c.get_info(INFO_TPMSPECIFICATION | INFO_TPMATTRIBUTES)
            self.assertEqual(rc, 0)
            self.assertEqual(length, tot, 'whole string fits in one chunk')
            self.assertEqual(len(chunk), length)
            self.assertTrue(chunk.endswith(b'\0'), f'string must include the NUL: {chunk!r}')
            info = json.loads(chunk[:-1])
            self.assertEqual(info['TPMSpecification']['family'], '2.0')
            self.assertIn('manufacturer', info['TPMAttributes'])
            # Offsets: tail of the string.
            rc, tot2, length2, tail = c.get_info(3, 10)
            self.assertEqual((rc, tot2, length2), (0, tot, tot - 10))
            self.assertEqual(tail, chunk[10:])
            rc, _, length3, last = c.get_info(3, tot - 2)
            self.assertEqual((rc, length3, last), (0, 2, chunk[-2:]), 'last character and NUL')
            # Offset at/after the end of the string → 4-byte BAD_PARAMETER.
            for off in (tot - 1, tot, tot + 100):
                with self.subTest(offset=off):
                    c.send(struct.pack('>IQII', CMD_GET_INFO, 3, off, 0))
                    self.assertBytes(c.recv(4), struct.pack('>I', TPM_BAD_PARAMETER), f'GET_INFO offset {off}')
                    self.assertNoMore(c, 'GET_INFO offset error', 0.05)
            # Flags 0 → empty object.
            self.assertEqual(c.get_info_string(0), '{}')

    def test_get_info_features_tpm2_and_tpm12(self):
        d2 = self.start_daemon(tpm2=True)
        with d2.ctrl() as c:
            info = json.loads(c.get_info_string(7))
            self.assertEqual(info['TPMSpecification']['family'], '2.0')
            self.assertIn('RSAKeySizes', info['TPMFeatures'])
            self.assertIn(2048, info['TPMFeatures']['RSAKeySizes'])
        d1 = self.start_daemon(tpm2=False)
        with d1.ctrl() as c:
            info = json.loads(c.get_info_string(7))
            self.assertEqual(info['TPMSpecification']['family'], '1.2')
            self.assertNotIn('TPMFeatures', info)


class LocalityAndEstablished(DaemonTestCase):
    """§3.6, §3.7, §3.10, §12 item 12."""

    def test_set_locality_range(self):
        d = self.start_daemon(tpm2=True)
        with d.ctrl() as c:
            for loc in range(5):
                self.assertRc(c.set_locality(loc), 0, f'SET_LOCALITY({loc})')
            for loc in (5, 0xff):
                c.send(struct.pack('>IB3x', CMD_SET_LOCALITY, loc))
                self.assertBytes(c.recv(4), struct.pack('>I', TPM_BAD_LOCALITY), f'SET_LOCALITY({loc})')
            self.assertNoMore(c, 'SET_LOCALITY')

    def test_reject_locality_4(self):
        d = self.start_daemon(tpm2=True, extra=('--locality', 'reject-locality-4'))
        with d.ctrl() as c:
            self.assertRc(c.set_locality(4), TPM_BAD_LOCALITY, 'SET_LOCALITY(4) with reject-locality-4')
            self.assertRc(c.set_locality(3), 0, 'SET_LOCALITY(3) with reject-locality-4')

    def test_locality_applies_to_tpm_commands(self):
        """The locality set on the control channel is the one libtpms sees;
        it is kept across INIT (§3.6, §8.6)."""
        d = self.start_daemon(tpm2=True)
        with d.ctrl() as c, d.data() as data:
            self.assertRc(c.set_locality(3), 0, 'SET_LOCALITY(3) before INIT')
            self.assertRc(c.init(), 0, 'CMD_INIT')
            self.assertTpmOk(data.transact(tpm2_startup()), 'TPM2_Startup at locality 3')
            pcr0 = parse_pcr_read(data.transact(tpm2_pcr_read(0)))
            self.assertEqual(pcr0.hex(), (bytes(31) + b'\x03').hex(), 'PCR 0 records a locality-3 Startup')
            self.assertTpmOk(data.transact(tpm2_pcr_extend(17, bytes(32))), 'PCR 17 extend at locality 3')
            self.assertRc(c.set_locality(0), 0, 'SET_LOCALITY(0)')
            self.assertEqual(rsp_rc(data.transact(tpm2_pcr_extend(17, bytes(32)))), 0x907,
                             'PCR 17 extend at locality 0 → TPM_RC_LOCALITY')

    def test_hash_sequence_sets_established_and_reset_rules(self):
        d, c, data = started_tpm2(self)
        self.assertEqual(c.get_tpmestablished(), (0, 0), 'fresh TPM: not established')
        before = parse_pcr_read(data.transact(tpm2_pcr_read(17)))
        self.assertRc(c.hash_start(), 0, 'HASH_START')
        self.assertEqual(c.get_tpmestablished(), (0, 1), 'established after HASH_START')
        self.assertRc(c.hash_data(b'abc'), 0, 'HASH_DATA')
        self.assertRc(c.hash_data(b'def' * 100), 0, 'HASH_DATA (second chunk)')
        self.assertRc(c.hash_end(), 0, 'HASH_END')
        after = parse_pcr_read(data.transact(tpm2_pcr_read(17)))
        self.assertNotEqual(before, after, 'DRTM hash sequence must change PCR 17')
        expected = hashlib.sha256(bytes(32) + hashlib.sha256(b'abc' + b'def' * 100).digest()).digest()
        self.assertEqual(after.hex(), expected.hex(), 'PCR 17 = extend(0, sha256(data))')
        # Reset needs locality 3 or 4; > 4 is rejected outright.
        for loc in (0, 1, 2, 5):
            self.assertRc(c.reset_tpmestablished(loc), TPM_BAD_LOCALITY, f'RESET_TPMESTABLISHED({loc})')
        self.assertEqual(c.get_tpmestablished(), (0, 1), 'still established after refused resets')
        self.assertRc(c.reset_tpmestablished(3), 0, 'RESET_TPMESTABLISHED(3)')
        self.assertEqual(c.get_tpmestablished(), (0, 0), 'reset by locality 3')
        self.assertRc(c.hash_start(), 0, 'HASH_START')
        self.assertRc(c.hash_end(), 0, 'HASH_END')
        self.assertRc(c.reset_tpmestablished(4), 0, 'RESET_TPMESTABLISHED(4)')
        self.assertEqual(c.get_tpmestablished(), (0, 0), 'reset by locality 4')
        # The daemon's locality was only swapped temporarily: still 0, so
        # a normal command works.
        self.assertTpmOk(data.transact(tpm2_getrandom(4)), 'GetRandom after reset')

    def test_get_tpmestablished_reply_layout(self):
        d, c, data = started_tpm2(self)
        c.send(struct.pack('>I', CMD_GET_TPMESTABLISHED))
        self.assertBytes(c.recv(8), bytes(8), 'GET_TPMESTABLISHED: result 0, bit 0, 3 pad bytes')
        self.assertNoMore(c, 'GET_TPMESTABLISHED')

    def test_cancel_is_harmless(self):
        d, c, data = started_tpm2(self)
        self.assertRc(c.cancel(), 0, 'CANCEL_TPM_CMD')
        self.assertTpmOk(data.transact(tpm2_getrandom(8)), 'GetRandom after cancel')


def _blob_header(blob: bytes):
    return struct.unpack('>BBHHI', blob[:10])


class StateBlobs(DaemonTestCase):
    """§3.9, §3.12, §3.13, §6, §12 items 6-9."""

    def _extend(self, data, pcr=16, fill=0x5a):
        self.assertTpmOk(data.transact(tpm2_pcr_extend(pcr, bytes([fill]) * 32)), 'PCR_Extend')
        return parse_pcr_read(data.transact(tpm2_pcr_read(pcr)))

    def test_get_stateblob_layout_and_missing(self):
        d, c, data = started_tpm2(self)
        rc, sflags, tot, length, blob = c.get_stateblob(BLOB_PERMANENT)
        self.assertEqual((rc, sflags), (0, 0), 'permanent blob, DECRYPTED, no keys')
        self.assertEqual(tot, length)
        self.assertEqual(len(blob), length)
        ver, minver, hdrsize, flags, totlen = _blob_header(blob)
        self.assertEqual((ver, minver, hdrsize), (2, 1, 10), f'blob header {hx(blob[:10])}')
        self.assertEqual(flags, 0x0004, 'MIGRATION_DATA flag only')
        self.assertEqual(totlen, len(blob))
        # Outer TLV: tag 4 (MIGRATION_DATA) wrapping tag 1 (DATA).
        tag, tlen = struct.unpack_from('>HI', blob, 10)
        self.assertEqual((tag, tlen), (4, len(blob) - 16))
        itag, ilen = struct.unpack_from('>HI', blob, 16)
        self.assertEqual((itag, ilen), (1, len(blob) - 22))
        # Offset: the remaining bytes only.
        rc, _, tot2, len2, tail = c.get_stateblob(BLOB_PERMANENT, offset=100)
        self.assertEqual((rc, tot2, len2), (0, len(blob) - 100, len(blob) - 100))
        self.assertEqual(tail, blob[100:])
        # TPM 2 never has a savestate blob: TPM_RETRY, zero lengths, no data.
        c.send(struct.pack('>IIII', CMD_GET_STATEBLOB, 1, BLOB_SAVESTATE, 0))
        self.assertBytes(c.recv(16), struct.pack('>IIII', TPM_RETRY, 0, 0, 0), 'missing savestate blob')
        self.assertNoMore(c, 'missing blob')
        # Unknown type: always the 16-byte header.
        want = TPM_RETRY if REFERENCE else TPM_FAIL
        c.send(struct.pack('>IIII', CMD_GET_STATEBLOB, 1, 7, 0))
        self.assertBytes(c.recv(16), struct.pack('>IIII', want, 0, 0, 0), 'GET_STATEBLOB unknown type 7')
        self.assertNoMore(c, 'unknown blob type')
        self.assertEqual(c.get_config(), (0, 0))

    def test_volatile_snapshot_is_deleted_after_get(self):
        d, c, data = started_tpm2(self)
        rc, _, tot, length, blob = c.get_stateblob(BLOB_VOLATILE)
        self.assertEqual(rc, 0)
        self.assertGreater(length, 100)
        self.assertEqual(_blob_header(blob)[4], len(blob))
        self.assertFalse(os.path.exists(d.state_file('volatilestate')),
                         'volatilestate must be deleted after GET_STATEBLOB(volatile)')

    def test_migration_round_trip_to_fresh_daemon(self):
        src, c, data = started_tpm2(self)
        pcr = self._extend(data)
        rng = parse_getrandom(data.transact(tpm2_getrandom(8)))
        self.assertEqual(len(rng), 8)
        blobs = {}
        for btype in (BLOB_PERMANENT, BLOB_VOLATILE):
            rc, sflags, tot, length, blob = c.get_stateblob(btype)
            self.assertEqual((rc, tot), (0, len(blob)))
            blobs[btype] = (sflags, blob)
        dst = self.start_daemon(tpm2=True)
        with dst.ctrl() as c2, dst.data() as data2:
            self.assertRc(c2.stop(), 0, 'STOP on destination')
            for btype in (BLOB_PERMANENT, BLOB_VOLATILE):
                sflags, blob = blobs[btype]
                self.assertRc(c2.set_stateblob(btype, blob, sflags, split=True), 0,
                              f'SET_STATEBLOB type {btype}, header and body in separate writes')
            self.assertRc(c2.set_stateblob(BLOB_SAVESTATE, b''), 0, 'SET_STATEBLOB empty savestate')
            # Not written to storage before INIT.
            self.assertFalse(os.path.exists(dst.state_file('volatilestate')))
            self.assertRc(c2.init(PTM_INIT_FLAG_DELETE_VOLATILE), 0, 'INIT(DELETE_VOLATILE)')
            # The TPM continues without a new Startup and has the PCR value.
            rsp = data2.transact(tpm2_pcr_read(16))
            self.assertTpmOk(rsp, 'PCR_Read on the destination without Startup')
            self.assertEqual(parse_pcr_read(rsp).hex(), pcr.hex(), 'PCR 16 migrated')
            self.assertEqual(rsp_rc(data2.transact(tpm2_startup())), TPM2_RC_INITIALIZE,
                             'TPM2_Startup must be refused: TPM resumed')
            self.assertTrue(os.path.exists(dst.state_file('permall')), 'permall committed at INIT')
            self.assertFalse(os.path.exists(dst.state_file('volatilestate')), 'volatilestate deleted')

    def test_set_stateblob_rejects_garbage(self):
        d = self.start_daemon(tpm2=True)
        with d.ctrl() as c:
            for what, blob in (('too short', b'\x02\x01\x00'),
                               ('totlen mismatch', bytes.fromhex('0201000a000400000099') + bytes(20)),
                               ('no migration layer', bytes.fromhex('0201000a00000000001a') + struct.pack('>HI', 1, 10) + bytes(10))):
                with self.subTest(case=what):
                    rc = c.set_stateblob(BLOB_PERMANENT, blob)
                    self.assertNotEqual(rc, 0, f'SET_STATEBLOB({what}) must fail')
                    self.assertNoMore(c, what, 0.05)
            self.assertEqual(c.get_config(), (0, 0), 'control channel still in sync')
            # The failure did not leave anything behind: a normal INIT works.
            self.assertRc(c.init(), 0, 'INIT after rejected blobs')

    def test_store_volatile_and_resume(self):
        d, c, data = started_tpm2(self)
        pcr = self._extend(data, fill=0x33)
        self.assertRc(c.store_volatile(), 0, 'STORE_VOLATILE')
        vol = d.state_file('volatilestate')
        self.assertTrue(os.path.exists(vol), 'volatilestate written')
        # INIT without DELETE_VOLATILE: resumes, file kept.
        self.assertRc(c.init(0), 0, 'INIT(0)')
        rsp = data.transact(tpm2_pcr_read(16))
        self.assertTpmOk(rsp, 'PCR_Read after resume (no Startup)')
        self.assertEqual(parse_pcr_read(rsp), pcr, 'PCR restored from volatilestate')
        self.assertTrue(os.path.exists(vol), 'INIT(0) keeps volatilestate')
        # INIT(DELETE_VOLATILE): resumes once more, then deletes the file.
        self.assertRc(c.init(PTM_INIT_FLAG_DELETE_VOLATILE), 0, 'INIT(DELETE_VOLATILE)')
        rsp = data.transact(tpm2_pcr_read(16))
        self.assertTpmOk(rsp, 'PCR_Read after INIT(DELETE_VOLATILE)')
        self.assertEqual(parse_pcr_read(rsp), pcr)
        self.assertFalse(os.path.exists(vol), 'INIT(DELETE_VOLATILE) deletes volatilestate')
        # Next INIT starts fresh: Startup needed again.
        self.assertRc(c.init(0), 0, 'INIT(0) without volatilestate')
        self.assertEqual(rsp_rc(data.transact(tpm2_readclock())), TPM2_RC_INITIALIZE,
                         'fresh start needs TPM2_Startup')

    def test_tpm12_blobs(self):
        d, c, data = started_tpm12(self)
        for btype in (BLOB_PERMANENT, BLOB_VOLATILE):
            rc, _, tot, length, blob = c.get_stateblob(btype)
            self.assertEqual(rc, 0, f'TPM 1.2 blob type {btype}')
            self.assertEqual((tot, len(blob)), (length, length))
        c.send(struct.pack('>IIII', CMD_GET_STATEBLOB, 1, BLOB_SAVESTATE, 0))
        self.assertBytes(c.recv(16), struct.pack('>IIII', TPM_RETRY, 0, 0, 0), 'TPM 1.2 savestate not present yet')
        self.assertNoMore(c, 'savestate')
        # TPM_SaveState creates it.
        self.assertTpmOk(data.transact(tpm12_cmd(0x98)), 'TPM_SaveState')
        rc, _, tot, length, blob = c.get_stateblob(BLOB_SAVESTATE)
        self.assertEqual(rc, 0, 'savestate after TPM_SaveState')
        self.assertGreater(length, 10)


if __name__ == '__main__':
    unittest.main(verbosity=2)

"""Issue 4 item 2: one state directory, Debian's swtpm 0.7.1 and vtpmd in turn.

Each test runs four hops on one fresh directory: swtpm (creates the state) ->
vtpmd -> swtpm -> vtpmd, every daemon with the same options (plain, or the
same --key). Every hop first checks everything the previous hops left and then
changes the state, so the next hop checks what this daemon wrote:

TPM 2.0
  * an NV index (0x01500016, owner read/write) holds the data the previous hop
    wrote; this hop writes new data;
  * the persistent key 0x81000001 (ECC P-256 storage key made by CreatePrimary
    + EvictControl in hop 1) has the same public area and name;
  * CreatePrimary with the same template returns the same public key as in
    hop 1 (the owner seed survived);
  * PCR 10 (a state-saved PCR) after TPM2_Startup(SU_STATE) holds the value
    extended before the previous hop's TPM2_Shutdown(SU_STATE); this hop
    extends it once more.
TPM 1.2
  * NV index 0x00011000 (defined before any owner exists, so no
    authorisation is needed) holds the previous hop's data; new data written;
  * TPM_ReadPubek returns the endorsement key TPM_CreateEndorsementKeyPair
    made in hop 1;
  * PCR 10 after TPM_Startup(ST_STATE) holds the value saved by the previous
    hop's TPM_SaveState; this hop extends it once more.
Encrypted variants additionally check the stored blob header (§7.4: version 2,
ENCRYPTED and, for AES-256, ENCRYPTED_256BIT_KEY flags) and that the NV data
never appears in clear in the files, and that the hop's daemon exits 0 after
CMD_SHUTDOWN.
"""

from __future__ import annotations

import hashlib
import os
import time
import unittest

import mig_common as mc
from mig_common import vc

PCR = 10


class StateInterop(vc.DaemonTestCase):

    def setUp(self):
        self.t0 = time.monotonic()
        mc.require_vtpmd(self)
        mc.require_swtpm(self)

    def log(self, msg: str) -> None:
        print(f'    [{time.monotonic() - self.t0:5.1f}s] {msg}', flush=True)

    # ------------------------------------------------------------ plumbing

    def run_daemon(self, binary: str, statedir: str, tpm2: bool, key_args: list[str]) -> mc.Peer:
        d = mc.Peer(binary, tpm2=tpm2, statedir=statedir, extra=tuple(key_args))
        self.addCleanup(self._teardown_daemon, d)
        try:
            d.start()
        except vc.DaemonError as e:
            self.fail(f'{d.label} did not start on the shared state directory: {e}')
        return d

    def finish_hop(self, d: mc.Peer, ctrl: vc.Ctrl, hop: int) -> None:
        self.assertRc(ctrl.shutdown(), 0, f'hop {hop} ({d.label}) CMD_SHUTDOWN')
        ctrl.close()
        rc = d.wait_exit(10)
        self.assertEqual(rc, 0, f'hop {hop}: {d.label} exit status after CMD_SHUTDOWN\n{d.diagnostics()}')

    def check_files(self, statedir: str, prefix: str, key: dict | None, secrets: list[bytes], hop: int) -> None:
        permall = os.path.join(statedir, f'{prefix}-00.permall')
        self.assertTrue(os.path.exists(permall), f'hop {hop}: {permall} missing')
        version, _, hdrsize, flags, totlen = mc.blob_header(permall)
        self.assertEqual((version, hdrsize, totlen), (2, 10, os.path.getsize(permall)),
                         f'hop {hop}: permall header')
        want = 0 if key is None else (0x01 | (0x08 if key['bits'] == 256 else 0))
        self.assertEqual(flags, want, f'hop {hop}: permall header flags (0 plain, 0x01 AES-128, 0x09 AES-256)')
        if key is not None:
            for name in os.listdir(statedir):
                with open(os.path.join(statedir, name), 'rb') as f:
                    content = f.read()
                for s in secrets:
                    self.assertNotIn(s, content, f'hop {hop}: NV data in clear in encrypted {name}')

    def key_args(self, kind: str | None, workdir: str) -> tuple[list[str], dict | None]:
        """Identical --key options for both daemons; key material in files."""
        if kind is None:
            return [], None
        mc.require_vtpmd_option(self, '--key')
        if kind == 'file-aes256':
            path = os.path.join(workdir, 'state.key')
            mc.write_hex_key(path, 32, b'interop state key')
            return ['--key', f'file={path},mode=aes-256-cbc'], {'bits': 256}
        if kind == 'file-aes128':
            path = os.path.join(workdir, 'state.key')
            mc.write_hex_key(path, 16, b'interop state key 128')
            return ['--key', f'file={path},format=hex,mode=aes-128-cbc'], {'bits': 128}
        if kind == 'pwd-pbkdf2':          # defaults: aes-128-cbc, kdf=pbkdf2
            path = os.path.join(workdir, 'state.pwd')
            with open(path, 'wb') as f:
                f.write(b'correct horse battery staple\n')   # the newline is part of the passphrase
            return ['--key', f'pwdfile={path}'], {'bits': 128}
        if kind == 'pwd-sha512-aes256':
            path = os.path.join(workdir, 'state.pwd')
            with open(path, 'wb') as f:
                f.write(b'another passphrase')
            return ['--key', f'pwdfile={path},kdf=sha512,mode=aes-256-cbc'], {'bits': 256}
        raise ValueError(kind)

    # ------------------------------------------------------------ TPM 2.0

    def tpm2_roundtrip(self, key_kind: str | None) -> None:
        work = self.tempdir()
        statedir = os.path.join(work, 'state')
        os.makedirs(statedir)
        key_args, key = self.key_args(key_kind, work)
        hops = [mc.SWTPM, mc.VTPMD, mc.SWTPM, mc.VTPMD]
        nv_data = [hashlib.sha256(b'nv %d' % i).digest()[:mc.NV_SIZE] for i in range(len(hops))]
        pcr = b'\0' * 32
        primary_pub = persistent = None
        for hop, binary in enumerate(hops, start=1):
            d = self.run_daemon(binary, statedir, True, key_args)
            what = f'hop {hop} ({d.label})'
            c = d.ctrl()
            self.addCleanup(c.close)
            self.assertRc(c.init(), 0, f'{what} CMD_INIT')
            data = d.data()
            self.addCleanup(data.close)
            if hop == 1:
                self.assertTpmOk(data.transact(vc.tpm2_startup(vc.TPM_SU_CLEAR)), f'{what} Startup(CLEAR)')
                self.assertTpmOk(data.transact(vc.tpm2_nv_definespace(mc.NV_INDEX, mc.NV_SIZE)),
                                 f'{what} NV_DefineSpace')
                rsp = data.transact(mc.tpm2_createprimary())
                self.assertTpmOk(rsp, f'{what} CreatePrimary')
                handle, primary_pub = mc.parse_createprimary(rsp)
                self.assertTpmOk(data.transact(mc.tpm2_evictcontrol(handle, mc.PERSISTENT_HANDLE)),
                                 f'{what} EvictControl')
                self.assertTpmOk(data.transact(mc.tpm2_flushcontext(handle)), f'{what} FlushContext')
                rsp = data.transact(mc.tpm2_readpublic(mc.PERSISTENT_HANDLE))
                self.assertTpmOk(rsp, f'{what} ReadPublic')
                persistent = mc.parse_readpublic(rsp)
            else:
                rsp = data.transact(vc.tpm2_startup(vc.TPM_SU_STATE))
                self.assertTpmOk(rsp, f'{what} Startup(STATE) on the state the previous hop shut down orderly')
                rsp = data.transact(vc.tpm2_pcr_read(PCR))
                self.assertTpmOk(rsp, f'{what} PCR_Read')
                self.assertBytes(vc.parse_pcr_read(rsp), pcr, f'{what} PCR {PCR} after Startup(STATE)')
                rsp = data.transact(vc.tpm2_nv_read(mc.NV_INDEX, mc.NV_SIZE))
                self.assertTpmOk(rsp, f'{what} NV_Read')
                self.assertBytes(vc.parse_nv_read(rsp), nv_data[hop - 2], f'{what} NV data written by hop {hop - 1}')
                rsp = data.transact(mc.tpm2_readpublic(mc.PERSISTENT_HANDLE))
                self.assertTpmOk(rsp, f'{what} ReadPublic(0x81000001)')
                self.assertBytes(mc.parse_readpublic(rsp), persistent, f'{what} persistent key public + name')
                rsp = data.transact(mc.tpm2_createprimary())
                self.assertTpmOk(rsp, f'{what} CreatePrimary')
                handle, pub = mc.parse_createprimary(rsp)
                self.assertBytes(pub, primary_pub, f'{what} primary key from the same template (owner seed)')
                self.assertTpmOk(data.transact(mc.tpm2_flushcontext(handle)), f'{what} FlushContext')
            self.assertTpmOk(data.transact(vc.tpm2_nv_write(mc.NV_INDEX, nv_data[hop - 1])), f'{what} NV_Write')
            digest = hashlib.sha256(b'extend %d' % hop).digest()
            self.assertTpmOk(data.transact(vc.tpm2_pcr_extend(PCR, digest)), f'{what} PCR_Extend')
            pcr = hashlib.sha256(pcr + digest).digest()
            self.assertTpmOk(data.transact(vc.tpm2_shutdown(vc.TPM_SU_STATE)), f'{what} Shutdown(STATE)')
            data.close()
            self.finish_hop(d, c, hop)
            self.check_files(statedir, 'tpm2', key, nv_data[:hop], hop)
            self.log(f'{what}: {"created" if hop == 1 else "read back"} NV, persistent key, primary, '
                     f'PCR {PCR}; wrote NV + extended; files {sorted(os.listdir(statedir))}')

    # ------------------------------------------------------------ TPM 1.2

    def tpm12_roundtrip(self, key_kind: str | None) -> None:
        work = self.tempdir()
        statedir = os.path.join(work, 'state')
        os.makedirs(statedir)
        key_args, key = self.key_args(key_kind, work)
        hops = [mc.SWTPM, mc.VTPMD, mc.SWTPM, mc.VTPMD]
        nv_data = [hashlib.sha1(b'nv12 %d' % i).digest()[:16] for i in range(len(hops))]
        pcr = b'\0' * 20
        pubek = None
        for hop, binary in enumerate(hops, start=1):
            d = self.run_daemon(binary, statedir, False, key_args)
            what = f'hop {hop} ({d.label}, TPM 1.2)'
            c = d.ctrl()
            self.addCleanup(c.close)
            self.assertRc(c.init(), 0, f'{what} CMD_INIT')
            data = d.data()
            self.addCleanup(data.close)
            if hop == 1:
                self.assertTpmOk(data.transact(vc.tpm12_startup(vc.TPM12_ST_CLEAR)), f'{what} Startup(CLEAR)')
                self.assertTpmOk(data.transact(mc.tpm12_nv_definespace(mc.TPM12_NV_INDEX, 16)),
                                 f'{what} NV_DefineSpace')
                self.assertTpmOk(data.transact(mc.tpm12_create_ek()), f'{what} CreateEndorsementKeyPair')
                rsp = data.transact(mc.tpm12_readpubek())
                self.assertTpmOk(rsp, f'{what} ReadPubek')
                pubek = rsp
            else:
                rsp = data.transact(vc.tpm12_startup(mc.TPM12_ST_STATE))
                self.assertTpmOk(rsp, f'{what} Startup(ST_STATE) after the previous hop\'s SaveState')
                rsp = data.transact(vc.tpm12_pcrread(PCR))
                self.assertTpmOk(rsp, f'{what} PCRRead')
                self.assertBytes(vc.parse_tpm12_digest(rsp), pcr, f'{what} PCR {PCR} after Startup(ST_STATE)')
                rsp = data.transact(mc.tpm12_nv_read(mc.TPM12_NV_INDEX, 16))
                self.assertTpmOk(rsp, f'{what} NV_ReadValue')
                self.assertBytes(mc.parse_tpm12_nv_read(rsp), nv_data[hop - 2], f'{what} NV data of hop {hop - 1}')
                self.assertBytes(data.transact(mc.tpm12_readpubek()), pubek, f'{what} ReadPubek (EK of hop 1)')
            self.assertTpmOk(data.transact(mc.tpm12_nv_write(mc.TPM12_NV_INDEX, nv_data[hop - 1])),
                             f'{what} NV_WriteValue')
            digest = hashlib.sha1(b'extend %d' % hop).digest()
            self.assertTpmOk(data.transact(vc.tpm12_extend(PCR, digest)), f'{what} Extend')
            pcr = hashlib.sha1(pcr + digest).digest()
            self.assertTpmOk(data.transact(mc.tpm12_savestate()), f'{what} SaveState')
            data.close()
            self.finish_hop(d, c, hop)
            self.check_files(statedir, 'tpm', key, nv_data[:hop], hop)
            self.assertTrue(os.path.exists(os.path.join(statedir, 'tpm-00.savestate')),
                            f'{what}: no tpm-00.savestate after TPM_SaveState')
            self.log(f'{what}: {"created" if hop == 1 else "read back"} NV, EK, PCR {PCR}; '
                     f'wrote NV + extended + SaveState; files {sorted(os.listdir(statedir))}')

    # ------------------------------------------------------------ the tests

    def test_tpm2_plain(self):
        self.tpm2_roundtrip(None)

    def test_tpm2_key_file_aes256(self):
        self.tpm2_roundtrip('file-aes256')

    def test_tpm2_key_pwdfile_pbkdf2(self):
        self.tpm2_roundtrip('pwd-pbkdf2')

    def test_tpm12_plain(self):
        self.tpm12_roundtrip(None)

    def test_tpm12_key_file_aes128(self):
        self.tpm12_roundtrip('file-aes128')

    def test_tpm12_key_pwdfile_sha512_aes256(self):
        self.tpm12_roundtrip('pwd-sha512-aes256')


if __name__ == '__main__':
    unittest.main()

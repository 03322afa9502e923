"""tpm2-tools (tpm2-tss swtpm TCTI) against a TPM 2.0 vtpmd over TCP.

The TCTI `swtpm:host=127.0.0.1,port=P` sends TPM commands to the data port P
and CMD_SET_LOCALITY to the control port P+1.  There is no resource manager
in between, so every tool that leaves a transient object loaded is followed
by `tpm2_flushcontext -t` (libtpms has only 3 object slots).

Restart semantics demonstrated here: vtpmd sends TPM2_Shutdown(SU_STATE) on
SIGTERM (protocol.md §8.5), so after a restart the TPM resumes with
`tpm2_startup` (SU_STATE), PCRs 0-15 keep their values, and the lockout
counter stays 0 although a DA-protected key was used.  The control case with
`disable-auto-shutdown` shows the opposite (and what swtpm 0.7.1 does).
"""

import hashlib
import os
import re
import unittest

from clients_common import REFERENCE, ClientTestCase, require_programs

TOOLS = ['tpm2_startup', 'tpm2_shutdown', 'tpm2_getrandom', 'tpm2_pcrextend', 'tpm2_pcrread',
         'tpm2_createprimary', 'tpm2_create', 'tpm2_load', 'tpm2_readpublic', 'tpm2_sign',
         'tpm2_verifysignature', 'tpm2_evictcontrol', 'tpm2_nvdefine', 'tpm2_nvwrite',
         'tpm2_nvread', 'tpm2_getcap', 'tpm2_flushcontext', 'openssl', 'timeout']
TCTI_LIB = 'libtss2-tcti-swtpm.so.0'

PERSISTENT = '0x81000001'
NV_INDEX = '0x01500016'
MESSAGE = b'vtpmd: signed by tpm2-tools through the swtpm TCTI\n'
PRIMARY_TEMPLATE = ['-C', 'o', '-g', 'sha256', '-G', 'ecc256']


def tcti_present() -> bool:
    for d in ('/usr/lib/x86_64-linux-gnu', '/usr/lib64', '/usr/lib', '/lib/x86_64-linux-gnu'):
        if os.path.exists(os.path.join(d, TCTI_LIB)):
            return True
    return False


class Tpm2Tools(ClientTestCase):

    def setUp(self):
        super().setUp()
        self.bin = require_programs(self, *TOOLS)
        if not tcti_present():
            self.fail(f'{TCTI_LIB} missing (Debian package libtss2-tcti-swtpm0)')
        self.statedir = self.path('state')
        os.makedirs(self.statedir)

    # -- helpers ---------------------------------------------------------------

    def start(self, name: str, flags: str = 'not-need-init'):
        self.d = self.start_pair_daemon(tpm2=True, statedir=self.statedir, flags=flags, name=name)
        self.env = {'TPM2TOOLS_TCTI': f'swtpm:host=127.0.0.1,port={self.d.data_port}'}
        return self.d

    def tpm2(self, tool: str, *args: str, ok: bool = True, flush: bool = False):
        r = self.run_cmd([self.bin['tpm2_' + tool]] + list(args), env=self.env, ok=ok,
                         what='tpm2_' + tool)
        if flush:
            self.run_cmd([self.bin['tpm2_flushcontext'], '-t'], env=self.env, what='tpm2_flushcontext -t')
        return r

    def pcr(self, index: int) -> bytes:
        out = f'pcr{index}.bin'
        self.tpm2('pcrread', f'sha256:{index}', '-o', out)
        value = self.read(out)
        self.assertEqual(len(value), 32, f'tpm2_pcrread -o wrote {len(value)} bytes')
        return value

    def getcap(self, what: str) -> str:
        return self.tpm2('getcap', what).out

    def lockout_counter(self) -> int:
        m = re.search(r'TPM2_PT_LOCKOUT_COUNTER:\s*(0x[0-9a-fA-F]+)', self.getcap('properties-variable'))
        self.assertIsNotNone(m, 'tpm2_getcap properties-variable shows TPM2_PT_LOCKOUT_COUNTER')
        return int(m.group(1), 16)

    def openssl_verify(self, pem: str, sig: str, msg: str, ok: bool = True):
        r = self.run_cmd([self.bin['openssl'], 'dgst', '-sha256', '-verify', pem, '-signature', sig, msg],
                         ok=ok, what='openssl dgst -verify')
        if ok:
            self.assertIn('Verified OK', r.out)
        return r

    def use_da_protected_key(self, prefix: str):
        """Create, load and use (TPM2_Sign with an empty password) a key without
        noDA: the TPM records 'DA protected entity used' until an orderly
        shutdown."""
        self.tpm2('createprimary', *PRIMARY_TEMPLATE, '-c', prefix + 'primary.ctx', flush=True)
        self.tpm2('create', '-C', prefix + 'primary.ctx', '-G', 'ecc256', '-u', prefix + 'k.pub',
                  '-r', prefix + 'k.priv', flush=True)
        self.tpm2('load', '-C', prefix + 'primary.ctx', '-u', prefix + 'k.pub', '-r', prefix + 'k.priv',
                  '-c', prefix + 'k.ctx', flush=True)
        self.write('da.msg', b'da')
        self.tpm2('sign', '-c', prefix + 'k.ctx', '-g', 'sha256', '-o', prefix + 'da.sig', 'da.msg',
                  flush=True)

    # -- tests -----------------------------------------------------------------

    def test_sequence_restart_and_resume(self):
        self.start('run1')
        # Startup, random numbers, PCRs.
        self.tpm2('startup', '-c')
        self.tpm2('getrandom', '-o', 'rnd1', '32')
        self.tpm2('getrandom', '-o', 'rnd2', '32')
        rnd1, rnd2 = self.read('rnd1'), self.read('rnd2')
        self.assertEqual((len(rnd1), len(rnd2)), (32, 32))
        self.assertNotEqual(rnd1, rnd2, 'two tpm2_getrandom calls returned the same bytes')
        self.assertNotEqual(rnd1, bytes(32))
        self.assertRegex(self.tpm2('getrandom', '--hex', '16').out.strip(), r'^[0-9a-f]{32}$')

        digest16 = hashlib.sha256(b'vtpmd pcr 16').digest()
        self.assertEqual(self.pcr(16), bytes(32), 'PCR 16 after Startup(CLEAR)')
        self.tpm2('pcrextend', f'16:sha256={digest16.hex()}')
        self.assertEqual(self.pcr(16).hex(), hashlib.sha256(bytes(32) + digest16).hexdigest(),
                         'PCR 16 = SHA-256(0^32 || digest)')
        # PCR 15 is saved by TPM2_Shutdown(SU_STATE) (stateSave PCR): used for the resume check.
        digest15 = hashlib.sha256(b'vtpmd pcr 15').digest()
        self.tpm2('pcrextend', f'15:sha256={digest15.hex()}')
        pcr15 = self.pcr(15)
        self.assertEqual(pcr15.hex(), hashlib.sha256(bytes(32) + digest15).hexdigest())

        # Keys: primary (ECC P-256), RSA signing child, sign + verify.
        self.tpm2('createprimary', *PRIMARY_TEMPLATE, '-c', 'primary.ctx', '-f', 'pem',
                  '-o', 'primary1.pem', flush=True)
        self.tpm2('create', '-C', 'primary.ctx', '-G', 'rsa2048', '-g', 'sha256',
                  '-u', 'key.pub', '-r', 'key.priv', flush=True)
        self.tpm2('load', '-C', 'primary.ctx', '-u', 'key.pub', '-r', 'key.priv', '-c', 'key.ctx',
                  flush=True)
        self.tpm2('readpublic', '-c', 'key.ctx', '-f', 'pem', '-o', 'key.pem', flush=True)
        self.assertIn(b'BEGIN PUBLIC KEY', self.read('key.pem'))
        self.write('msg', MESSAGE)
        self.tpm2('sign', '-c', 'key.ctx', '-g', 'sha256', '-o', 'sig.tss', 'msg', flush=True)
        self.tpm2('verifysignature', '-c', 'key.ctx', '-g', 'sha256', '-m', 'msg', '-s', 'sig.tss',
                  '-t', 'verified.ticket', flush=True)
        self.assertGreater(os.path.getsize(self.path('verified.ticket')), 0)
        self.tpm2('sign', '-c', 'key.ctx', '-g', 'sha256', '-f', 'plain', '-o', 'sig.plain', 'msg',
                  flush=True)
        self.assertEqual(os.path.getsize(self.path('sig.plain')), 256, 'RSA-2048 plain signature')
        self.openssl_verify('key.pem', 'sig.plain', 'msg')
        self.write('msg.tampered', MESSAGE + b'!')
        self.openssl_verify('key.pem', 'sig.plain', 'msg.tampered', ok=False)

        # Persistent key, NV index, capabilities.
        r = self.tpm2('evictcontrol', '-C', 'o', '-c', 'key.ctx', PERSISTENT, flush=True)
        self.assertIn('persisted', r.out)
        self.assertIn(PERSISTENT, self.getcap('handles-persistent'))
        nvdata = os.urandom(32)
        self.write('nv.in', nvdata)
        self.tpm2('nvdefine', NV_INDEX, '-C', 'o', '-s', '32', '-a', 'ownerread|ownerwrite')
        self.tpm2('nvwrite', NV_INDEX, '-C', 'o', '-i', 'nv.in')
        self.tpm2('nvread', NV_INDEX, '-C', 'o', '-s', '32', '-o', 'nv.out1')
        self.assertEqual(self.read('nv.out1'), nvdata, 'tpm2_nvread returns what tpm2_nvwrite wrote')
        self.assertIn('0x1500016', self.getcap('handles-nv-index'))
        fixed = self.getcap('properties-fixed')
        self.assertRegex(fixed, r'TPM2_PT_FAMILY_INDICATOR:\s*\n\s*raw: 0x322E3000\s*\n\s*value: "2.0"')
        self.assertRegex(fixed, r'TPM2_PT_MANUFACTURER:\s*\n\s*raw: 0x49424D00')
        self.assertEqual(self.lockout_counter(), 0)

        # Stop with SIGTERM: exit status 0; vtpmd sends TPM2_Shutdown(SU_STATE) itself.
        self.stop_daemon(self.d)

        # Restart on the same state directory (new ports).
        self.start('run2')
        r = self.tpm2('startup', ok=not REFERENCE)          # SU_STATE = TPM Resume
        if REFERENCE:
            # swtpm 0.7.1 has no automatic shutdown: resume is refused (TPM_RC_VALUE).
            self.assertIn('0x1C4', r.err)
            self.tpm2('startup', '-c')
        else:
            self.assertEqual(self.lockout_counter(), 0, 'no DA strike after SIGTERM + restart')
            self.assertEqual(self.pcr(15), pcr15, 'PCR 15 restored by TPM2_Startup(SU_STATE)')
            self.assertIn('orderly:                   1', self.getcap('properties-variable'))
        self.tpm2('nvread', NV_INDEX, '-C', 'o', '-s', '32', '-o', 'nv.out2')
        self.assertEqual(self.read('nv.out2'), nvdata, 'NV index content after restart')
        self.assertIn(PERSISTENT, self.getcap('handles-persistent'))
        self.tpm2('readpublic', '-c', PERSISTENT, '-f', 'pem', '-o', 'key2.pem')
        self.assertEqual(self.read('key2.pem'), self.read('key.pem'), 'persistent key public part')
        self.tpm2('sign', '-c', PERSISTENT, '-g', 'sha256', '-f', 'plain', '-o', 'sig2.plain', 'msg')
        self.openssl_verify('key.pem', 'sig2.plain', 'msg')
        self.tpm2('createprimary', *PRIMARY_TEMPLATE, '-c', 'primary2.ctx', '-f', 'pem',
                  '-o', 'primary2.pem', flush=True)
        self.assertEqual(self.read('primary2.pem'), self.read('primary1.pem'),
                         'same template, same primary key: the owner seed survived')

        # The client shuts down itself (SU_CLEAR): vtpmd must not add its own
        # TPM2_Shutdown(SU_STATE) on SIGTERM, so the next resume is refused.
        self.tpm2('shutdown', '-c')
        self.stop_daemon(self.d)
        self.start('run3')
        r = self.tpm2('startup', ok=False)
        self.assertIn('0x1C4', r.err, 'TPM2_Startup(SU_STATE) after TPM2_Shutdown(SU_CLEAR)')
        self.tpm2('startup', '-c')
        self.assertEqual(self.lockout_counter(), 0, 'orderly SU_CLEAR shutdown: no DA strike')
        self.assertEqual(self.pcr(15), bytes(32), 'PCR 15 reset by Startup(CLEAR)')
        self.tpm2('nvread', NV_INDEX, '-C', 'o', '-s', '32', '-o', 'nv.out3')
        self.assertEqual(self.read('nv.out3'), nvdata)
        self.stop_daemon(self.d)

    def test_disorderly_stop_costs_a_da_strike(self):
        """Control experiment for the automatic shutdown: the same stop with
        --flags disable-auto-shutdown (swtpm 0.7.1: plain SIGTERM).

        Note: Startup(CLEAR) must come first here.  A refused
        Startup(SU_STATE) makes libtpms forget that a DA-protected entity was
        used (it clears the in-RAM orderlyState before returning TPM_RC_VALUE),
        so a Startup(CLEAR) after it would not count the strike."""
        flags = 'not-need-init' if REFERENCE else 'not-need-init,disable-auto-shutdown'
        self.start('run1', flags=flags)
        self.tpm2('startup', '-c')
        self.use_da_protected_key('a-')
        self.assertEqual(self.lockout_counter(), 0)
        self.stop_daemon(self.d)
        self.start('run2')
        self.tpm2('startup', '-c')
        self.assertEqual(self.lockout_counter(), 1, 'disorderly stop after DA use → failedTries 1')
        self.assertIn('orderly:                   0', self.getcap('properties-variable'))
        # With the automatic shutdown back on, the next SIGTERM is orderly again.
        self.use_da_protected_key('b-')
        self.stop_daemon(self.d)
        self.start('run3')
        self.tpm2('startup', ok=not REFERENCE)
        if not REFERENCE:
            self.assertEqual(self.lockout_counter(), 1, 'no further strike after an orderly stop')
            self.assertIn('orderly:                   1', self.getcap('properties-variable'))
        self.stop_daemon(self.d)


if __name__ == '__main__':
    unittest.main(verbosity=2)

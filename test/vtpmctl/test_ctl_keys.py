"""Instances with an encrypted TPM state (--key-file / --passphrase-file). These need vtpmd's
--key option; until it exists they fail at vtpmd's option parsing, and the failure shows
vtpmd's own message, which is itself what `start` promises."""

import json
import os

import vtpm_client as vc
from harness import AttachedTpm, EXIT_OK, EXIT_USAGE, VtpmctlTestCase

NV_INDEX = 0x01500018
SECRET = b'encrypted at rest'


class KeyTest(VtpmctlTestCase):

    def write(self, name: str, text: str) -> str:
        path = os.path.join(self.root, name)
        with open(path, 'w') as f:
            f.write(text)
        os.chmod(path, 0o600)
        return path

    def roundtrip(self, name: str) -> None:
        tpm = AttachedTpm(self.paths(name)['ctrl'])
        tpm.transact_ok(vc.tpm2_startup())
        tpm.transact_ok(vc.tpm2_nv_definespace(NV_INDEX, len(SECRET)))
        tpm.transact_ok(vc.tpm2_nv_write(NV_INDEX, SECRET))
        tpm.close()
        self.ctl('stop', name, check=EXIT_OK)
        permall = open(os.path.join(self.paths(name)['tpm'], 'tpm2-00.permall'), 'rb').read()
        self.assertNotIn(SECRET, permall)
        self.ctl('start', name, check=EXIT_OK)
        tpm = AttachedTpm(self.paths(name)['ctrl'])
        tpm.transact_ok(vc.tpm2_startup())
        self.assertEqual(vc.parse_nv_read(tpm.transact_ok(vc.tpm2_nv_read(NV_INDEX, len(SECRET)))),
                         SECRET)
        tpm.close()

    def test_create_validates_key_files(self):
        bad = self.write('short.key', 'abcd\n')
        p = self.ctl('create', 'k0', '--key-file', bad, check=EXIT_USAGE)
        self.assertIn('64 hex digits', p.stderr)
        empty = self.write('empty.pw', '')
        self.assertIn('is empty', self.ctl('create', 'k0', '--passphrase-file', empty,
                                           check=EXIT_USAGE).stderr)
        key = self.write('good.key', '00' * 32)
        self.assertEqual(self.ctl('create', 'k0', '--key-file', key, '--passphrase-file', key)
                         .returncode, EXIT_USAGE)
        rel = os.path.relpath(key)
        self.ctl('create', 'k0', '--key-file', rel, check=EXIT_OK)
        self.assertEqual(json.load(open(self.paths('k0')['config']))['keyFile'], key)

    def test_key_file_instance(self):
        key = self.write('state.key', os.urandom(32).hex() + '\n')
        self.ctl('create', 'kf', '--key-file', key, check=EXIT_OK)
        self.ctl('start', 'kf', check=EXIT_OK)
        self.roundtrip('kf')

    def test_passphrase_instance(self):
        pw = self.write('state.pw', 'correct horse battery staple')
        self.ctl('create', 'pw', '--passphrase-file', pw, check=EXIT_OK)
        self.ctl('start', 'pw', check=EXIT_OK)
        self.roundtrip('pw')

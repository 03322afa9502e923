"""Instance names: bad ones are refused with a clear message and leave nothing behind."""

import os

from harness import EXIT_OK, EXIT_USAGE, VtpmctlTestCase


class NameTest(VtpmctlTestCase):
    BAD = ['../x', 'a/b', '', 'a' * 65, '-x', '.', '..', '.hidden', 'a b', 'x;y', 'ü']

    def test_bad_names_refused_everywhere(self):
        for name in self.BAD:
            for cmd in (['create'], ['start', '--create'], ['status'], ['destroy'],
                        ['qemu-args'], ['stop']):
                with self.subTest(name=name, cmd=cmd[0]):
                    # '--' so that '-x' reaches vtpmctl's own validation as a name
                    p = self.ctl(*cmd, '--', name)
                    self.assertEqual(p.returncode, EXIT_USAGE, p.stderr)
                    self.assertIn('vtpmctl: invalid instance name', p.stderr)
                    self.assertIn('[A-Za-z0-9][A-Za-z0-9_.-]{0,63}', p.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.root, 'lib')) and
                         os.listdir(os.path.join(self.root, 'lib')))
        self.assertFalse(os.path.exists(os.path.join(self.root, 'x')))

    def test_dash_name_without_separator_is_a_usage_error(self):
        p = self.ctl('create', '-x')
        self.assertEqual(p.returncode, EXIT_USAGE, p.stderr)

    def test_messages_say_why(self):
        self.assertIn('empty', self.ctl('create', '--', '').stderr)
        self.assertIn('65 characters', self.ctl('create', 'a' * 65).stderr)
        self.assertIn("contains '/'", self.ctl('create', 'a/b').stderr)
        self.assertIn("start with a letter or digit", self.ctl('create', '--', '-x').stderr)

    def test_good_edge_names(self):
        for name in ['a', 'A' * 64, 'vm-1.prod_2', '0']:
            with self.subTest(name=name):
                self.ctl('create', name, check=EXIT_OK)
                self.assertEqual(oct(os.stat(self.paths(name)['state']).st_mode & 0o777), '0o700')
                self.assertEqual(oct(os.stat(self.paths(name)['tpm']).st_mode & 0o777), '0o700')
                self.assertEqual(oct(os.stat(self.paths(name)['config']).st_mode & 0o777),
                                 '0o600')

"""create / start / list / stop / destroy, many instances at once, and the JSON views."""

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor

from harness import (EXIT_BUSY, EXIT_NOT_FOUND, EXIT_OK, EXIT_USAGE, VtpmctlTestCase,
                     pid_alive)

COUNT = 50
WORKERS = 8


class LifecycleTest(VtpmctlTestCase):

    def test_fifty_instances(self):
        t0 = time.monotonic()
        names = [f'vm{i:02d}' for i in range(COUNT)]

        def each(fn):
            with ThreadPoolExecutor(WORKERS) as pool:
                return list(pool.map(fn, names))

        each(lambda n: self.ctl('create', n, '--tpm', '1.2' if n.endswith('7') else '2.0',
                                check=EXIT_OK))
        started = each(lambda n: self.ctl('start', n, check=EXIT_OK))
        for name, p in zip(names, started):
            self.assertIn(f'path={self.paths(name)["ctrl"]} ', p.stdout)
            self.assertIn('-device tpm-tis,tpmdev=tpm0', p.stdout)

        listed = {e['name']: e for e in self.list_json()}
        self.assertEqual(sorted(listed), names)
        for name in names:
            e = listed[name]
            self.assertEqual(e['state'], 'running', e)
            self.assertEqual(e['tpm'], '1.2' if name.endswith('7') else '2.0')
            self.assertEqual(e['pid'], self.pid_of(name))
            self.assertEqual(e['health']['program'], 'vtpmd')
            self.assertEqual(e['health']['pid'], e['pid'])
            self.assertFalse(e['vmAttached'])

        table = self.ctl('list', check=EXIT_OK).stdout.splitlines()
        self.assertEqual(table[0].split()[:4], ['NAME', 'TPM', 'STATE', 'PID'])
        self.assertEqual(len(table), COUNT + 1)
        self.assertTrue(all(' running ' in line for line in table[1:]))

        pids = [self.pid_of(n) for n in names]
        stopped = each(lambda n: self.ctl('stop', n, check=EXIT_OK))
        for p in stopped:
            self.assertIn('CMD_SHUTDOWN', p.stdout)   # the orderly path worked
        self.assertFalse(any(pid_alive(pid) for pid in pids))
        self.assertTrue(all(e['state'] == 'stopped' for e in self.list_json()))
        for name in names:   # state was saved by the orderly shutdown
            self.assertTrue(os.listdir(self.paths(name)['tpm']), name)

        each(lambda n: self.ctl('destroy', n, check=EXIT_OK))
        self.assertEqual(self.list_json(), [])
        self.assertEqual(os.listdir(os.path.join(self.root, 'lib')), [])
        elapsed = time.monotonic() - t0
        self.assertLess(elapsed, 60, f'{COUNT} instances took {elapsed:.1f}s')

    def test_second_start_reports_already_running(self):
        self.ctl('create', 'one', check=EXIT_OK)
        self.ctl('start', 'one', check=EXIT_OK)
        pid = self.pid_of('one')
        p = self.ctl('start', 'one', check=EXIT_BUSY)
        self.assertIn(f'already running (pid {pid})', p.stderr)
        self.assertTrue(pid_alive(pid))
        self.assertEqual(self.pid_of('one'), pid)

    def test_concurrent_starts_of_one_name(self):
        self.ctl('create', 'race', check=EXIT_OK)
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda _: self.ctl('start', 'race'), range(4)))
        codes = sorted(p.returncode for p in results)
        self.assertEqual(codes, [EXIT_OK, EXIT_BUSY, EXIT_BUSY, EXIT_BUSY],
                         [p.stderr for p in results])

    def test_start_create_and_status_json(self):
        p = self.ctl('start', 'fresh', '--create', check=EXIT_OK)
        self.assertTrue(p.stdout.startswith('-chardev socket,id=chrtpm,'), p.stdout)
        self.assertEqual(len(p.stdout.splitlines()), 1)   # stdout carries only the QEMU args
        st = self.status('fresh')
        for key in ('name', 'state', 'tpm', 'device', 'pid', 'uptimeSeconds', 'vmAttached',
                    'commandsServed', 'lastCommand', 'ctrlSocket', 'health'):
            self.assertIn(key, st)
        self.assertEqual((st['name'], st['state'], st['tpm'], st['device']),
                         ('fresh', 'running', '2.0', 'tis'))
        self.assertIsNone(st['lastCommand'])
        self.assertEqual(st['commandsServed'], 0)
        self.assertGreaterEqual(st['uptimeSeconds'], 0)
        cfg = json.load(open(self.paths('fresh')['config']))
        self.assertEqual(cfg['name'], 'fresh')
        self.assertIsNone(cfg['keyFile'])

    def test_create_refuses_existing_and_options(self):
        self.ctl('create', 'c1', '--device', 'crb', '--socket-mode', '0660', check=EXIT_OK)
        self.assertIn('already exists', self.ctl('create', 'c1', check=EXIT_BUSY).stderr)
        self.assertIn('tpm-crb', self.ctl('qemu-args', 'c1', check=EXIT_OK).stdout)
        self.ctl('start', 'c1', check=EXIT_OK)
        self.assertEqual(oct(os.stat(self.paths('c1')['ctrl']).st_mode & 0o777), '0o660')
        self.assertIn('needs a TPM 2.0',
                      self.ctl('create', 'c2', '--tpm', '1.2', '--device', 'crb').stderr)
        self.assertIn('0NNN', self.ctl('create', 'c3', '--socket-mode', '777',
                                       check=EXIT_USAGE).stderr)
        self.assertIn('is not a readable file',
                      self.ctl('create', 'c4', '--key-file', '/nonexistent').stderr)

    def test_missing_instances(self):
        for cmd in (['start', 'nope'], ['qemu-args', 'nope'], ['destroy', 'nope'],
                    ['stop', 'nope'], ['ctrl', 'nope', 'init']):
            with self.subTest(cmd=cmd[0]):
                p = self.ctl(*cmd, check=EXIT_NOT_FOUND)
                hint = 'vtpmctl list' if cmd[0] in ('destroy', 'stop') else 'vtpmctl create nope'
                self.assertIn(hint, p.stderr)
        p = self.ctl('status', 'nope', '--json', check=EXIT_NOT_FOUND)
        self.assertEqual(json.loads(p.stdout)['state'], 'not-created')

    def test_destroy_refuses_running_unless_forced(self):
        self.ctl('start', 'd1', '--create', check=EXIT_OK)
        pid = self.pid_of('d1')
        p = self.ctl('destroy', 'd1', check=EXIT_BUSY)
        self.assertIn('vtpmctl stop d1', p.stderr)
        self.ctl('destroy', 'd1', '--force', check=EXIT_OK)
        self.assertFalse(pid_alive(pid))
        self.assertFalse(os.path.exists(self.paths('d1')['state']))
        self.assertFalse(os.path.exists(self.paths('d1')['run']))

    def test_stop_of_stopped_instance_is_ok(self):
        self.ctl('create', 's1', check=EXIT_OK)
        self.assertIn('not running', self.ctl('stop', 's1', check=EXIT_OK).stdout)

    def test_help_on_every_subcommand(self):
        for sub in ('create', 'start', 'stop', 'list', 'status', 'qemu-args', 'destroy',
                    'exec', 'ctrl'):
            with self.subTest(sub=sub):
                p = self.ctl(sub, '--help', check=EXIT_OK)
                self.assertIn('Exit codes', p.stdout)

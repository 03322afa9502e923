#!/usr/bin/env python3
"""Run the migration / interoperability tests (issue 4, items 2-4).

Usage: run.py [module[.Class.test] ...]   (state_interop, live, shared_storage;
with or without the "test_" prefix / ".py" suffix; default: all of them)

Environment: VTPMD (daemon binary), VTPMD_SWTPM (peer swtpm, default
/usr/bin/swtpm), and the QEMU variables of test/qemu/qemu_harness.py.
Exit status 0 only if every test ran and passed.
"""

import glob
import os
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True


def module_name(arg: str) -> str:
    name = os.path.basename(arg)
    if name.endswith('.py'):
        name = name[:-3]
    if not name.startswith('test_'):
        name = 'test_' + name
    return name


def main(argv: list) -> int:
    if argv:
        names = [module_name(a) for a in argv]
    else:
        names = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(HERE, 'test_*.py')))
    missing = [n for n in names if not os.path.exists(os.path.join(HERE, n.split('.')[0] + '.py'))]
    if missing:
        print(f'run.py: no such test module(s): {", ".join(missing)}', file=sys.stderr)
        return 2
    import mig_common
    print(f'vtpmd: {mig_common.VTPMD}  swtpm: {mig_common.SWTPM}  modules: {" ".join(names)}', flush=True)
    suite = unittest.defaultTestLoader.loadTestsFromNames(names)
    t0 = time.monotonic()
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout, buffer=False).run(suite)
    print(f'elapsed {time.monotonic() - t0:.1f}s', flush=True)
    return 0 if result.wasSuccessful() and result.testsRun > 0 else 1


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))

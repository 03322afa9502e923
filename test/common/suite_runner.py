"""The runner behind every test folder's run.py: picks the unittest modules named on the
command line (with or without the "test_" prefix and ".py" suffix, optionally
module.Class.test; default every test_*.py of the folder), runs them verbosely and turns the
result into an exit status.

A skipped test is a failure here, except in reference mode (VTPMD_REFERENCE set, the suite
pointed at Debian's swtpm), where the vtpmd-only tests skip by design: a test whose peer is
missing must never pass by skipping.
"""

import glob
import os
import sys
import time
import unittest
from typing import Callable, Optional


def module_name(arg: str) -> str:
    name = os.path.basename(arg)
    if name.endswith('.py'):
        name = name[:-3]
    return name if name.startswith('test_') else 'test_' + name


def main(here: str, argv: list[str], describe: Callable[[list[str]], Optional[str]]) -> int:
    """describe(names) prints the banner and returns an error text if the environment is
    unusable (exit status 2), else None."""
    sys.dont_write_bytecode = True
    if argv:
        names = [module_name(a) for a in argv]
    else:
        names = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(here, 'test_*.py')))
    missing = [n for n in names if not os.path.exists(os.path.join(here, n.split('.')[0] + '.py'))]
    if missing:
        print(f'run.py: no such test module(s): {", ".join(missing)}', file=sys.stderr)
        return 2
    problem = describe(names)
    if problem:
        print(f'run.py: {problem}', file=sys.stderr)
        return 2
    suite = unittest.defaultTestLoader.loadTestsFromNames(names)
    t0 = time.monotonic()
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout, buffer=False).run(suite)
    print(f'elapsed {time.monotonic() - t0:.1f}s', flush=True)
    skipped_ok = bool(os.environ.get('VTPMD_REFERENCE'))
    if result.skipped and not skipped_ok:
        print('run.py: skipped tests count as failures', file=sys.stderr)
        return 1
    return 0 if result.wasSuccessful() and result.testsRun > 0 else 1

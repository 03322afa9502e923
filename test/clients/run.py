#!/usr/bin/env python3
"""Run the real-client tests (tpm2-tools, TrouSerS + tpm-tools, swtpm-tools).

Usage: run.py [module ...]   (names with or without the "test_" prefix and
".py" suffix; default: every test_*.py here)

Environment: VTPMD = the daemon binary (default build/daemon/vtpmd);
VTPMD_REFERENCE=swtpm when VTPMD is Debian's swtpm (see
test/integration/vtpm_client.py).  Exit status 0 only if every test passed;
a missing peer program is a failure, never a skip.
"""

import glob
import os
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(1, os.path.normpath(os.path.join(HERE, '..', 'integration')))
sys.dont_write_bytecode = True


def module_name(arg: str) -> str:
    name = os.path.basename(arg)
    if name.endswith('.py'):
        name = name[:-3]
    return name if name.startswith('test_') else 'test_' + name


def main(argv: list[str]) -> int:
    import vtpm_client
    if argv:
        names = [module_name(a) for a in argv]
    else:
        names = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(HERE, 'test_*.py')))
    missing = [n for n in names if not os.path.exists(os.path.join(HERE, n + '.py'))]
    if missing:
        print(f'run.py: no such test module(s): {", ".join(missing)}', file=sys.stderr)
        return 2
    if not os.access(vtpm_client.VTPMD, os.X_OK):
        print(f'run.py: daemon binary not executable: {vtpm_client.VTPMD} (set VTPMD)', file=sys.stderr)
        return 2
    mode = 'reference (swtpm)' if vtpm_client.REFERENCE else 'vtpmd'
    print(f'daemon: {vtpm_client.VTPMD}  mode: {mode}  modules: {" ".join(names)}', flush=True)
    suite = unittest.defaultTestLoader.loadTestsFromNames(names)
    t0 = time.monotonic()
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout, buffer=False).run(suite)
    print(f'elapsed {time.monotonic() - t0:.1f}s', flush=True)
    ok = result.wasSuccessful() and result.testsRun > 0 and not result.skipped
    if result.skipped:
        print('run.py: skipped tests count as failures here', file=sys.stderr)
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))

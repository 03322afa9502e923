#!/usr/bin/env python3
"""Run the vtpmctl tests: run.py [module ...] (names with or without "test_").
Environment: VTPMCTL, VTPMD (see harness.py). Exit 0 only if every test passed."""

import os
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True


def main(argv: list[str]) -> int:
    import harness
    names = [f"test_ctl_{a.removeprefix('test_').removeprefix('ctl_').removesuffix('.py')}"
             for a in argv] or sorted(
        f[:-3] for f in os.listdir(HERE) if f.startswith('test_ctl_') and f.endswith('.py'))
    for tool in (harness.VTPMCTL, harness.VTPMD):
        if not os.access(tool, os.X_OK):
            print(f'run.py: not executable: {tool} (set VTPMCTL / VTPMD)', file=sys.stderr)
            return 2
    print(f'vtpmctl: {harness.VTPMCTL}  vtpmd: {harness.VTPMD}  modules: {" ".join(names)}',
          flush=True)
    suite = unittest.defaultTestLoader.loadTestsFromNames(names)
    t0 = time.monotonic()
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(suite)
    print(f'elapsed {time.monotonic() - t0:.1f}s', flush=True)
    return 0 if result.wasSuccessful() and result.testsRun > 0 else 1


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))

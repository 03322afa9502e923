#!/usr/bin/env python3
"""Run the vtpmd integration tests.

Usage: run.py [module ...]   (module names with or without the "test_"
prefix / ".py" suffix; default: every test_*.py here)

Environment: VTPMD (daemon binary), VTPMD_REFERENCE=swtpm (reference mode),
see vtpm_client.py.  Exit status 0 only if every test passed.
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.normpath(os.path.join(HERE, '..', 'common')))

import suite_runner  # noqa: E402


def describe(names: list[str]):
    import vtpm_client
    if not os.access(vtpm_client.VTPMD, os.X_OK):
        return f'daemon binary not executable: {vtpm_client.VTPMD} (set VTPMD)'
    mode = 'reference (swtpm)' if vtpm_client.REFERENCE else 'vtpmd'
    print(f'daemon: {vtpm_client.VTPMD}  mode: {mode}  modules: {" ".join(names)}', flush=True)
    return None


if __name__ == '__main__':
    sys.exit(suite_runner.main(HERE, sys.argv[1:], describe))

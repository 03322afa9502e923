#!/usr/bin/env python3
"""Run the migration / interoperability tests (issue 4, items 2-4).

Usage: run.py [module[.Class.test] ...]   (state_interop, live, shared_storage;
with or without the "test_" prefix / ".py" suffix; default: all of them)

Environment: VTPMD (daemon binary), VTPMD_SWTPM (peer swtpm, default
/usr/bin/swtpm), and the QEMU variables of test/qemu/qemu_harness.py.
Exit status 0 only if every test ran and passed.
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.normpath(os.path.join(HERE, '..', 'common')))

import suite_runner  # noqa: E402


def describe(names: list[str]):
    import mig_common
    print(f'vtpmd: {mig_common.VTPMD}  swtpm: {mig_common.SWTPM}  modules: {" ".join(names)}',
          flush=True)
    return None


if __name__ == '__main__':
    sys.exit(suite_runner.main(HERE, sys.argv[1:], describe))

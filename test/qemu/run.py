#!/usr/bin/env python3
"""Run the vtpmd + QEMU end-to-end tests.

Usage: run.py [module ...]   (tpm2_tis, tpm2_crb, tpm12_tis, multi_vm; with or
without the "test_" prefix / ".py" suffix; default: all of them)

Environment: VTPMD (daemon binary) and the others listed in qemu_harness.py.
Exit status 0 only if every test ran and passed.
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.normpath(os.path.join(HERE, '..', 'common')))

import suite_runner  # noqa: E402


def describe(names: list[str]):
    import qemu_harness
    print(f'daemon: {qemu_harness.VTPMD}  qemu: {qemu_harness.QEMU}  '
          f'kernel: {qemu_harness.find_kernel()}  modules: {" ".join(names)}', flush=True)
    return None


if __name__ == '__main__':
    sys.exit(suite_runner.main(HERE, sys.argv[1:], describe))

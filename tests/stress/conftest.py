"""Fixtures of the stress tests; prints what they measured at the end of the run.

Short versions run by default; PYPAUSE_STRESS=1 runs the long ones.
"""

import os

import pytest

from tests.stress.stress_support import MEASURED, STRESS, PidsCgroup, pids_cgroup_parent


@pytest.fixture
def pids_cgroup(request):
    """A fresh pids cgroup (v1 or v2, whichever is writable), removed afterwards."""
    parent, version = pids_cgroup_parent()
    if parent is None:
        pytest.skip(version)
    name = "".join(c if c.isalnum() or c in "-_" else "-" for c in request.node.name[:40])
    group = PidsCgroup(parent, "pypause-stress-%d-%s" % (os.getpid(), name))
    yield group
    group.close()


def pytest_terminal_summary(terminalreporter):
    if MEASURED:
        terminalreporter.section("stress figures (%s versions)" % ("long" if STRESS else "short"))
        for key, value in MEASURED.items():
            terminalreporter.write_line("%s: %s" % (key, value))

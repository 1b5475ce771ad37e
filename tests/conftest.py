"""Fixtures that end every process and namespace a test starts, also on failure."""

import os
import shutil
import subprocess
import tempfile

import pytest

from tests.support.cgroups import PidsCgroup, pids_cgroup_parent
from tests.support.running import Init, PidNamespace, needs_pidns, stop, unprivileged_pypause

# A developer's exported PYPAUSE_METRICS_ADDR or PYPAUSE_GRACE_PERIOD would
# change what every test observes: gone before any test module reads
# os.environ, and again after each test (see scrub_pypause_variables).
# PYPAUSE_STRESS is the suite's own (long stress versions), not pypause's.
for _name in [n for n in os.environ if n.startswith("PYPAUSE_") and n != "PYPAUSE_STRESS"]:
    del os.environ[_name]
# Nor a developer's PYTHON* variables (PYTHONUNBUFFERED, say): with one,
# pypause re-executes itself isolated from them (tests/test_isolation.py
# runs that path on purpose); without, every test runs the common one.
for _name in [n for n in os.environ if n.startswith("PYTHON")]:
    del os.environ[_name]


@pytest.fixture(autouse=True)
def scrub_pypause_variables(monkeypatch):
    """No PYPAUSE_* variable reaches a test but those it sets itself."""
    for name in [n for n in os.environ if n.startswith("PYPAUSE_") and n != "PYPAUSE_STRESS"]:
        monkeypatch.delenv(name)
    yield


@pytest.fixture
def unprivileged():
    """(argv, env) that run pypause as uid 65534; see support.unprivileged_pypause."""
    directory = tempfile.mkdtemp(dir="/tmp")
    try:
        yield unprivileged_pypause(directory)
    finally:
        shutil.rmtree(directory)


@pytest.fixture
def pidns():
    """Factory for PID namespaces that are torn down after the test."""
    spaces = []

    def make(argv, **kwargs):
        ns = PidNamespace(argv, **kwargs)
        spaces.append(ns)
        return ns

    yield make
    for ns in spaces:
        ns.close()


@pytest.fixture
def procs():
    """Start processes with procs(argv, **popen_kwargs); all are ended after the test."""
    started_ = []

    def start(argv, **kwargs):
        p = subprocess.Popen(argv, **kwargs)
        started_.append(p)
        return p

    yield start
    for p in started_:
        stop(p)


@pytest.fixture(
    params=[
        pytest.param("pid1", marks=needs_pidns, id="pid1"),
        pytest.param("subreaper", id="subreaper"),
    ]
)
def init(request, pidns, procs):
    """pypause as PID 1 of a PID namespace, then as a subreaper under this test.

    init.run(argv, **kwargs) runs it as subprocess.run() does; init.start(argv,
    **kwargs) starts it (an InitProcess: .pid, .proc, .wait(), pipes); argv is
    the command that becomes pypause ([PYPAUSE, ...]). init.mode says which
    ("pid1" or "subreaper"), init.pid1 whether PID 1. Every process started
    is ended after the test, by PID, also on failure. See support.Init.
    Where the two modes differ, the test that takes this fixture says how.
    """
    runs = Init(request.param, pidns, procs)
    try:
        yield runs
    finally:
        runs.close()


@pytest.fixture
def pids_cgroup(request):
    """A fresh pids cgroup (v1 or delegated v2, whichever is writable), removed
    afterwards, also on failure; the test is skipped where there is none."""
    parent, why = pids_cgroup_parent()
    if parent is None:
        pytest.skip(why)
    name = "".join(c if c.isalnum() or c in "-_" else "-" for c in request.node.name[:40])
    group = PidsCgroup(parent, "pypause-test-%d-%s" % (os.getpid(), name))
    try:
        yield group
    finally:
        group.close()

"""Fixtures that end every process and namespace a test starts, also on failure."""

import shutil
import subprocess
import tempfile

import pytest

from support import PidNamespace, stop, unprivileged_pypause


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

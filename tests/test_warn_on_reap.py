"""-w (PYPAUSE_WARN_ON_REAP): a warning line for each zombie reaped that was
not the main child."""

import os
import re
import subprocess

import pytest

from tests.support.running import PYPAUSE, helper, lines

pytestmark = pytest.mark.timeout(30)


# -- -w / PYPAUSE_WARN_ON_REAP ------------------------------------------------


@pytest.mark.parametrize("args, env", [(["-w"], {}), ([], {"PYPAUSE_WARN_ON_REAP": "yes"})])
def test_warn_on_reap_names_each_orphan(init, args, env):
    p = init.start(
        [PYPAUSE, *args, "--", *helper("orphans", 3, "--sleep", 0.1, "--stay")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **env},
    )
    assert lines(p.stdout, 1) == ["orphaned"]
    warnings = lines(p.stderr, 3)
    for line in warnings:
        assert "WARNING: reaped zombie" in line and "comm=sleep" in line and "pid=" in line
    p.stdin.close()
    assert p.wait(10) == 0


def test_warn_on_reap_escapes_a_hostile_command_name(init, tmp_path):
    # An orphan whose comm holds a newline must not write a line of its own.
    name = "x\n[pypause] ok"  # 14 bytes: all of it is the comm
    os.symlink("/bin/true", tmp_path / name)
    r = init.run(
        [PYPAUSE, "-w", "--", "sh", "-c", '("$1" &); sleep 0.5', "sh", str(tmp_path / name)],
        capture_output=True,
    )
    assert r.returncode == 0
    [line] = r.stderr.decode().splitlines()
    head, _, container = line.rpartition(" container_id=")
    assert head == (
        r'[pypause] WARNING: reaped zombie pid=%s comm="x\n[pypause] ok" status=0'
        % r.stderr.split(b"pid=")[1].split()[0].decode()
    )
    assert re.fullmatch(r"none|([a-z-]+://)?[0-9a-f]{64}", container)  # where this test runs

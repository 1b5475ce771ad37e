"""Job control without a terminal: a stopped main child is resumed, since
nothing could resume pypause (with a terminal and a shell: test_tty.py)."""

import os
import signal
import subprocess

import pytest

from tests.support.running import PYPAUSE, helper, lines, wait_until_idle

pytestmark = pytest.mark.timeout(30)


# -- job control --------------------------------------------------------------

# Without a terminal (a container; a pod sharing its PID namespace and
# `docker run --init`, where pypause is not PID 1) nothing could resume
# pypause if it stopped with its child: in both modes the child is resumed.
# (With a job-control shell above, one that is not PID 1 stops too: test_tty.)


def test_a_child_stopped_by_job_control_is_resumed(init):
    r = init.run(
        [PYPAUSE, "--", "sh", "-c", "kill -TSTP $$; kill -TTIN $$; exit 7"],
        start_new_session=True,
        stderr=subprocess.PIPE,
    )
    assert r.returncode == 7
    assert r.stderr.count(b"resuming it") == 2


def test_forwarding_sigtstp_does_not_strand_the_child(init):
    p = init.start(
        [PYPAUSE, "--", *helper("signal_echo", 0, "--ignore", "SIGUSR1")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    # signal_echo takes SIGTSTP with sigwaitinfo (prints it); nothing stops
    assert lines(p.stdout, 1) == ["ready"]
    wait_until_idle(p.pid)
    os.kill(p.pid, signal.SIGTSTP)
    assert lines(p.stdout, 1) == ["SIGTSTP"]
    p.stdin.close()
    assert p.wait(10) == 0

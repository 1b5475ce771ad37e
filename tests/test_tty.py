"""With a terminal on stdin (docker run -it), the child owns its foreground."""

import fcntl
import os
import select
import termios

import pytest

from tests.support.proc import parse_stat
from tests.support.running import PYPAUSE

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def terminal(procs):
    """Start argv as the session leader of a new pty; return (proc, read_until, write)."""
    master, slave = os.openpty()

    def start(argv):
        p = procs(
            argv,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),
        )
        os.close(slave)
        return p

    seen = bytearray()

    def read_until(text):
        while text.encode() not in seen:
            ready, _, _ = select.select([master], [], [], 10)
            assert ready, "no output; so far: %r" % bytes(seen)
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: every slave fd closed
                chunk = b""
            assert chunk, "terminal closed; output was: %r" % bytes(seen)
            seen.extend(chunk)
        return bytes(seen)

    yield start, read_until, lambda data: os.write(master, data)
    os.close(master)


def test_child_becomes_the_foreground_process_group(terminal):
    start, read_until, _ = terminal
    p = start([PYPAUSE, "--", "cat", "/proc/self/stat"])
    cat = parse_stat(read_until("\n").decode())
    assert cat.pid == cat.pgrp == cat.tpgid
    assert cat.pgrp != p.pid  # not pypause's group
    assert p.wait(10) == 0


def test_ctrl_z_without_a_shell_above_resumes_the_child(terminal):
    # pypause leads the terminal's session, as the first process of a
    # container started with a tty (not PID 1 when the pod shares its PID
    # namespace): no shell could resume it if it stopped.
    start, read_until, write = terminal
    p = start([PYPAUSE, "--", "sh", "-c", 'echo waiting; read line; echo "got $line"; exit 6'])
    read_until("waiting")
    write(b"\x1a")  # ^Z: SIGTSTP to the foreground group, the child's
    read_until("resuming it")
    write(b"hello\n")
    assert "got hello" in read_until("got hello").decode()
    assert p.wait(10) == 6


def test_under_a_job_control_shell_ctrl_z_and_fg_work(terminal):
    # The case where pypause must stop with its child: an interactive shell
    # took it as a job and will resume it with `fg`.
    start, read_until, write = terminal
    start(["bash", "--norc", "--noprofile", "-i"])
    write(b"PS1='$ '; echo shell-ready\n")
    read_until("shell-ready")
    write(("%s -- sh -c 'kill -TSTP $$; echo resumed; exit 7'\n" % PYPAUSE).encode())
    read_until("Stopped")
    write(b"fg\n")
    read_until("resumed")
    write(b"echo status=$?\n")
    assert "status=7" in read_until("status=7").decode()
    write(b"exit\n")


def test_under_a_job_control_shell_a_background_read_stops_the_job(terminal):
    # A background job that reads the terminal gets SIGTTIN: pypause must stop
    # with it (the shell reports the job stopped), not resume it in a loop.
    start, read_until, write = terminal
    start(["bash", "--norc", "--noprofile", "-i"])
    write(b"PS1='$ '; set -b; echo shell-ready\n")  # -b: report stops at once
    read_until("shell-ready")
    write(("%s -- sh -c 'read line; echo \"got $line\"; exit 5' &\n" % PYPAUSE).encode())
    read_until("Stopped")
    write(b"fg\n")
    write(b"hello\n")
    read_until("got hello")
    write(b"echo status=$?\n")
    seen = read_until("status=5").decode()
    assert "resuming it" not in seen
    write(b"exit\n")

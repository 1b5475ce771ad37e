"""The metrics thread that ends anyway: one line, no traceback, another on the same port.

serve_forever() catches every Exception; only something it cannot catch (a
BaseException here, standing in for a bug in the guard itself) ends the
thread. In process: the loop's part is played by calling heartbeat()."""

import signal
import threading

import pytest

from pypause import metrics
from tests.support.http import http_get
from tests.support.running import wait_for

pytestmark = pytest.mark.timeout(30)


class _Uncaught(BaseException):
    pass


def _metrics_threads():
    return [t for t in threading.enumerate() if t.name == "metrics" and t.is_alive()]


@pytest.fixture
def served(monkeypatch):
    # The thread tells "the loop" with a SIGCHLD to this process: ignored here.
    previous = signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    collected = metrics.Metrics("pause")
    assert metrics.serve(collected, "127.0.0.1", 0)
    port = collected.server.listener.getsockname()[1]
    yield collected, port
    signal.signal(signal.SIGCHLD, previous)
    # The daemon thread sleeps in select(); its sockets go with the test process.


def test_a_thread_that_ends_is_said_in_one_line_and_started_again(served, monkeypatch, capfd):
    collected, port = served
    assert http_get(port)[0] == 200
    server = collected.server
    step = server.step
    failures = []

    def failing_once():
        if not failures:
            failures.append(1)
            raise _Uncaught("a bug the guard cannot catch")
        step()

    monkeypatch.setattr(server, "step", failing_once)
    monkeypatch.setattr(metrics, "RESTART_INTERVAL", 0.0)
    server.wake()  # the thread leaves select() and meets the bug
    wait_for(lambda: collected.server_ended, what="the thread to say it ended")
    wait_for(lambda: not _metrics_threads(), what="the thread to end")
    collected.heartbeat()  # the loop's next step
    wait_for(_metrics_threads, what="another metrics thread")
    assert len(_metrics_threads()) == 1
    assert http_get(port)[0] == 200 and http_get(port, "/")[0] == 200  # the same listener
    err = capfd.readouterr().err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert any("metrics ended: _Uncaught at test_metrics_thread.py" in line for line in lines), err
    assert any("starting another" in line for line in lines), err
    assert len(lines) == 2, err


def test_a_restart_waits_out_the_rest_of_the_minute(served, monkeypatch, capfd):
    collected, port = served
    sleeps = []
    monkeypatch.setattr(metrics, "_start", lambda m, target, after=0.0: sleeps.append(after))
    collected.server_ended = True
    collected.heartbeat()
    assert len(sleeps) == 1 and 50 < sleeps[0] <= metrics.RESTART_INTERVAL
    assert "starting another in" in capfd.readouterr().err

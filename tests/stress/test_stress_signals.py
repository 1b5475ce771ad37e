"""A storm of mixed signals at pypause while its child lives: pypause survives,
the child gets them (within the limits of coalescing), SIGTERM still ends it."""

import collections
import os
import random
import signal
import subprocess
import time

import pytest

from pypause import signals
from tests.stress.stress_support import Lines, echo_child, measured, scaled
from tests.support.http import http_get as get
from tests.support.http import metric_samples as samples
from tests.support.http import metric_value as value
from tests.support.http import port_from
from tests.support.running import PYPAUSE

TOTAL = scaled(2000, 10000)
SEED = 7
CODE = 7
MARKER = signal.SIGRTMAX  # queued, and dequeued after every standard signal
REALTIME = [signal.SIGRTMIN + i for i in range(5)]
# Everything pypause forwards (SIGTERM is kept for the end), plus SIGCHLD,
# which pypause takes as a cue to reap and does not forward.
MIX = [
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGHUP,
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGALRM,
    signal.SIGWINCH,
    signal.SIGURG,
    signal.SIGCONT,
    signal.SIGPIPE,
    signal.SIGIO,
    signal.SIGPROF,
    signal.SIGVTALRM,
    signal.SIGXCPU,
    signal.SIGXFSZ,
    signal.SIGPWR,
    signal.SIGTSTP,
    signal.SIGTTIN,
    signal.SIGTTOU,
    signal.SIGSTKFLT,
    signal.SIGCHLD,
] + REALTIME


@pytest.mark.timeout(scaled(120, 600))
def test_signal_storm_is_survived_forwarded_and_sigterm_still_ends_it(procs):
    rng = random.Random(SEED)
    p = procs(
        [PYPAUSE, "--metrics-addr", "127.0.0.1:0", "--", *echo_child(CODE)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    port = port_from(p.stderr)
    out = Lines(p.stdout)
    out.wait(lambda lines: "ready" in lines, what="the child to be ready")

    sent = collections.Counter()
    bursts = 0
    t0 = time.monotonic()
    while sum(sent.values()) < TOTAL:
        # A burst, as fast as os.kill() goes: at least one SIGUSR1 among up to 100.
        burst = [signal.SIGUSR1] + [rng.choice(MIX) for _ in range(rng.randint(0, 99))]
        rng.shuffle(burst)
        for signum in burst:
            os.kill(p.pid, signum)
        os.kill(p.pid, MARKER)
        sent.update(burst)
        sent[MARKER] += 1
        bursts += 1
        # The marker's arrival confirms the burst was delivered: pypause and the
        # child both take pending signals lowest number first, so whatever of the
        # burst got through is printed before it.
        out.wait(lambda lines: lines.count(str(MARKER)) == bursts, what="burst %d" % bursts)
        assert p.poll() is None
    took = time.monotonic() - t0

    lines = [line for line in out.lines if line not in ("ready", None)]
    got = collections.Counter(int(line) for line in lines)
    # Every burst got at least one SIGUSR1 through: between two markers there is one.
    segments = "\n".join(lines).split("\n%d" % MARKER)
    assert len(segments) == bursts + 1
    for i, segment in enumerate(segments[:bursts]):
        assert str(signal.SIGUSR1) in segment.split(), "burst %d lost its SIGUSR1" % (i + 1)
    assert bursts <= got[signal.SIGUSR1] <= sent[signal.SIGUSR1]
    # Real-time signals are queued, not merged: each one sent arrives once.
    for signum in REALTIME + [MARKER]:
        assert got[signum] == sent[signum], "SIGRTMIN+%d" % (signum - signal.SIGRTMIN)
    # Nothing arrives that was not sent, and SIGCHLD (a reap cue) is not forwarded.
    assert set(got) <= set(sent) - {signal.SIGCHLD}
    for signum, n in got.items():
        assert n <= sent[signum]

    assert get(port, "/healthz")[::2] == (200, "ok\n")
    scraped = samples(port)
    for signum in REALTIME:
        name = signals.name(signum)
        assert value(scraped, "pypause_signals_received_total", signal=name) == sent[signum]
        assert value(scraped, "pypause_signals_forwarded_total", signal=name) == sent[signum]

    os.kill(p.pid, signal.SIGTERM)
    assert p.wait(10) == CODE
    err = p.stderr.read().decode()
    assert "Traceback" not in err and "unexpected error" not in err
    measured(
        "signal storm",
        "%d signals of %d kinds in %d bursts in %.3f s (%.0f signals/s, "
        "each burst confirmed); child got %d, of them %d SIGUSR1 of %d sent; "
        "real-time signals all %d delivered exactly once"
        % (
            sum(sent.values()),
            len(MIX) + 1,
            bursts,
            took,
            sum(sent.values()) / took,
            len(lines),
            got[signal.SIGUSR1],
            sent[signal.SIGUSR1],
            sum(sent[s] for s in REALTIME + [MARKER]),
        ),
    )

"""Pause mode gives up root once its metrics port is bound: --user, PYPAUSE_USER.

Started as root with no command, pypause becomes 65535:65535 (the Kubernetes
pause image's user) with no supplementary group, hence no capability; --user
UID[:GID] or PYPAUSE_USER chooses whom, `root` (or 0) keeps root. Init mode
is left alone: the app runs as pypause was started. Observed from outside:
/proc/<pid>/status of every thread, /metrics over loopback, exit statuses.
"""

import os
import random
import signal
import socket
import subprocess
import sys
import time

import pytest

from tests.support.http import metric_samples, port_from
from tests.support.proc import namespace, stat, status_fields, tids
from tests.support.running import PYPAUSE, helper, needs_pidns, read_line, wait_for, wait_until_idle

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: the tests are about leaving it"),
]

NO_CAPS = "0000000000000000"


def status(pid):
    """{field: value} of /proc/PID/status for each thread of `pid`: {tid: {...}}."""
    return {int(tid): status_fields(pid, tid) for tid in tids(pid)}


def credentials(fields):
    """What a status says of who a thread is."""
    return {
        name: fields.get(name, "").split()
        for name in ("Uid", "Gid", "Groups", "CapEff", "CapPrm", "CapAmb")
    }


def became(uid, gid):
    return {
        "Uid": [str(uid)] * 4,
        "Gid": [str(gid)] * 4,
        "Groups": [],
        "CapEff": [NO_CAPS],
        "CapPrm": [NO_CAPS],
        "CapAmb": [NO_CAPS],
    }


def own_credentials():
    return credentials(status_fields(os.getpid()))


def every_thread_is(pid, expected, threads=2):
    """True once each of `pid`'s threads (at least `threads`: with metrics, their
    thread too) has `expected` credentials."""
    found = status(pid)
    return len(found) >= threads and all(credentials(t) == expected for t in found.values())


def samples(port):
    """{name: value} of the scrape's unlabelled series."""
    return {name: v for (name, labels), v in metric_samples(port).items() if not labels}


def start_pause(init, args=(), env=None):
    """pypause in pause mode with metrics on a loopback port: (InitProcess, port)."""
    env = None if env is None else {**os.environ, **env}
    p = init.start(
        [PYPAUSE, "--metrics-addr", "127.0.0.1:0", *args], stderr=subprocess.PIPE, env=env
    )
    return p, port_from(p.stderr)


def orphans_are_reaped(p, port):
    """As PID 1: a process that entered the namespace (as root) leaves orphans; all reaped.

    Counted by pypause's metrics, not seen in /proc: on a slow machine some
    may be reaped before the test could see all of them adopted."""
    reaped = samples(port)["pypause_zombies_reaped_total"]
    r = p.ns.nsenter(helper("orphans", 20, "--sleep", 0.2), capture_output=True, timeout=20)
    assert r.stdout == b"orphaned\n"
    wait_for(
        lambda: samples(port)["pypause_zombies_reaped_total"] == reaped + 20,
        what="20 orphans adopted and reaped",
    )
    wait_for(lambda: len(p.members()) == 1, what="nothing left but pypause")
    assert p.zombies() == []


@pytest.mark.parametrize(
    "args, env, uid, gid",
    [
        pytest.param((), None, 65535, 65535, id="default"),
        pytest.param(("--user", "1000:1001"), None, 1000, 1001, id="uid:gid"),
        pytest.param(("--user", "1000"), None, 1000, 1000, id="gid-defaults-to-uid"),
        pytest.param((), {"PYPAUSE_USER": "1000:1001"}, 1000, 1001, id="PYPAUSE_USER"),
        pytest.param(
            ("--user", "1000:1001"),
            {"PYPAUSE_USER": "2000:2001"},
            1000,
            1001,
            id="flag-over-variable",
        ),
        pytest.param(("--user", "4294967294"), None, 4294967294, 4294967294, id="maximum"),
        pytest.param(("--user", "7:4294967294"), None, 7, 4294967294, id="maximum-gid"),
    ],
)
def test_pause_mode_gives_up_root(init, args, env, uid, gid):
    p, port = start_pause(init, args, env)
    wait_for(
        lambda: every_thread_is(p.pid, became(uid, gid)),
        what="every thread of pypause to become %d:%d" % (uid, gid),
    )
    got = samples(port)  # the port bound as root still serves, from a thread that is not
    assert got["pypause_processes"] >= 1
    assert got["process_open_fds"] >= 3  # prometheus' process collector reads /proc/self
    assert got["process_resident_memory_bytes"] > 0
    if init.pid1:
        orphans_are_reaped(p, port)
        assert samples(port)["pypause_zombies_reaped_total"] == 20
    wait_until_idle(p.pid)
    os.kill(p.pid, signal.SIGTERM)
    assert p.wait(5) == 0
    err = p.stderr.read().decode()
    assert "WARNING" not in err and "ERROR" not in err and "Traceback" not in err


@pytest.mark.parametrize("user", ["root", "0", "0:0"])
def test_user_root_keeps_root(init, user):
    p, port = start_pause(init, ("--user", user))
    mine = own_credentials()
    assert samples(port)["process_open_fds"] >= 3
    wait_until_idle(p.pid)  # past the point where it would have given up root
    threads = status(p.pid)
    assert len(threads) >= 2
    for fields in threads.values():
        got = credentials(fields)
        assert got["Uid"] == ["0"] * 4 and got["Gid"] == ["0"] * 4
        assert got["CapEff"] == mine["CapEff"] != [NO_CAPS]
        assert got["CapPrm"] == mine["CapPrm"]
    os.kill(p.pid, signal.SIGTERM)
    assert p.wait(5) == 0


def privileged_free_port():
    """A loopback port below net.ipv4.ip_unprivileged_port_start that is free now."""
    try:
        with open("/proc/sys/net/ipv4/ip_unprivileged_port_start") as f:
            start = int(f.read())
    except OSError:
        start = 1024
    ports = list(range(512, min(start, 1024)))
    random.shuffle(ports)  # another run of this test at the same time picks another
    for port in ports:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    pytest.skip("no privileged port (below %d) free, or none is privileged" % start)


def test_the_port_is_bound_as_root_before_root_is_given_up(init):
    port = privileged_free_port()
    p = init.start(
        [PYPAUSE, "--metrics-addr", "127.0.0.1:%d" % port], stderr=subprocess.PIPE, bufsize=0
    )
    line = read_line(p.stderr, time.monotonic() + 10).decode()  # not port_from: it may fail
    assert "serving metrics on http://127.0.0.1:%d/" % port in line
    wait_for(lambda: every_thread_is(p.pid, became(65535, 65535)), what="65535:65535")
    assert samples(port)["process_open_fds"] >= 3
    os.kill(p.pid, signal.SIGTERM)
    assert p.wait(5) == 0


def test_without_metrics_root_is_given_up_too(init):
    p = init.start([PYPAUSE], stderr=subprocess.PIPE)
    wait_until_idle(p.pid)
    (fields,) = status(p.pid).values()  # no metrics thread
    assert credentials(fields) == became(65535, 65535)
    os.kill(p.pid, signal.SIGTERM)
    assert p.wait(5) == 0
    assert p.stderr.read().count(b"\n") <= 1  # at most "Shutting down"


@pytest.mark.parametrize(
    "args, env",
    [
        pytest.param(("--user", "1000"), None, id="--user"),
        pytest.param(("--user", "root"), None, id="--user-root"),
        pytest.param((), {"PYPAUSE_USER": "1000"}, id="PYPAUSE_USER"),
    ],
)
def test_user_with_a_command_is_a_usage_error(args, env, tmp_path):
    flag = tmp_path / "ran"
    r = subprocess.run(
        [PYPAUSE, *args, "--", "touch", str(flag)],
        capture_output=True,
        text=True,
        timeout=20,
        env=None if env is None else {**os.environ, **env},
    )
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert "pause mode" in r.stderr  # why, not just that it is refused
    assert not flag.exists()


BAD_USERS = [
    "-1",
    "4294967295",
    "1:4294967295",
    "abc",
    "0:5",
    "1000:",
    ":1000",
    "1:2:3",
    "+5",
    " 5",
    "0x10",
    "root:root",
]


# An empty PYPAUSE_USER is as if unset, as every PYPAUSE_* variable: not a bad value.
@pytest.mark.parametrize(
    "value, where", [(v, "flag") for v in BAD_USERS + [""]] + [(v, "variable") for v in BAD_USERS]
)
def test_bad_user_is_a_usage_error(value, where):
    args, env = (["--user", value], None) if where == "flag" else ([], {"PYPAUSE_USER": value})
    # pause mode: a value taken would leave pypause running (TimeoutExpired)
    r = subprocess.run(
        [PYPAUSE, *args],
        capture_output=True,
        text=True,
        timeout=5,
        env=None if env is None else {**os.environ, **env},
    )
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert ("--user" if where == "flag" else "PYPAUSE_USER") in r.stderr


@needs_pidns
def test_where_the_user_cannot_be_taken_one_warning_and_pypause_goes_on(pidns):
    # A user namespace that maps uid 0 alone (and denies setgroups).
    ns = pidns(
        [PYPAUSE],
        unshare_args=("--user", "--map-root-user", "--mount-proc"),
        stderr=subprocess.PIPE,
        bufsize=0,
    )
    warning = read_line(ns.unshare.stderr, time.monotonic() + 10).decode()
    assert "WARNING" in warning and "65535" in warning
    wait_until_idle(ns.pid)
    (fields,) = status(ns.pid).values()
    assert credentials(fields)["Uid"] == ["0"] * 4  # going on as it was
    r = ns.nsenter(helper("orphans", 5), capture_output=True, timeout=20)
    assert r.stdout == b"orphaned\n"
    wait_for(lambda: len(ns.members()) == 1, what="the orphans reaped")
    assert ns.zombies() == []
    os.kill(ns.pid, signal.SIGTERM)
    assert ns.unshare.wait(5) == 0
    rest = ns.unshare.stderr.read().decode()
    assert "WARNING" not in rest and "ERROR" not in rest and "Traceback" not in rest


def test_init_mode_started_as_root_keeps_the_app_root(init):
    r = init.run(
        [PYPAUSE, "--", "sh", "-c", "id -u; id -g; grep CapEff /proc/self/status"],
        capture_output=True,
        timeout=20,
    )
    assert r.returncode == 0, r.stderr
    uid, gid, caps = r.stdout.decode().splitlines()
    assert (uid, gid) == ("0", "0")
    assert caps.split()[1] == own_credentials()["CapEff"][0] != NO_CAPS


def test_init_mode_keeps_pypause_root_too(init):
    p = init.start(
        [PYPAUSE, "--metrics-addr", "127.0.0.1:0", "--", "sleep", "30"], stderr=subprocess.PIPE
    )
    port_from(p.stderr)
    wait_until_idle(p.pid)
    for fields in status(p.pid).values():
        assert credentials(fields)["Uid"] == ["0"] * 4


@pytest.mark.parametrize("user, uid", [("root", 0), ("65535", 65535)])
def test_pdeathsig_holds_whoever_pypause_becomes(procs, user, uid):
    # The kernel clears the parent-death signal whenever the euid or egid changes.
    code = (
        "import subprocess, sys\n"
        "p = subprocess.Popen(sys.argv[1:], stderr=subprocess.DEVNULL)\n"
        "print(p.pid, flush=True)\n"
        "sys.stdin.read()\n"
    )
    parent = procs(
        [sys.executable, "-c", code, PYPAUSE, "--pdeathsig", "TERM", "--user", user],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    pid = int(parent.stdout.readline())
    try:
        expected = became(uid, uid) if uid else own_credentials()
        wait_for(lambda: every_thread_is(pid, expected, 1), what="its user")
        wait_until_idle(pid)
        parent.kill()
        parent.wait(5)
        # pypause (pause mode) exits on the SIGTERM; whoever adopted it reaps it.
        wait_for(lambda: ended(pid), timeout=3, what="pypause to end when its parent died")
    finally:
        if not ended(pid):
            os.kill(pid, signal.SIGKILL)


def ended(pid):
    """True if `pid` is gone or a zombie (exited)."""
    fields = stat(pid)
    return fields is None or fields.state == "Z"


@needs_pidns
def test_pid1_still_dies_with_unshare_kill_child(pidns):
    # unshare --kill-child gives its child SIGKILL as parent-death signal: a
    # PID 1 must not outlive the runtime's process that holds its namespace.
    ns = pidns([PYPAUSE])
    wait_for(lambda: every_thread_is(ns.pid, became(65535, 65535), 1), what="65535:65535")
    wait_until_idle(ns.pid)
    pid = ns.pid
    try:
        ns.unshare.kill()
        ns.unshare.wait(5)
        wait_for(lambda: ended(pid), timeout=3, what="PID 1 to die with unshare")
    finally:
        if not ended(pid):
            os.kill(pid, signal.SIGKILL)


def test_a_refused_uid_leaves_the_gid_alone(procs):
    # uid 0 alone mapped, but every gid up to 65535, and setgroups allowed: the
    # groups and the gid can be changed, then the uid cannot. All or nothing.
    p = procs(
        ["unshare", "--user", "sh", "-c", 'read x; exec "$0"', PYPAUSE],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        bufsize=0,
    )
    wait_for(
        lambda: namespace(p.pid, "user") != namespace(os.getpid(), "user"),
        what="unshare to enter a user namespace",
    )
    with open("/proc/%d/uid_map" % p.pid, "w") as f:
        f.write("0 0 1\n")
    with open("/proc/%d/gid_map" % p.pid, "w") as f:
        f.write("0 0 65536\n")
    p.stdin.write(b"\n")
    warning = read_line(p.stderr, time.monotonic() + 10).decode()
    assert "WARNING" in warning and "65535" in warning
    wait_until_idle(p.pid)
    got, mine = credentials(status(p.pid)[p.pid]), own_credentials()
    assert got["Uid"] == ["0"] * 4 and got["Gid"] == ["0"] * 4
    assert got["Groups"] == mine["Groups"]
    os.kill(p.pid, signal.SIGTERM)
    assert p.wait(5) == 0
    assert b"WARNING" not in p.stderr.read()  # one warning, no more


def test_user_that_pypause_already_is_warns_not(unprivileged, procs):
    # setgroups([]) needs CAP_SETGID even when there is nothing to change
    argv, env = unprivileged
    p = procs([*argv, "--user", "65534"], env=env, stderr=subprocess.PIPE)
    wait_until_idle(p.pid)
    os.kill(p.pid, signal.SIGTERM)
    assert p.wait(5) == 0
    assert b"WARNING" not in p.stderr.read()

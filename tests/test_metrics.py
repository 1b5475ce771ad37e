"""--metrics-addr: /metrics, /healthz and 404, scraped over HTTP as Prometheus would."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from tests.support.http import free_port, port_from
from tests.support.http import http_get as get
from tests.support.http import metric_samples as samples
from tests.support.running import PYPAUSE, helper, needs_pidns, wait_for, wait_until_idle

pytestmark = pytest.mark.timeout(60)


def reaped(port, comm):
    return samples(port).get(
        ("pypause_zombies_reaped_by_comm_total", frozenset({("comm", comm)})), 0
    )


@pytest.fixture
def init_with_metrics(procs):
    """pypause --metrics-addr 127.0.0.1:0 running orphans.py --stay; returns (proc, port)."""

    def start(n=0, hold=1, extra=()):
        p = procs(
            [
                PYPAUSE,
                "--metrics-addr",
                "127.0.0.1:0",
                *extra,
                "--",
                *helper("orphans", n, "--sleep", hold, "--stay"),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        port = port_from(p.stderr)
        assert p.stdout.readline() == b"orphaned\n"
        return p, port

    return start


@pytest.fixture
def metrics_port(procs):
    """metrics_port(*child): the port of a pypause --metrics-addr 127.0.0.1:0
    running `child`, started in the background and ended after the test."""

    def start(*child):
        p = procs([PYPAUSE, "--metrics-addr", "127.0.0.1:0", "--", *child], stderr=subprocess.PIPE)
        return port_from(p.stderr)

    return start


def test_init_mode_counts_reaped_orphans_by_comm(init_with_metrics):
    p, port = init_with_metrics(50, 0.2)
    wait_for(lambda: reaped(port, "sleep") == 50, what="50 orphans counted")
    got = samples(port)
    assert got[("pypause_zombies", frozenset())] == 0
    assert got[("pypause_child_running", frozenset())] == 1
    assert got[("pypause_info", frozenset({("mode", "init"), ("version", _version())}))] == 1
    assert got[("pypause_processes", frozenset())] >= 2
    assert ("process_resident_memory_bytes", frozenset()) in got
    assert not any(name.startswith(("python_gc", "python_info")) for name, _ in got)
    p.stdin.close()
    assert p.wait(10) == 0


def _version():
    from pypause import __version__

    return __version__


def test_signals_received_and_forwarded_are_counted(procs):
    p = procs(
        [PYPAUSE, "--metrics-addr", "127.0.0.1:0", "--", *helper("signal_echo", 0)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    port = port_from(p.stderr)
    assert p.stdout.readline() == b"ready\n"
    for _ in range(3):
        os.kill(p.pid, signal.SIGUSR1)
        assert p.stdout.readline() == b"SIGUSR1\n"
    os.kill(p.pid, signal.SIGHUP)
    assert p.stdout.readline() == b"SIGHUP\n"
    got = samples(port)
    usr1 = frozenset({("signal", "SIGUSR1")})
    assert got[("pypause_signals_received_total", usr1)] == 3
    assert got[("pypause_signals_forwarded_total", usr1)] == 3
    assert got[("pypause_signals_forwarded_total", frozenset({("signal", "SIGHUP")}))] == 1


def test_healthz_and_unknown_paths(init_with_metrics):
    _, port = init_with_metrics()
    status, _, body = get(port, "/healthz")
    assert (status, body) == (200, "ok\n")
    assert get(port, "/nothing-here")[0] == 404
    assert get(port, "/metricsx")[0] == 404


def test_healthz_waits_for_a_loop_heartbeat():
    """Pure logic: /healthz depends on a loop heartbeat, not on the HTTP thread."""
    from pypause import httpd, metrics

    m = metrics.Metrics("pause")
    woken = []
    m.server = type("Server", (), {"wake": lambda self: woken.append(1)})()
    check = m.respond("GET", "/healthz", {})  # sends this process a SIGCHLD: ignored here
    assert isinstance(check, httpd.Pending)
    assert check.poll() is None and check.expire()[0] == 503  # no beat yet
    m.heartbeat()  # the loop's next step
    assert woken == [1] and check.poll()[0] == 200
    m.heartbeat()
    assert woken == [1]  # only a beat someone waits for wakes the server
    m.grace_period()
    assert m.respond("GET", "/healthz", {})[0] == 200  # at once


def test_openmetrics_when_asked_for(init_with_metrics):
    _, port = init_with_metrics()
    status, headers, text = get(
        port, headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert status == 200
    assert headers["Content-Type"].startswith("application/openmetrics-text")
    assert text.endswith("# EOF\n")


def test_secret_in_an_orphans_command_line_never_appears(metrics_port):
    port = metrics_port("sh", "-c", "(sh -c 'sleep 0.1; : s3cr3t-token' &); exec sleep 30")
    wait_for(lambda: reaped(port, "sh") == 1, what="the orphan to be counted")
    assert "s3cr3t" not in get(port)[2]


def test_comm_labels_are_bounded(metrics_port, tmp_path):
    # 80 distinct command names: symlinks to true named c0..c79
    true = shutil.which("true")
    for i in range(80):
        os.symlink(true, tmp_path / ("c%d" % i))
    port = metrics_port(
        "sh",
        "-c",
        'sh -c \'for i in $(seq 0 79); do "$0/c$i" & done\' "$0"; exec sleep 30',
        str(tmp_path),
    )

    def counted():
        got = {
            dict(labels)["comm"]: v
            for (name, labels), v in samples(port).items()
            if name == "pypause_zombies_reaped_by_comm_total"
        }
        return got if sum(got.values()) == 80 else None

    got = wait_for(counted, what="80 orphans counted")
    assert len(got) == 65  # 64 names + "other"
    assert got["other"] == 80 - 64


def test_busy_port_is_logged_and_pypause_goes_on():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = subprocess.run(
            [PYPAUSE, "--metrics-addr", "127.0.0.1:%d" % port, "--", "sh", "-c", "exit 5"],
            capture_output=True,
            text=True,
            timeout=20,
        )
    assert r.returncode == 5
    assert "metrics disabled" in r.stderr and str(port) in r.stderr
    assert "Traceback" not in r.stderr


@needs_pidns
def test_idle_connections_do_not_delay_reaping(pidns):
    ns = pidns([PYPAUSE, "--metrics-addr", "127.0.0.1:0"], stderr=subprocess.PIPE)
    port = port_from(ns.unshare.stderr)
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(20)]
    try:
        wait_until_idle(ns.pid)
        r = ns.nsenter(helper("orphans", 200), capture_output=True, timeout=20)
        assert r.returncode == 0
        wait_for(lambda: len(ns.members()) == 1, what="every orphan reaped")
        assert ns.zombies() == []
        assert get(port, "/healthz")[0] == 200
        # The orphans are forks of this interpreter: their comm is its file name.
        assert reaped(port, os.path.basename(sys.executable)[:15]) == 200
    finally:
        for s in idle:
            s.close()


def test_bad_address_is_a_usage_error():
    r = subprocess.run(
        [PYPAUSE, "--metrics-addr", "nope", "--", "true"],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert r.returncode == 2
    assert "--metrics-addr" in r.stderr


@pytest.mark.parametrize(
    "addr",
    [
        "a..b:9100",
        "x" * 64 + ":9100",
        "é.example:9100",
        "-a:1",
        "[zz]:1",
        "[::1:1",
        "[]:1",
        "1.2.3.4:65536",
        "host:",
        "::1:9100",
        "[::1%]:1",
    ],
)
def test_bad_address_is_a_usage_error_before_the_child_starts(addr, tmp_path):
    flag = tmp_path / "started"
    r = subprocess.run(
        [PYPAUSE, "--metrics-addr", addr, "--", "touch", str(flag)],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and "--metrics-addr" in r.stderr
    assert not flag.exists()


def test_address_that_cannot_be_bound_disables_metrics_only():
    # A valid address this machine does not have (TEST-NET-1): found at bind time.
    r = subprocess.run(
        [PYPAUSE, "--metrics-addr", "192.0.2.1:9100", "--", "sh", "-c", "exit 5"],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert r.returncode == 5
    assert "metrics disabled" in r.stderr and "Traceback" not in r.stderr


@needs_pidns
def test_healthz_answers_at_once_during_the_grace_period(pidns):
    ns = pidns(
        [
            PYPAUSE,
            "--metrics-addr",
            "127.0.0.1:0",
            "--grace-period",
            "20",
            "--",
            "sh",
            "-c",
            '(trap "" TERM; sleep 30) & read x; exit 3',
        ],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    port = port_from(ns.unshare.stderr)
    ns.unshare.stdin.close()
    while b"waiting up to" not in ns.unshare.stderr.readline():
        pass
    t0 = time.monotonic()
    assert get(port, "/healthz")[0] == 200  # doing its job: not a reason to restart it
    assert time.monotonic() - t0 < 1


@needs_pidns
def test_proc_of_another_namespace_is_treated_as_missing(pidns):
    # unshare without --mount-proc: /proc is the host's, whose PIDs are not ours.
    ns = pidns(
        [PYPAUSE, "--metrics-addr", "127.0.0.1:0", "--", *helper("orphans", 20, "--stay")],
        unshare_args=(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    port = port_from(ns.unshare.stderr)
    assert ns.unshare.stdout.readline() == b"orphaned\n"
    wait_for(lambda: reaped(port, "unknown") == 20, what="20 orphans counted as unknown")
    got = samples(port)
    assert not [
        labels
        for name, labels in got
        if name == "pypause_zombies_reaped_by_comm_total"
        and labels != frozenset({("comm", "unknown")})
    ]
    assert ("pypause_processes", frozenset()) not in got
    assert ("pypause_zombies", frozenset()) not in got


def test_metrics_on_ipv6_any(procs):
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    p = procs([PYPAUSE, "--metrics-addr", "[::]:0"], stderr=subprocess.PIPE)
    port = port_from(p.stderr)
    assert get(port, "/healthz", host="::1")[0] == 200


@needs_pidns
def test_pause_mode_as_pid1_counts_orphans_of_a_second_container(pidns):
    ns = pidns([PYPAUSE, "--metrics-addr", "127.0.0.1:0"], stderr=subprocess.PIPE)
    port = port_from(ns.unshare.stderr)
    wait_until_idle(ns.pid)
    r = ns.nsenter(helper("orphans", 30, "--sleep", 0.3), capture_output=True, timeout=20)
    assert r.returncode == 0
    wait_for(lambda: reaped(port, "sleep") == 30, what="30 orphans counted")
    got = samples(port)
    assert got[("pypause_info", frozenset({("mode", "pause"), ("version", _version())}))] == 1
    assert ("pypause_child_running", frozenset()) not in got
    assert got[("pypause_zombies", frozenset())] == 0
    assert got[("pypause_processes", frozenset())] == 1
    os.kill(ns.pid, signal.SIGTERM)
    assert ns.unshare.wait(5) == 0


@pytest.mark.skipif(
    not shutil.which("promtool"), reason="promtool (Debian package prometheus) not installed"
)
def test_promtool_accepts_a_real_scrape(init_with_metrics):
    _, port = init_with_metrics(5, 0.1)
    wait_for(lambda: reaped(port, "sleep") == 5, what="orphans counted")
    text = get(port)[2]
    r = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=20
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout + r.stderr == ""  # no lint warnings either


@pytest.mark.timeout(120)
@pytest.mark.skipif(
    not shutil.which("prometheus"), reason="prometheus (Debian package) not installed"
)
def test_a_real_prometheus_scrapes_pypause(init_with_metrics, procs, tmp_path):
    import json

    _, port = init_with_metrics(7, 0.1)
    wait_for(lambda: reaped(port, "sleep") == 7, what="orphans counted")
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: pypause\n"
        "    static_configs: [{targets: ['127.0.0.1:%d']}]\n" % port
    )
    web = free_port()
    procs(
        [
            "prometheus",
            "--config.file=%s" % config,
            "--storage.tsdb.path=%s" % (tmp_path / "data"),
            "--web.listen-address=127.0.0.1:%d" % web,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def query():
        path = "/api/v1/query?query=pypause_zombies_reaped_by_comm_total"
        try:
            _, _, body = get(web, path, timeout=5)
            result = json.loads(body)["data"]["result"]
        except (OSError, ValueError, KeyError):  # not up yet, or not answering 200
            return None
        return {m["metric"]["comm"]: float(m["value"][1]) for m in result} or None

    assert wait_for(query, timeout=60, interval=0.5, what="Prometheus to scrape pypause") == {
        "sleep": 7
    }


@pytest.mark.skipif(
    not shutil.which("promtool"), reason="promtool (Debian package prometheus) not installed"
)
def test_the_documented_alert_rule_is_valid():
    rules = os.path.join(os.path.dirname(__file__), "..", "docs", "prometheus", "alerts.yml")
    r = subprocess.run(
        ["promtool", "check", "rules", rules], capture_output=True, text=True, timeout=20
    )
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.skipif(
    not shutil.which("promtool"), reason="promtool (Debian package prometheus) not installed"
)
def test_the_documented_container_join_names_the_container():
    # The README's join of pypause's container IDs with kube-state-metrics,
    # evaluated by promtool on series of both forms (scheme and bare ID).
    rules = os.path.join(os.path.dirname(__file__), "..", "docs", "prometheus")
    r = subprocess.run(
        ["promtool", "test", "rules", "containers_test.yml"],
        cwd=rules,
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert r.returncode == 0, r.stdout + r.stderr

"""Name the leaker: which program, in which container, holds zombies or leaves orphans.

Black-box: pypause is PID 1 of a PID namespace with metrics on, as the pause
container of a pod sharing its PID namespace. Processes entered into that
namespace put themselves into cgroups named as runtimes name containers
(containerd's systemd and cgroupfs drivers), in the unified hierarchy and in
the cgroup v1 pids hierarchy where the machine has one; one kind never waits
for its children, the other leaves orphans. The scrape must name the parent's
command, the container's ID and the count. The same with pypause in a cgroup
namespace of its own, where the other containers' paths read `/../…`. The
real runtimes' side is in tests/container (test_cri.py, test_podman.py).
"""

import json
import os
import random
import re
import secrets
import signal
import subprocess
import sys
import time
import uuid

import pytest

from tests.support.cgroups import entering_cgroups
from tests.support.http import metric_samples, port_from
from tests.support.proc import cgroup_mounts
from tests.support.running import (
    PYPAUSE,
    helper,
    needs_pidns,
    read_line,
    wait_for,
    wait_until_idle,
)

pytestmark = [pytest.mark.timeout(120), needs_pidns]

MOUNTS = cgroup_mounts()
needs_unified = pytest.mark.skipif(
    "unified" not in MOUNTS or not os.access(MOUNTS.get("unified", "/"), os.W_OK),
    reason="no writable cgroup v2 hierarchy",
)
VALID = re.compile(r"(none|other|((containerd|cri-o|docker)://)?[0-9a-f]{64})\Z")


def systemd_driver(pod, container):
    return (
        "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod%s.slice/"
        "cri-containerd-%s.scope" % (pod, container)
    )


def cgroupfs_driver(pod, container):
    return "kubepods/besteffort/pod%s/%s" % (pod, container)


class Cgroups:
    """Cgroups made under a root of this test's in each hierarchy; close()
    removes them all once their processes are gone."""

    def __init__(self):
        self.root = "pypause-test-%d-%s" % (os.getpid(), uuid.uuid4().hex[:8])
        self.made = []

    def make(self, hierarchy, path):
        top = os.path.join(MOUNTS[hierarchy], self.root)
        if top not in self.made:
            os.mkdir(top)
            self.made.append(top)
        full = os.path.join(top, path)
        os.makedirs(full)
        return full

    def close(self):
        for top in self.made:
            for directory, _, _ in sorted(os.walk(top), key=lambda d: -len(d[0])):
                # A process killed with its namespace may take a moment to leave.
                wait_for(lambda: _rmdir(directory), what="cgroup %s removed" % directory)


def _rmdir(directory):
    try:
        os.rmdir(directory)
    except FileNotFoundError:
        pass
    except OSError:  # EBUSY: a process still in it
        return False
    return True


@pytest.fixture
def cgroups():
    made = Cgroups()
    yield made
    made.close()


def held(got):
    """{(parent_comm, container_id): zombies} of one scrape."""
    return {
        (dict(labels)["parent_comm"], dict(labels)["container_id"]): value
        for (name, labels), value in got.items()
        if name == "pypause_zombies_held_by_parent"
    }


def reaped_by_container(got):
    return {
        dict(labels)["container_id"]: value
        for (name, labels), value in got.items()
        if name == "pypause_zombies_reaped_by_container_total"
    }


def scrape_once_reaped(port, total):
    """The first scrape that counts `total` orphans reaped."""

    def scrape():
        got = metric_samples(port)
        return got if got[("pypause_zombies_reaped_total", frozenset())] == total else None

    return wait_for(scrape, what="%d orphans reaped" % total)


def start_pause(pidns, cgroups, in_cgroup_namespace, pod):
    """pypause in pause mode with metrics, as PID 1; with `in_cgroup_namespace`,
    in a cgroup namespace rooted at a pause container's cgroup of pod `pod`.
    Returns (namespace, port)."""
    argv = [PYPAUSE, "--metrics-addr", "127.0.0.1:0"]
    if in_cgroup_namespace:
        argv = entering_cgroups(
            [cgroups.make("unified", systemd_driver(pod, secrets.token_hex(32)))],
            ["unshare", "--cgroup"] + argv,
        )
    ns = pidns(argv, stderr=subprocess.PIPE)
    port = port_from(ns.unshare.stderr)
    wait_until_idle(ns.pid)
    return ns, port


def hold(ns, directories, comm, n):
    """A process in `directories` that holds `n` zombies, named `comm`; it
    lets them go when its stdin closes."""
    p = ns.enter(
        entering_cgroups(directories, helper("orphans", n, "--zombies", "--comm", comm, "--stay")),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        bufsize=0,
    )
    assert read_line(p.stdout, time.monotonic() + 10) == b"holding\n"
    return p


def leave_orphans(ns, directories, n):
    r = ns.nsenter(
        entering_cgroups(directories, helper("orphans", n)), capture_output=True, timeout=20
    )
    assert r.returncode == 0, r.stderr


@needs_unified
@pytest.mark.parametrize(
    "in_cgroup_namespace", [False, True], ids=["host-cgroups", "cgroup-namespace"]
)
def test_zombies_held_and_orphans_reaped_are_named_by_container(
    cgroups, pidns, in_cgroup_namespace
):
    pod = uuid.uuid4().hex
    a, b, c, d = (secrets.token_hex(32) for _ in range(4))
    ns, port = start_pause(pidns, cgroups, in_cgroup_namespace, pod)
    holders = [hold(ns, [cgroups.make("unified", systemd_driver(pod, a))], "zholder-a", 3)]
    expected_held = {("zholder-a", "containerd://" + a): 3}
    if "pids" in MOUNTS:  # a live parent is found through its v1 cgroup too
        holders.append(hold(ns, [cgroups.make("pids", cgroupfs_driver(pod, b))], "zholder-b", 2))
        expected_held[("zholder-b", b)] = 2
    leave_orphans(ns, [cgroups.make("unified", cgroupfs_driver(pod, c))], 5)
    leave_orphans(ns, [cgroups.make("unified", systemd_driver(pod, d))], 4)

    def orphans_counted():
        got = metric_samples(port)
        by_container = reaped_by_container(got)
        # Every orphan of both, not just the first of d: they are reaped one by one.
        done = by_container.get(c) == 5 and by_container.get("containerd://" + d) == 4
        return got if done else None

    got = wait_for(orphans_counted, what="orphans counted by container")
    assert reaped_by_container(got) == {c: 5, "containerd://" + d: 4}
    assert got[("pypause_zombies_reaped_total", frozenset())] == 9
    assert held(got) == expected_held
    assert got[("pypause_zombies", frozenset())] == 0  # none of them is pypause's to reap

    # The parents exit: their zombies are pypause's, reaped and counted where
    # they ran (a zombie's v1 cgroup is the root already: b's count as none).
    for p in holders:
        p.stdin.close()
        assert p.wait(10) == 0
    total = 9 + sum(expected_held.values())
    got = scrape_once_reaped(port, total)
    assert held(got) == {}
    expected = {c: 5, "containerd://" + d: 4, "containerd://" + a: 3}
    if "pids" in MOUNTS:
        expected["none"] = 2
    assert reaped_by_container(got) == expected
    os.kill(ns.pid, signal.SIGTERM)
    assert ns.unshare.wait(5) == 0


@needs_unified
@pytest.mark.parametrize("log_format", ["text", "json"])
def test_reap_warnings_name_the_container(cgroups, pidns, log_format):
    container = secrets.token_hex(32)
    ns = pidns([PYPAUSE, "-w", "--log-format", log_format], stderr=subprocess.PIPE, bufsize=0)
    wait_until_idle(ns.pid)
    leave_orphans(ns, [cgroups.make("unified", systemd_driver(uuid.uuid4().hex, container))], 1)
    deadline = time.monotonic() + 10
    line = b""
    while b"reaped zombie" not in line and time.monotonic() < deadline:
        line = read_line(ns.unshare.stderr, deadline)
    if log_format == "json":
        record = json.loads(line)
        assert record["msg"] == "reaped zombie"
        assert record["container_id"] == "containerd://" + container
        assert record["comm"].startswith("python")
    else:
        assert line.startswith(b"[pypause] WARNING: reaped zombie ")
        assert b" container_id=containerd://%s" % container.encode() in line
    os.kill(ns.pid, signal.SIGTERM)
    assert ns.unshare.wait(5) == 0


# Makes `argv[1]` parents with comm h0, h1, ..., each holding one zombie,
# and, for each cgroup directory after it, a process in that cgroup that
# leaves one orphan there. Prints "ready" and waits for stdin to close.
# Not helpers/orphans.py: 70 names and 70 cgroups from one process, where
# orphans.py (one name, the cgroup it started in) would take 140 starts of it.
MANY = """
import os, sys
n, directories = int(sys.argv[1]), sys.argv[2:]
r, w = os.pipe()
ready_r, ready_w = os.pipe()
for i in range(n):
    if os.fork() == 0:
        os.close(w)
        with open("/proc/self/comm", "w") as f:
            f.write("h%d" % i)
        if os.fork() == 0:
            os._exit(0)
        os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOWAIT)
        os.write(ready_w, b".")
        os.read(r, 1)  # EOF once the top closes its end
        os._exit(0)
for directory in directories:
    pid = os.fork()
    if pid == 0:
        with open(os.path.join(directory, "cgroup.procs"), "w") as f:
            f.write("0")
        if os.fork() == 0:
            os._exit(0)
        os._exit(0)  # its child is an orphan now, in that cgroup
    os.waitpid(pid, 0)
got = 0
while got < n:
    got += len(os.read(ready_r, n))
os.write(1, b"ready\\n")
while os.read(0, 1024):
    pass
"""


@needs_unified
def test_label_values_are_bounded(cgroups, pidns):
    # 70 parents of zombies by distinct names, 70 containers leaving an orphan
    # each: the gauge shows the 64 pairs holding the most, the counter the
    # first 64 containers, and "other" the rest of both.
    ns, port = start_pause(pidns, cgroups, False, None)
    directories = [cgroups.make("unified", "many/%s" % secrets.token_hex(32)) for _ in range(70)]
    p = ns.enter(
        [sys.executable, "-c", MANY, "70", *directories],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        bufsize=0,
    )
    assert read_line(p.stdout, time.monotonic() + 30) == b"ready\n"
    got = scrape_once_reaped(port, 70)
    by_container = reaped_by_container(got)
    assert len(by_container) == 65 and by_container["other"] == 6
    assert set(by_container) - {"other"} <= {os.path.basename(d) for d in directories}
    held_now = held(got)
    assert len(held_now) == 65 and held_now[("other", "other")] == 6
    assert sum(held_now.values()) == 70
    p.stdin.close()
    assert p.wait(10) == 0


@needs_unified
def test_hostile_cgroup_names_seeded_fuzz(cgroups, pidns):
    # Names a process could give its own cgroups: near-IDs, runtime prefixes
    # with junk, control characters, a newline and a fake v2 line. Every label
    # value is an ID or "none", and pypause goes on serving.
    rng = random.Random(20)

    def near():
        return "".join(
            rng.choice("0123456789abcdefABCDEF") for _ in range(rng.choice([63, 64, 65]))
        )

    makers = [
        near,
        lambda: (
            rng.choice(["cri-containerd-", "crio-", "docker-", "libpod-", "crio-conmon-"])
            + near()
            + rng.choice(["", ".scope", ".scope.x"])
        ),
        lambda: (
            "".join(chr(rng.randrange(1, 0x250)) for _ in range(rng.randrange(1, 40))).replace(
                "/", ""
            )
            or "x"
        ),
        lambda: "x\n0::/docker/" + secrets.token_hex(32),
        lambda: "\t %s\r" % secrets.token_hex(32),
    ]
    genuine = "%064x" % rng.getrandbits(256)
    ns, port = start_pause(pidns, cgroups, False, None)
    holders = []
    for i in range(20):
        name = rng.choice(makers)() if i else "cri-containerd-%s.scope" % genuine
        hierarchy = "pids" if "pids" in MOUNTS and i % 2 else "unified"
        try:
            directory = cgroups.make(hierarchy, "fuzz%d/%s" % (i, name))
        except OSError:  # a name the kernel refuses
            continue
        holders.append(hold(ns, [directory], "fz%d" % i, 1))
    got = metric_samples(port)
    values = {container for _, container in held(got)}
    assert "containerd://" + genuine in values  # among them, one that is a container
    assert all(VALID.match(v) for v in values), values
    assert sum(held(got).values()) == len(holders)
    assert not any(v.startswith("docker://") for v in values)  # the fake v2 line is not taken
    for p in holders:
        p.stdin.close()
        assert p.wait(10) == 0
    got = scrape_once_reaped(port, len(holders))
    assert all(VALID.match(v) for v in reaped_by_container(got))
    os.kill(ns.pid, signal.SIGTERM)
    assert ns.unshare.wait(5) == 0

"""Helpers for the container tests: commands, polling, /proc, and the private podman."""

import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys

from tests.support.proc import cgroup_hierarchies, command_lines, pidns_members
from tests.support.running import HELPERS, wait_for

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BASE_IMAGE = "localhost/pypause-test-base:bookworm"
IMAGE = "localhost/pypause:test"
# The examples' stand-ins for debian:bookworm with python3 and for the official python image.
DEBIAN_PYTHON_IMAGE = "localhost/pypause-test-debian-python:bookworm"
PYTHON_STYLE_IMAGE = "localhost/pypause-test-python-style:bookworm"
# The linux/arm64 base and pause image (tests/container/test_arm64.py, under qemu).
ARM64_BASE_IMAGE = "localhost/pypause-test-base:bookworm-arm64"
ARM64_IMAGE = "localhost/pypause:test-arm64"
METRICS_DOCKERFILE = os.path.join(REPO, "deploy", "image", "metrics.Dockerfile")

#: Numbers the tests measured, printed at the end of the run.
MEASURED = {}


def run(argv, env=None, cwd=None, timeout=120, check=True):
    """Run a command; on failure, raise with its output in the message."""
    r = subprocess.run(
        argv,
        env=env,
        cwd=cwd,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
    )
    if check and r.returncode != 0:
        raise AssertionError(
            "%s exited %d\nstdout: %s\nstderr: %s"
            % (" ".join(argv), r.returncode, r.stdout, r.stderr)
        )
    return r


def offline_build(base_image, wheel_context):
    """The options of every pause-image build here: no registry, no network, the
    wheels handed in as the `wheels` build context, on `base_image`."""
    return [
        "--pull=never",
        "--network",
        "none",
        "--build-context",
        "wheels=" + wheel_context,
        "--build-arg",
        "BASE_IMAGE=" + base_image,
    ]


# A client for one request to pypause's metrics port, run with the image's
# python3 inside a container (the pause image has no curl): argv path [accept].
IN_CONTAINER_GET = """\
import socket, sys
accept = sys.argv[2] if len(sys.argv) > 2 else "*/*"
s = socket.create_connection(("127.0.0.1", 9199), timeout=10)
s.sendall(b"GET %s HTTP/1.0\\r\\nAccept: %s\\r\\n\\r\\n" % (sys.argv[1].encode(), accept.encode()))
answer = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    answer += chunk
sys.stdout.write(answer.decode())
"""


# The tests' orphan maker, for a container's python3 -c: the image has no copy.
with open(os.path.join(HELPERS, "orphans.py")) as _f:
    ORPHANS_PY = _f.read()
ORPHAN_COMM = "pp-orphan"
ORPHANS = 50
# A second container of the pod runs this with our image's python3: a middle
# process forks ORPHANS children and exits, so the children are orphans that
# the pod's PID 1 must adopt. They rename themselves, so that the host can tell
# them apart, and live until the test kills them.
ORPHAN_MAKER = [
    "-c",
    ORPHANS_PY,
    str(ORPHANS),
    "--until-killed",
    "--comm",
    ORPHAN_COMM,
    "--forever",
]


def orphans_of(init_pid):
    return {pid: s for pid, s in pidns_members(init_pid).items() if s.comm == ORPHAN_COMM}


def wait_until_adopted(init_pid, count):
    """Wait until `count` orphans, all alive, are children of `init_pid`."""

    def adopted():
        orphans = orphans_of(init_pid)
        return len(orphans) == count and all(
            s.ppid == init_pid and s.state != "Z" for s in orphans.values()
        )

    try:
        wait_for(adopted, 20, "%d orphans adopted by pid %d" % (count, init_pid))
    except AssertionError:
        found = sorted((s.ppid, s.state) for s in orphans_of(init_pid).values())
        raise AssertionError(
            "expected %d orphans with parent %d; found (ppid, state): %s" % (count, init_pid, found)
        ) from None


def adopt_then_kill_orphans(init_pid, count):
    """Wait until `count` orphans are children of `init_pid`, then SIGKILL them all at once.

    The orphans die together, so their SIGCHLDs coalesce.
    """
    wait_until_adopted(init_pid, count)
    for pid in orphans_of(init_pid):
        os.kill(pid, signal.SIGKILL)


def zombies(init_pid):
    return [pid for pid, s in pidns_members(init_pid).items() if s.state == "Z"]


def wait_until_reaped(init_pid, held=0):
    """Wait until no orphan is left in the PID namespace, and no zombie but
    `held` ones whose parent is another process (a ZOMBIE_HOLDER's): none at all
    by default."""

    def reaped():
        members = pidns_members(init_pid)
        parents = [s.ppid for s in members.values() if s.state == "Z"]
        return (
            not any(s.comm == ORPHAN_COMM for s in members.values())
            and len(parents) == held
            and init_pid not in parents
        )

    wait_for(reaped, 10, "pid %d to reap the orphans" % init_pid)


HOLDER_COMM = "pp-holder"
HELD = 5
# A container of the pod runs this with our image's python3: a process that
# never waits for its children. They exit at once and stay zombies of a live
# parent that is not the pod's PID 1, which only that parent can reap
# (pypause_zombies_held_by_parent names it, and its container).
ZOMBIE_HOLDER = ["-c", ORPHANS_PY, str(HELD), "--zombies", "--comm", HOLDER_COMM, "--forever"]


def wait_until_holding(holder_pid, count):
    """Wait until `count` zombies, and no live child, have `holder_pid` as their parent."""

    def children():
        return sorted(s.state for s in pidns_members(holder_pid).values() if s.ppid == holder_pid)

    wait_for(
        lambda: children() == ["Z"] * count, 10, "pid %d to hold %d zombies" % (holder_pid, count)
    )


# ---------------------------------------------------------------- metrics


def series(body, name, *labels):
    """{values of `labels`: value} of the samples of metric `name` in a Prometheus
    text exposition, whatever the order of their labels, which must be `labels`."""
    found = {}
    for line in body.splitlines():
        if line.startswith(name + "{"):
            text, _, value = line.rpartition(" ")
            pairs = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', text[len(name) :]))
            assert sorted(pairs) == sorted(labels), line
            found[tuple(pairs[label] for label in labels)] = float(value)
    return found


# ---------------------------------------------------------------- podman


def podman_problem():
    if os.geteuid() != 0:
        return "needs root: rootful podman with runc, and /proc of the containers' processes"
    missing = [
        t
        for t in ("podman", "runc", "conmon", "apt-get", "apt-cache", "dpkg-deb")
        if shutil.which(t) is None
    ]
    if missing:
        return "not installed: %s (see .ci/run)" % ", ".join(missing)
    return None


class Podman:
    def __init__(self, workdir):
        os.makedirs(os.path.join(workdir, "networks"))
        storage = os.path.join(workdir, "storage.conf")
        with open(storage, "w") as f:
            f.write(
                '[storage]\ndriver = "overlay"\ngraphroot = "%s/storage"\n'
                'runroot = "%s/run"\n' % (workdir, workdir)
            )
        # podman's default rlimits (nofile and nproc 1048576) exceed what runc
        # may set without CAP_SYS_RESOURCE on these machines ("error setting
        # rlimit type 7"): use the caller's hard limit. runc, because crun
        # 1.8 refuses hybrid cgroup hosts.
        nofile = _hard_nofile()
        conf = os.path.join(workdir, "containers.conf")
        with open(conf, "w") as f:
            f.write(
                '[containers]\ndefault_ulimits = ["nofile=%d:%d", "nproc=4096:4096"]\n'
                '[engine]\nruntime = "runc"\ncgroup_manager = "cgroupfs"\n'
                'events_logger = "file"\ntmp_dir = "%s/run/libpod"\n'
                '[network]\nnetwork_config_dir = "%s/networks"\n'
                % (nofile, nofile, workdir, workdir)
            )
        self.env = dict(os.environ, CONTAINERS_CONF=conf, CONTAINERS_STORAGE_CONF=storage)

    def __call__(self, *args, timeout=120, check=True):
        return run(["podman"] + list(args), env=self.env, timeout=timeout, check=check)

    def inspect(self, name, template):
        return self("inspect", name, "--format", template).stdout.strip()

    def remove_everything(self):
        """Remove every pod and container in this private store, and the pods' cgroups.

        podman 4.3 (cgroupfs) removes a pod's cgroup from the v1 controllers'
        hierarchies only: on this hybrid host it leaves it, empty, in the
        name=systemd and unified ones.
        """
        pods = self("pod", "ps", "--quiet", "--no-trunc", check=False).stdout.split()
        cgroups = [
            self("pod", "inspect", "--format", "{{.CgroupPath}}", pod, check=False).stdout.strip()
            for pod in pods
        ]
        # Only a pod's own: /libpod_parent/<pod ID>.
        cgroups = [c for c, pod in zip(cgroups, pods) if os.path.basename(c) == pod]
        self("pod", "rm", "--all", "--force", "--time", "0", check=False)
        self("rm", "--all", "--force", "--time", "0", check=False)
        errors = []
        for cgroup in cgroups:
            for hierarchy in cgroup_hierarchies():
                for directory, _, _ in sorted(os.walk(hierarchy + cgroup), reverse=True):
                    try:
                        os.rmdir(directory)  # children first
                    except OSError as e:
                        errors.append("cgroup %s: %s" % (directory, e))
        assert not errors, errors


def _hard_nofile():
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return 1048576 if hard == resource.RLIM_INFINITY else hard


# ---------------------------------------------------------------- network namespaces

# Run by `nsenter --net=...` with this interpreter: GET paths from 127.0.0.1,
# inside the namespace, as a sidecar of the pod would.
FETCH = """\
import json, sys, urllib.request
result = {}
for path in sys.argv[2:]:
    with urllib.request.urlopen("http://127.0.0.1:%s%s" % (sys.argv[1], path), timeout=2) as r:
        result[path] = [r.status, r.headers.get_content_type(), r.read().decode()]
print(json.dumps(result))
"""


def fetch_in_netns(pid, port, *paths):
    """GET `paths` from 127.0.0.1:`port` in the network namespace of `pid`; None if refused."""
    r = subprocess.run(
        ["nsenter", "--net=/proc/%d/ns/net" % pid, sys.executable, "-c", FETCH, str(port)]
        + list(paths),
        capture_output=True,
        text=True,
        timeout=10,
    )
    return json.loads(r.stdout) if r.returncode == 0 else None


# ---------------------------------------------------------------- the host's processes


def shims_of(socket):
    """PIDs of the containerd shims serving the containerd at `socket`."""
    return [
        pid
        for pid, argv in command_lines().items()
        if b"containerd-shim" in argv[0] and socket.encode() in argv
    ]

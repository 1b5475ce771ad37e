"""Helpers for the container tests: commands, the pod programs, the private podman and containerd."""

import os
import re
import resource
import shutil
import signal
import subprocess

from tests.support.http import LOOPBACK_GET, get_inside, parse_samples
from tests.support.proc import cgroup_hierarchies, command_lines, pidns_members, stat
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


# The options of every build here: no registry, no network.
OFFLINE = ["--pull=never", "--network", "none"]


def metrics_port():
    """The port the metrics image serves on (its PYPAUSE_METRICS_ADDR)."""
    with open(METRICS_DOCKERFILE) as f:
        return int(re.search(r"^ENV PYPAUSE_METRICS_ADDR=(\d+)$", f.read(), re.M).group(1))


def git_head():
    """The repository's HEAD commit as deploy/image/build.sh reads it ("unknown" outside git)."""
    return (
        subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
        or "unknown"
    )


def setup_problem(needs_root_for, commands, missing=()):
    """Why tests that need root (`needs_root_for` says for what) and `commands` cannot
    run here, or None; `missing` names what else the caller found not installed."""
    if os.geteuid() != 0:
        return "needs root: " + needs_root_for
    missing = [c for c in commands if shutil.which(c) is None] + list(missing)
    if missing:
        return "not installed: %s (see .ci/run)" % ", ".join(missing)
    return None


def offline_build(base_image, wheel_context):
    """The options of every pause-image build here: OFFLINE, the wheels handed in
    as the `wheels` build context, on `base_image`."""
    return OFFLINE + [
        "--build-context",
        "wheels=" + wheel_context,
        "--build-arg",
        "BASE_IMAGE=" + base_image,
    ]


# The tests' orphan maker, for a container's python3 -c: the image has no copy.
# It runs in the pause image too, whose standard library is only what pypause
# imports (`_signal`, not `signal`): orphans.py imports more only for options
# that need it.
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
    text exposition, every one of which must have exactly `labels`."""
    found = {}
    for (sample, pairs), value in parse_samples(body).items():
        if sample == name:
            pairs = dict(pairs)
            assert sorted(pairs) == sorted(labels), (name, pairs)
            found[tuple(pairs[label] for label in labels)] = value
    return found


def scrape_reaped_and_held(init_pid, port, worker_id, holder_id, holder):
    """Check a pod's metrics; return the /metrics body.

    Wait until `holder` (the process of container `holder_id`) holds HELD
    zombies, then until `init_pid` has adopted the ORPHANS orphans of container
    `worker_id` and, once they are killed at once, reaped them; then GET
    /metrics and /healthz in its network namespace. Both must answer 200,
    /metrics with text/plain and counting the orphans reaped, by comm and by
    container, and the zombies held, by parent and container.
    """
    wait_until_holding(holder, HELD)
    adopt_then_kill_orphans(init_pid, ORPHANS)
    wait_until_reaped(init_pid, held=HELD)
    responses = wait_for(
        lambda: fetch_in_netns(init_pid, port, "/metrics", "/healthz"),
        10,
        "the metrics endpoint in the pod's network namespace",
    )
    status, content_type, body = responses["/metrics"]
    assert (status, content_type) == (200, "text/plain")
    assert responses["/healthz"][0] == 200
    assert series(body, "pypause_zombies_reaped_by_comm_total", "comm")[(ORPHAN_COMM,)] == ORPHANS
    assert series(body, "pypause_zombies_reaped_by_container_total", "container_id") == {
        (worker_id,): ORPHANS
    }
    assert stat(holder).comm == HOLDER_COMM
    assert series(body, "pypause_zombies_held_by_parent", "parent_comm", "container_id") == {
        (HOLDER_COMM, holder_id): HELD
    }
    return body


# ---------------------------------------------------------------- podman


def podman_problem():
    return setup_problem(
        "rootful podman with runc, and /proc of the containers' processes",
        ("podman", "runc", "conmon", "apt-get", "apt-cache", "dpkg-deb"),
    )


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

    def run_in(
        self, image, *args, entrypoint=None, options=(), detach=False, check=True, timeout=120
    ):
        """`podman run` of `image` with no network and `options`, `args` going to
        `entrypoint` (by default the image's own): to its end, the container
        removed then; or `detach`ed, the container's ID in stdout, the caller's
        to remove."""
        return self(
            "run",
            "-d" if detach else "--rm",
            "--network",
            "none",
            *options,
            *(["--entrypoint", entrypoint] if entrypoint else []),
            image,
            *args,
            check=check,
            timeout=timeout,
        )

    def get_in(self, container, port, path, accept="*/*", timeout=120):
        """GET `path` from 127.0.0.1:`port` inside `container`, by its image's python3
        (LOOPBACK_GET): the answer as it came, its CRLFs read as newlines."""
        return self(
            "exec",
            container,
            "python3",
            "-IS",
            "-c",
            LOOPBACK_GET,
            "127.0.0.1",
            str(port),
            path,
            accept,
            timeout=timeout,
        ).stdout

    def build(self, context, *options, check=True, timeout=120):
        """`podman build` of `context`, OFFLINE, with `options`."""
        return self("build", *OFFLINE, *options, context, check=check, timeout=timeout)

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


# ---------------------------------------------------------------- containerd

CONTAINERD_SNIPPET = os.path.join(REPO, "deploy", "containerd", "config-v2.toml")
CONTAINERD_NAMESPACE = "k8s.io"  # where the CRI plugin, and `kind load`, keep images


def containerd_config(workdir, sandbox_image, cri_keys="", tables=""):
    """The config.toml of a containerd of our own in `workdir` (root, state, sockets):
    the deploy snippet as a user pastes it, its image name replaced with
    `sandbox_image` and `cri_keys` right under it, in the same table; `tables` after it."""
    with open(CONTAINERD_SNIPPET) as f:
        snippet = f.read()
    snippet, found = re.subn(
        r'^(\s*sandbox_image = )"[^"]*"\n',
        lambda m: '%s"%s"\n%s' % (m.group(1), sandbox_image, cri_keys),
        snippet,
        flags=re.M,
    )
    assert found == 1, "%s sets no sandbox_image" % CONTAINERD_SNIPPET
    return (
        'root = "%s/root"\nstate = "%s/state"\n' % (workdir, workdir)  # before any table
        + snippet
        + tables
        + '[grpc]\n  address = "%s/containerd.sock"\n' % workdir
        + '[ttrpc]\n  address = "%s/containerd.sock.ttrpc"\n' % workdir
        + '[plugins."io.containerd.internal.v1.opt"]\n  path = "%s/opt"\n' % workdir
    )


class Containerd:
    """A containerd of our own, on the containerd_config() of `workdir` (and its log there)."""

    def __init__(self, workdir, sandbox_image, cri_keys="", tables=""):
        os.makedirs(workdir)
        self.dir = workdir
        self.socket = os.path.join(workdir, "containerd.sock")
        self.config = os.path.join(workdir, "config.toml")
        with open(self.config, "w") as f:
            f.write(containerd_config(workdir, sandbox_image, cri_keys, tables))
        self.log = os.path.join(workdir, "containerd.log")
        self.proc = None

    def start(self, *wrapper):
        """Start containerd, by `wrapper` (a command that runs its arguments) if given;
        return once it answers on its socket."""
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(
                [*wrapper, "containerd", "--config", self.config],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        wait_for(
            lambda: self.ctr("version", check=False).returncode == 0 or self.proc.poll(),
            30,
            "containerd to answer on its socket",
        )
        assert self.proc.poll() is None, self.read_log()

    def ctr(self, *args, check=True, timeout=120):
        return run(
            ["ctr", "--address", self.socket, "--namespace", CONTAINERD_NAMESPACE] + list(args),
            check=check,
            timeout=timeout,
        )

    def read_log(self):
        with open(self.log) as f:
            return f.read()

    def import_image(self, archive):
        self.ctr("images", "import", archive)

    def end(self):
        """End containerd if it runs, then its shims, which outlive it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        for pid in shims_of(self.socket):  # started for our socket only
            os.kill(pid, signal.SIGKILL)


# ---------------------------------------------------------------- network namespaces


def fetch_in_netns(pid, port, *paths):
    """GET `paths` from 127.0.0.1:`port` in the network namespace of `pid`, as a
    sidecar of the pod would: {path: (status, content type, body)}; None if refused."""
    answers = {}
    for path in paths:
        answer = get_inside(["nsenter", "--net=/proc/%d/ns/net" % pid], port, path)
        if answer is None:
            return None
        answers[path] = answer
    return answers


# ---------------------------------------------------------------- the host's processes


def shims_of(socket):
    """PIDs of the containerd shims serving the containerd at `socket`."""
    return [
        pid
        for pid, argv in command_lines().items()
        if b"containerd-shim" in argv[0] and socket.encode() in argv
    ]

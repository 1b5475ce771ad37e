"""cgroups of the tests' own: a pids cgroup to limit forks in, and entering
cgroups from a process's first instruction."""

import os

from tests.support.running import wait_for

PIDS_V1 = "/sys/fs/cgroup/pids"
CGROUP_V2_ROOTS = ("/sys/fs/cgroup/unified", "/sys/fs/cgroup")


def _writable_dir(path):
    probe = os.path.join(path, "pypause-probe-%d" % os.getpid())
    try:
        os.mkdir(probe)
    except OSError:
        return False
    os.rmdir(probe)
    return True


def pids_cgroup_parent():
    """(parent directory, version) where a pids cgroup can be made, or (None, why)."""
    if os.path.exists(os.path.join(PIDS_V1, "cgroup.procs")) and _writable_dir(PIDS_V1):
        return PIDS_V1, 1
    for root in CGROUP_V2_ROOTS:
        try:
            with open(os.path.join(root, "cgroup.subtree_control")) as f:
                enabled = f.read().split()
        except OSError:
            continue
        # Only where pids is already delegated: enabling it would change the host.
        if "pids" in enabled and _writable_dir(root):
            return root, 2
    return None, (
        "no writable pids cgroup: neither cgroup v1 %s nor a cgroup v2 root "
        "with pids in cgroup.subtree_control" % PIDS_V1
    )


class PidsCgroup:
    """A pids cgroup of our own, removed by close() (its processes moved out first)."""

    def __init__(self, parent, name):
        self.parent = parent
        self.path = os.path.join(parent, name)
        os.mkdir(self.path)

    def _file(self, name):
        return os.path.join(self.path, name)

    def set_max(self, limit):
        with open(self._file("pids.max"), "w") as f:
            f.write(str(limit))

    def procs(self):
        try:
            with open(self._file("cgroup.procs")) as f:
                return [int(p) for p in f.read().split()]
        except OSError:
            return []

    def current(self):
        with open(self._file("pids.current")) as f:
            return int(f.read())

    def max_events(self):
        """How many times a fork failed here because of pids.max."""
        with open(self._file("pids.events")) as f:
            return int(dict(line.split() for line in f)["max"])

    def enter_argv(self, argv):
        """`argv` prefixed so that it runs inside this cgroup from its first instruction."""
        return ["sh", "-c", 'echo $$ > "$0" && exec "$@"', self._file("cgroup.procs")] + list(argv)

    def close(self):
        if not os.path.isdir(self.path):
            return
        try:
            self.set_max("max")
        except OSError:
            pass
        # Move anything still inside out to the parent, or rmdir fails with EBUSY.
        for pid in self.procs():
            try:
                with open(os.path.join(self.parent, "cgroup.procs"), "w") as f:
                    f.write(str(pid))
            except OSError:
                pass  # gone meanwhile

        def removed():
            try:
                os.rmdir(self.path)
            except FileNotFoundError:
                return True
            except OSError:
                return False
            return True

        wait_for(removed, timeout=10, what="cgroup %s to be removed" % self.path)


def entering_cgroups(directories, argv):
    """`argv` prefixed so that it runs in each cgroup of `directories` from its
    first instruction."""
    script = (
        'n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ > "$1/cgroup.procs" || exit 125; '
        'shift; n=$((n - 1)); done; exec "$@"'
    )
    return ["sh", "-c", script, "sh", str(len(directories)), *directories, *argv]

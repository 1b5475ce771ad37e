"""Which container a process runs in, named as Kubernetes names it.

Container runtimes name a container's cgroup after the container's ID, and
/proc/PID/cgroup gives a process's cgroup path in every hierarchy:

    containerd, systemd driver   .../cri-containerd-<id>.scope
    containerd, cgroupfs driver  /kubepods/<qos>/pod<uid>/<id>  (or /k8s.io/<id>)
    CRI-O                        .../crio-<id>.scope, or .../crio-<id>
    docker                       .../docker-<id>.scope, or /docker/<id>
    podman                       .../libpod-<id>.scope, or /libpod_parent/libpod-<id>

where <id> is 64 hex digits. Inside a cgroup namespace the paths are relative
to its root (a container of the same pod is `/../cri-containerd-<id>.scope`),
and a process in a cgroup below its container's (systemd in a container makes
`init.scope`) is in its container too: a path is read from its end, and its
innermost component that names a container wins.

The value is what Kubernetes shows in `containerStatuses[].containerID`
(`containerd://<id>`, `cri-o://<id>`, `docker://<id>`) where the name says
which runtime made it, and the bare ID where it does not (podman, and the
cgroupfs driver's `<id>`, which containerd and cri-dockerd share). NONE where
no ID can be read: no /proc, a process outside every container's cgroup, a
cgroup that names none. A process that may name its own cgroups (a delegated
subtree) can name its container: the value is only what the cgroup says, and
at most an ID of 64 hex digits, so it can never be a hostile label value.

Only a cgroup v2 (`0::`) line is kept for a zombie: the kernel moves an exited
process's cgroup v1 memberships to the root at once. A live process is also
looked up in its v1 lines (a cgroup v1 host, or a runtime that left the
unified hierarchy alone on a hybrid one).

Imported only with metrics or -w on: nothing else needs it.
"""

from pypause import procfs

#: The value for a process whose container pypause cannot name.
NONE = "none"

_HEX = frozenset("0123456789abcdef")
#: Prefixes of the cgroup names runtimes give containers, and the scheme
#: Kubernetes puts before the ID. `crio-conmon-<id>` and `libpod-conmon-<id>`
#: (the containers' monitors) name no container: what follows is no ID.
_PREFIXES = (
    ("cri-containerd-", "containerd://"),
    ("crio-", "cri-o://"),
    ("docker-", "docker://"),
    ("libpod-", ""),
)


def _is_id(text: str) -> bool:
    return len(text) == 64 and _HEX.issuperset(text)


def from_path(path: str) -> "str | None":
    """The container that cgroup `path` names, innermost first; None if it names none."""
    parts = path.split("/")
    for i in range(len(parts) - 1, -1, -1):
        name = parts[i]
        if name.endswith(".scope"):
            name = name[: -len(".scope")]
        if _is_id(name):
            return ("docker://" if i and parts[i - 1] == "docker" else "") + name
        for prefix, scheme in _PREFIXES:
            if name.startswith(prefix) and _is_id(name[len(prefix) :]):
                return scheme + name[len(prefix) :]
    return None


def from_cgroup(text: bytes, live: bool) -> str:
    """The container named by the contents of a /proc/PID/cgroup, or NONE.

    The v2 line is tried first; for a `live` process, then each v1 line. The
    kernel lists the v2 line last: a v1 path that holds a newline and a fake
    v2 line comes before it.
    """
    start = text.rfind(b"\n0::") + 1  # the last v2 line; 0: none after the first line
    if start or text.startswith(b"0::"):
        found = _from_line(text[start + 3 :].partition(b"\n")[0])
    else:
        found = None
    if found is None and live:
        for line in text.split(b"\n"):
            hierarchy, _, rest = line.partition(b":")
            if hierarchy != b"0":
                found = _from_line(rest.partition(b":")[2])
                if found:
                    break
    return found or NONE


#: The last path looked up, and what it named: the orphans of a storm come
#: from one container, whose path is then parsed once.
_last: "tuple[bytes, str | None]" = (b"", None)


def _from_line(path: bytes) -> "str | None":
    global _last
    last = _last  # read once: the loop and the metrics thread both look up paths
    if path == last[0]:
        return last[1]
    found = from_path(path.decode("utf-8", "replace"))
    _last = (path, found)
    return found


def of(pid: int, live: bool) -> str:
    """The container `pid` runs in (ran in, for a zombie: `live` False), or NONE."""
    text = procfs.cgroup(pid)
    return NONE if text is None else from_cgroup(text, live)

"""What /proc tells about processes. Every reader tolerates a missing /proc
(a namespace without it mounted) and processes that vanish while being read.

A /proc of another PID namespace (`unshare --pid --fork` without
`--mount-proc`, a container that bind-mounts the host's /proc) is treated as
a missing one: its PIDs are not ours, so its names and counts would describe
strangers.
"""

import os

_ours = None  # is /proc of our PID namespace? Asked once (see ours())


def ours() -> bool:
    """True if /proc is mounted and belongs to pypause's PID namespace.

    /proc/self names the reader's PID as that /proc's namespace sees it: our
    own PID only in a /proc of our namespace. Checked once; a /proc mounted
    or replaced later is not noticed.
    """
    global _ours
    if _ours is None:
        try:
            _ours = os.readlink("/proc/self") == str(os.getpid())
        except OSError:
            _ours = False
    return _ours


def stat(pid: int) -> "tuple[str, str, int, int] | None":
    """(comm, state, ppid, pgrp) of `pid`, or None if it is gone.

    The caller has checked ours().
    """
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            text = f.read()
    except OSError:
        return None
    # comm may itself hold ")" or spaces: it ends at the last ")".
    end = text.rindex(b")")
    state, ppid, pgrp = text[end + 2 :].split(b" ", 3)[:3]
    comm = text[text.index(b"(") + 1 : end].decode("utf-8", "replace")
    return comm, state.decode(), int(ppid), int(pgrp)


def processes() -> "dict[int, tuple[str, str, int, int]] | None":
    """{pid: (comm, state, ppid, pgrp)} of every process in our namespace,
    or None without a /proc of our own."""
    if not ours():
        return None
    result = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            fields = stat(int(name))
            if fields:
                result[int(name)] = fields
    return result


def comm(pid: int) -> "str | None":
    """The command name of `pid` (15 characters at most), or None.

    Read for every orphan reaped with metrics on: unbuffered, ~3x cheaper
    than open().
    """
    if not ours():
        return None
    try:
        fd = os.open("/proc/%d/comm" % pid, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return os.read(fd, 64).rstrip(b"\n").decode("utf-8", "replace")
    except OSError:
        return None
    finally:
        os.close(fd)


#: /proc/PID/cgroup is read up to this size (a line per hierarchy, each path
#: up to PATH_MAX): what a process makes of its cgroup names stays bounded.
_CGROUP_MAX = 64 * 1024


def cgroup(pid: int) -> "bytes | None":
    """The contents of /proc/PID/cgroup, or None (no /proc of our own, `pid` gone)."""
    if not ours():
        return None
    try:
        fd = os.open("/proc/%d/cgroup" % pid, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        chunks = []
        size = 0
        while size < _CGROUP_MAX:
            chunk = os.read(fd, _CGROUP_MAX - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)
    except OSError:
        return None
    finally:
        os.close(fd)


def census(parent: int) -> "tuple[int, int, dict[int, tuple[str | None, int]]] | None":
    """What one pass over /proc finds: (processes visible, zombies whose parent
    is `parent`, {PID: (its comm, zombies whose parent it is)} for every other
    parent of a zombie), or None without a /proc of our own.

    An other parent's comm is None if it is not in our namespace (PID 0: a
    process that entered it from outside had the zombie) or is gone by now.
    """
    try:
        found = processes()
    except OSError:
        return None
    if found is None:
        return None
    own = 0
    held: dict[int, int] = {}
    for _, state, ppid, _ in found.values():
        if state == "Z":
            if ppid == parent:
                own += 1
            else:
                held[ppid] = held.get(ppid, 0) + 1
    parents = {ppid: (found[ppid][0] if ppid in found else None, n) for ppid, n in held.items()}
    return len(found), own, parents

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

    Read for every orphan reaped with metrics on.
    """
    text = _read(pid, "comm", 64)
    return None if text is None else text.rstrip(b"\n").decode("utf-8", "replace")


#: /proc/PID/cgroup is read up to this size (a line per hierarchy, each path
#: up to PATH_MAX): what a process makes of its cgroup names stays bounded.
_CGROUP_MAX = 64 * 1024


def cgroup(pid: int) -> "bytes | None":
    """The contents of /proc/PID/cgroup, or None (no /proc of our own, `pid` gone)."""
    return _read(pid, "cgroup", _CGROUP_MAX)  # the kernel gives it whole in one read


def _read(pid: int, name: str, most: int) -> "bytes | None":
    """Up to `most` bytes of /proc/PID/NAME in one read, or None."""
    return _read_path("/proc/%d/%s" % (pid, name), most) if ours() else None


def _read_path(path: str, most: int) -> "bytes | None":
    """Up to `most` bytes of `path` in one read, or None if it cannot be read.

    Unbuffered: ~3x cheaper than open() for a /proc file.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return os.read(fd, most)
    except OSError:
        return None
    finally:
        os.close(fd)


def census(parent: int) -> "tuple[int, int, dict[int, int]] | None":
    """What one pass over /proc finds: (processes visible, zombies whose parent
    is `parent`, {PID: zombies whose parent it is} for every other parent of
    a zombie), or None without a /proc of our own.

    Read at every scrape, for every process of the namespace, so each is
    asked what is cheapest: /proc/PID/statm, whose first field (the size of
    its memory) is 0 only for a process without memory, as a zombie is (it
    released its memory before it exited); only those are then read in
    /proc/PID/stat, for their state and parent. statm costs about 60% of what
    stat does (the kernel fills stat's fifty fields, CPU times summed over
    every thread): measured on this project's machines.
    A parent's PID is 0 if it is outside our namespace (a process that
    entered it from outside had the zombie).
    """
    if not ours():
        return None
    try:
        names = os.listdir("/proc")
    except OSError:
        return None
    processes = own = 0
    held: dict[int, int] = {}
    for name in names:
        if not name.isdigit():
            continue
        memory = _read_path("/proc/" + name + "/statm", 32)
        if memory is None:  # gone since the listing
            continue
        processes += 1
        if not memory.startswith(b"0 "):
            continue
        # pid, (comm), state, ppid: within the first 128 bytes (comm is at
        # most 64), and no ")" after comm's.
        text = _read_path("/proc/" + name + "/stat", 128)
        if text is None:
            continue
        end = text.rfind(b")")
        if text[end + 2 : end + 3] == b"Z":
            ppid = int(text[end + 4 :].split(b" ", 1)[0])
            if ppid == parent:
                own += 1
            else:
                held[ppid] = held.get(ppid, 0) + 1
    return processes, own, held

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


def census(parent: int) -> "tuple[int, int] | None":
    """(processes visible, zombies whose parent is `parent`), or None without
    a /proc of our own."""
    try:
        found = processes()
    except OSError:
        return None
    if found is None:
        return None
    zombies = sum(1 for _, state, ppid, _ in found.values() if state == "Z" and ppid == parent)
    return len(found), zombies

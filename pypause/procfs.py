"""What /proc tells about processes. Every reader tolerates a missing /proc
(a namespace without it mounted) and processes that vanish while being read."""

import os


def stat(pid):
    """(comm, state, ppid) of `pid`, or None if it is gone or /proc is absent."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            text = f.read()
    except OSError:
        return None
    # comm may itself hold ")" or spaces: it ends at the last ")".
    end = text.rindex(b")")
    state, ppid = text[end + 2:].split(b" ", 2)[:2]
    return text[text.index(b"(") + 1:end].decode("utf-8", "replace"), state.decode(), int(ppid)


def comm(pid):
    """The command name of `pid` (15 characters at most), or None.

    Read for every orphan reaped with metrics on: unbuffered, ~3x cheaper
    than open().
    """
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


def census(parent):
    """(processes visible, zombies whose parent is `parent`), or None without /proc."""
    try:
        names = os.listdir("/proc")
    except OSError:
        return None
    total = zombies = 0
    for name in names:
        if name.isdigit():
            fields = stat(int(name))
            if fields:
                total += 1
                if fields[1] == "Z" and fields[2] == parent:
                    zombies += 1
    if total == 0:
        return None  # /proc is an empty directory: not mounted
    return total, zombies

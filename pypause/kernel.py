"""prctl(2) through ctypes: the two process attributes Python's os module lacks."""

import ctypes
import os

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36


def _prctl(option: int, arg: int) -> None:
    # CDLL(None) is the running process itself: it finds prctl on glibc and musl,
    # where ctypes.util.find_library("c") returns None.
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, ctypes.c_ulong(arg), 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def set_child_subreaper() -> None:
    """Make orphans of our descendants be reparented to us instead of to PID 1."""
    _prctl(PR_SET_CHILD_SUBREAPER, 1)


def set_pdeathsig(signum: int) -> None:
    """Ask the kernel to send us `signum` when our parent dies."""
    _prctl(PR_SET_PDEATHSIG, signum)

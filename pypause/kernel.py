"""prctl(2) through ctypes: the process attributes Python's os module lacks."""

import ctypes
import os

#: typing-only imports without importing typing at run time (mypy: always_true).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

PR_SET_PDEATHSIG = 1
PR_GET_PDEATHSIG = 2
PR_SET_CHILD_SUBREAPER = 36


def _prctl(option: int, arg: "int | Any") -> None:
    """prctl(option, arg): an int is passed as an unsigned long, anything else
    (a ctypes pointer) as it is. Raise OSError on failure."""
    # CDLL(None) is the running process itself: it finds prctl on glibc and musl,
    # where ctypes.util.find_library("c") returns None.
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, ctypes.c_ulong(arg) if isinstance(arg, int) else arg, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def set_child_subreaper() -> None:
    """Make orphans of our descendants be reparented to us instead of to PID 1."""
    _prctl(PR_SET_CHILD_SUBREAPER, 1)


def set_pdeathsig(signum: int) -> None:
    """Ask the kernel to send us `signum` when our parent dies."""
    _prctl(PR_SET_PDEATHSIG, signum)


def get_pdeathsig() -> int:
    """The signal asked for when our parent dies (0: none)."""
    signum = ctypes.c_int(0)
    _prctl(PR_GET_PDEATHSIG, ctypes.byref(signum))
    return signum.value

"""The interpreter pypause runs in: its own, not the app's.

pypause is often the init of a Python image and shares its environment:
PYTHONPATH, PYTHONHOME, a sitecustomize that starts threads (what
auto-instrumentation injects into every container), .pth files. A thread
started there could take the signals the loop waits for; the app's modules
could stand in for pypause's. So pypause runs in `python3 -I -S`: the pause
image's #! line says so. The #! line pip writes cannot carry flags
(pypa/pip#10661): an interpreter that may have taken part of the app's set-up
re-executes the command isolated, with every signal still blocked, so that
none is lost in between.

Imported by the command script (bin/pypause) right after it blocked the
signals, from the directories `site` found: never from PYTHONPATH.
"""

import os
import sys

#: typing-only imports without importing typing at run time (mypy: always_true).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

#: -X options with which an isolated pypause gets what the first one found.
_MASK, _SIGINT, PATH = "pypause-mask", "pypause-sigint", "pypause-path"


def isolate(mask: "Iterable[int]", early_sigint: bool) -> "tuple[Iterable[int], bool]":
    """Make sure this interpreter is pypause's own; return (the signal mask
    pypause was started with, True if a SIGINT came before it was blocked).

    `mask` and `early_sigint` are what the command script found; in an
    interpreter it re-executed, what the first one handed on replaces them.
    Returns only in an interpreter fit to run pypause: this one, or, if it
    cannot re-execute itself, this one after a warning. Every signal must be
    blocked.
    """
    if sys.flags.isolated and sys.flags.no_site:
        handed_on = sys._xoptions.get(_MASK)
        if isinstance(handed_on, str):
            mask = {int(n) for n in handed_on.split(",") if n}
            early_sigint = _SIGINT in sys._xoptions
    elif _app_environment_seen():
        _undo_locale_coercion()  # the next interpreter must be given what this one was
        _reexec_isolated(mask, early_sigint)
    _undo_locale_coercion()
    return mask, early_sigint


def _app_environment_seen() -> bool:
    """True if this interpreter may have taken part of the app's Python set-up:
    a PYTHON* variable it honours, a thread (started by a .pth file or a
    sitecustomize), or a site/usercustomize module not of the standard library
    (Debian's python3 has one there)."""
    if not sys.flags.ignore_environment and any(n.startswith("PYTHON") for n in os.environ):
        return True
    stdlib = os.path.dirname(os.__file__)
    for name in ("sitecustomize", "usercustomize"):
        where = getattr(sys.modules.get(name), "__file__", None)
        if where is not None and os.path.dirname(where) != stdlib:
            return True
    try:
        return len(os.listdir("/proc/self/task")) > 1
    except OSError:  # no /proc: the threads started from Python code
        import _thread

        return _thread._count() > 0


def _reexec_isolated(mask: "Iterable[int]", early_sigint: bool) -> None:
    """exec() the command as `python3 -I -S`; return only if that fails."""
    # What follows the standard library on sys.path is what site added: the
    # site-packages and the directories their .pth files name (the new
    # interpreter runs none of their code). PYTHONPATH comes before it.
    stdlib = os.path.dirname(os.__file__)
    paths = sys.path[sys.path.index(stdlib) + 1 :] if stdlib in sys.path else []
    argv = [sys.executable, "-I", "-S", "-X", "%s=%s" % (_MASK, ",".join(map(str, mask)))]
    if early_sigint:
        argv += ["-X", _SIGINT]
    if paths:
        argv += ["-X", "%s=%s" % (PATH, os.pathsep.join(paths))]
    try:
        os.execv(sys.executable, argv + sys.argv)
    except (OSError, ValueError) as e:  # ValueError: sys.executable is empty
        from pypause import log

        log.warning(
            "cannot isolate pypause from the app's Python environment: cannot run %r: %s"
            % (sys.executable, getattr(e, "strerror", None) or e)
        )


def _undo_locale_coercion() -> None:
    """Give LC_CTYPE back the value pypause was given, for the child to inherit.

    In the C locale Python sets LC_CTYPE=C.UTF-8 in its own environment at
    start-up (PEP 538). /proc/self/environ still holds the environment as
    exec() gave it; without /proc the variable is left as Python set it.
    """
    if os.environ.get("LC_ALL") or os.environ.get("LC_CTYPE") not in ("C.UTF-8", "C.utf8", "UTF-8"):
        return
    try:
        with open("/proc/self/environ", "rb") as f:
            given = [e[9:] for e in f.read().split(b"\0") if e.startswith(b"LC_CTYPE=")]
    except OSError:
        return
    if not given:
        del os.environ["LC_CTYPE"]
    elif os.fsencode(os.environ["LC_CTYPE"]) != given[0]:
        os.environ["LC_CTYPE"] = os.fsdecode(given[0])

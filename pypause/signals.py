"""Signal names and the sets of signals pypause waits for.

Built on the C module `_signal`, not `signal`: that one imports `enum` (~4 ms
and ~0.7 MiB of every start) only to wrap these numbers in classes.

Synchronous fault signals are never blocked: a fault inside pypause itself
must kill pypause (a blocked SIGSEGV raised by the kernel kills the process
anyway, but with a misleading status), and forwarding a fault the child did
not commit would lie to it. tini and catatonit do not forward these either
(tini drops SIGTTIN and SIGTTOU as well; pypause forwards those).
"""

import _signal

FAULT_SIGNALS = frozenset(
    {
        _signal.SIGSEGV,
        _signal.SIGBUS,
        _signal.SIGFPE,
        _signal.SIGILL,
        _signal.SIGABRT,
        _signal.SIGTRAP,
        _signal.SIGSYS,
    }
)
UNCATCHABLE = frozenset({_signal.SIGKILL, _signal.SIGSTOP})

#: The signals that stop a container: they end pause mode with 0, and their
#: metrics series exist from the start.
SHUTDOWN = (_signal.SIGTERM, _signal.SIGINT)

#: Every signal pypause blocks and collects with sigwaitinfo().
WAITED = frozenset(_signal.valid_signals()) - FAULT_SIGNALS - UNCATCHABLE

_RTMIN = _signal.SIGRTMIN
_RTMAX = _signal.SIGRTMAX
#: Names by number, as `signal.Signals` has them: a second name for the same
#: number (SIGIOT, SIGCLD, SIGPOLL) is accepted by parse() but never shown.
_BY_NAME = {
    name: number
    for name, number in vars(_signal).items()
    if name.startswith("SIG") and not name.startswith("SIG_")
}
if 16 not in _BY_NAME.values():  # Python < 3.11 does not name it; Linux does
    _BY_NAME["SIGSTKFLT"] = 16
_NAMES = {
    number: name for name, number in _BY_NAME.items() if name not in ("SIGIOT", "SIGCLD", "SIGPOLL")
}


def name(signum: int) -> str:
    """Return the conventional name of `signum`: "SIGTERM", "SIGRTMIN+3"."""
    if _RTMIN < signum < _RTMAX:
        return "SIGRTMIN+%d" % (signum - _RTMIN)
    return _NAMES.get(signum, "SIG%d" % signum)


def never_forwarded(signum: int) -> "str | None":
    """Why a signal sent to pypause is never forwarded, or None if it is."""
    if signum in FAULT_SIGNALS:
        return "a fault signal, never intercepted: it kills pypause itself"
    if signum in UNCATCHABLE:
        return "it cannot be caught"
    if signum == _signal.SIGCHLD:
        return "it drives reaping"
    return None


def describe(signum: int) -> str:
    """Return the human description of `signum` ("Terminated"), as strsignal(3)."""
    return _signal.strsignal(signum) or name(signum)


def parse(text: str) -> int:
    """Parse a signal given as a name ("TERM", "SIGTERM", "rtmin+2") or a number.

    Return the signal number. Raise ValueError if `text` names no signal that
    can be sent; 0 is not accepted here (callers that allow it check first).
    """
    spec = text.strip().upper()
    if spec.startswith("SIG") and spec[3:].isdigit():  # "SIG32", as name() writes it
        spec = spec[3:]
    if spec.isdigit():
        signum = int(spec)
    else:
        if not spec.startswith("SIG"):
            spec = "SIG" + spec
        base, sign, offset = spec.partition("+")
        if not sign:
            base, sign, offset = spec.partition("-")
        if base in ("SIGRTMIN", "SIGRTMAX") and sign and offset.isdigit():
            start = _RTMIN if base == "SIGRTMIN" else _RTMAX
            signum = start + int(offset) if sign == "+" else start - int(offset)
        elif spec in _BY_NAME:
            signum = _BY_NAME[spec]
        else:
            raise ValueError("unknown signal %r" % text)
    if signum not in _signal.valid_signals():
        raise ValueError("unknown signal %r" % text)
    return signum

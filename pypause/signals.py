"""Signal names and the sets of signals pypause waits for.

Synchronous fault signals are never blocked: a fault inside pypause itself
must kill pypause (a blocked SIGSEGV raised by the kernel kills the process
anyway, but with a misleading status), and forwarding a fault the child did
not commit would lie to it. tini and catatonit leave the same set alone.
"""

import signal

FAULT_SIGNALS = frozenset({
    signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE, signal.SIGILL,
    signal.SIGABRT, signal.SIGTRAP, signal.SIGSYS,
})
UNCATCHABLE = frozenset({signal.SIGKILL, signal.SIGSTOP})

#: Every signal pypause blocks and collects with sigwaitinfo().
WAITED = frozenset(signal.valid_signals()) - FAULT_SIGNALS - UNCATCHABLE

_RTMIN = signal.SIGRTMIN
_RTMAX = signal.SIGRTMAX


def name(signum):
    """Return the conventional name of `signum`: "SIGTERM", "SIGRTMIN+3"."""
    if _RTMIN < signum < _RTMAX:
        return "SIGRTMIN+%d" % (signum - _RTMIN)
    try:
        return signal.Signals(signum).name
    except ValueError:
        return "SIG%d" % signum


def describe(signum):
    """Return the human description of `signum` ("Terminated"), as strsignal(3)."""
    return signal.strsignal(signum) or name(signum)


def parse(text):
    """Parse a signal given as a name ("TERM", "SIGTERM", "rtmin+2") or a number.

    Return the signal number. Raise ValueError if `text` names no signal that
    can be sent; 0 is not accepted here (callers that allow it check first).
    """
    spec = text.strip().upper()
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
        else:
            try:
                signum = signal.Signals[spec].value
            except KeyError:
                raise ValueError("unknown signal %r" % text) from None
    if signum not in signal.valid_signals():
        raise ValueError("unknown signal %r" % text)
    return signum

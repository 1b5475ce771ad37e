"""What the loop tells an observer (the metrics), and the guard between them.

An observer runs inside PID 1's loop and reap drain. Whatever goes wrong in it
must cost nothing else: not a signal, not a reap, not the main child's status.
"""

from pypause import log

#: typing-only imports without importing typing at run time (mypy: always_true).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, Protocol

    class Observer(Protocol):
        """What the loop reports to: Events, metrics.Metrics, or Guarded."""

        inspects_orphans: bool

        def signal_received(self, signum: int) -> None: ...
        def signal_forwarded(self, signum: int) -> None: ...
        def orphan_reaped(self, comm: "str | None", container: "str | None") -> None: ...
        def child_exited(self, code: int) -> None: ...
        def heartbeat(self) -> None: ...
        def grace_period(self) -> None: ...


_METHODS = (
    "signal_received",
    "signal_forwarded",
    "orphan_reaped",
    "child_exited",
    "heartbeat",
    "grace_period",
)


class Events:
    """What the loop reports as it goes; this default reports nothing.

    metrics.Metrics has the same methods and counts what they report.
    `inspects_orphans` asks the loop to read each orphan's command name and
    container (containers.py) before reaping it.
    """

    inspects_orphans = False

    def signal_received(self, signum: int) -> None:
        pass

    def signal_forwarded(self, signum: int) -> None:
        pass

    def orphan_reaped(self, comm: "str | None", container: "str | None") -> None:
        pass

    def child_exited(self, code: int) -> None:
        pass

    def heartbeat(self) -> None:
        pass

    def grace_period(self) -> None:
        pass


class Guarded:
    """`observer`'s methods, each of which logs an exception instead of raising.

    Only the first exception is logged: a bug met on every orphan of a storm
    would otherwise write a line for each.
    """

    if TYPE_CHECKING:  # set in __init__, one per name in _METHODS

        def signal_received(self, signum: int) -> None: ...
        def signal_forwarded(self, signum: int) -> None: ...
        def orphan_reaped(self, comm: "str | None", container: "str | None") -> None: ...
        def child_exited(self, code: int) -> None: ...
        def heartbeat(self) -> None: ...
        def grace_period(self) -> None: ...

    def __init__(self, observer: "Observer") -> None:
        self.inspects_orphans = observer.inspects_orphans
        self._told = False
        for name in _METHODS:
            setattr(self, name, self._guard(getattr(observer, name)))

    def _guard(self, method: "Callable[..., None]") -> "Callable[..., None]":
        def call(*args: "Any") -> None:
            try:
                method(*args)
            except Exception as e:
                if not self._told:
                    self._told = True
                    log.error("metrics failed (pypause goes on; not logged again): %r" % e)

        return call

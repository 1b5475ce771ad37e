"""What the loop tells an observer (the metrics), and the guard between them.

An observer runs inside PID 1's loop and reap drain. Whatever goes wrong in it
must cost nothing else: not a signal, not a reap, not the main child's status.
"""

from pypause import log

#: typing-only imports without importing typing at run time (mypy: always_true).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


class Observer:
    """What the loop reports as it goes: the one list of its events. This
    class, the null observer, hears them and does nothing; metrics.Metrics
    counts them; Guarded wraps an observer that may raise.

    `inspects_zombies` asks the loop to read each zombie's command name and
    container (containers.py) before reaping it.
    """

    inspects_zombies = False

    def signal_received(self, signum: int) -> None:
        pass

    def signal_forwarded(self, signum: int) -> None:
        pass

    def zombie_reaped(self, comm: "str | None", container: "str | None") -> None:
        """A zombie that was not the main child (an adopted orphan) was reaped."""

    def child_exited(self, code: int) -> None:
        pass

    def heartbeat(self) -> None:
        pass

    def grace_period(self) -> None:
        pass


#: The events, as Observer defines them.
_EVENTS = tuple(name for name, value in vars(Observer).items() if callable(value))


class Guarded(Observer):
    """`observer`'s events, each of which logs an exception instead of raising.

    Only the first exception is logged: a bug met on every zombie of a storm
    would otherwise write a line for each.
    """

    def __init__(self, observer: Observer) -> None:
        self.inspects_zombies = observer.inspects_zombies
        self._told = False
        for name in _EVENTS:
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

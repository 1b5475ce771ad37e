# The C module behind `signal`, which typeshed does not cover. pypause uses it
# instead of `signal` (that one imports enum at start-up): here its values are
# what the C module gives, plain ints, not signal's enum members.
# Only what pypause uses.
from collections.abc import Callable, Iterable
from signal import struct_siginfo
from types import FrameType
from typing import Any

_Handler = Callable[[int, FrameType | None], Any] | int | None

SIGABRT: int
SIGBUS: int
SIGCHLD: int
SIGCONT: int
SIGFPE: int
SIGILL: int
SIGINT: int
SIGKILL: int
SIGPIPE: int
SIGRTMAX: int
SIGRTMIN: int
SIGSEGV: int
SIGSTOP: int
SIGSYS: int
SIGTERM: int
SIGTRAP: int
SIGTSTP: int
SIGTTIN: int
SIGTTOU: int
SIGXFSZ: int
SIG_BLOCK: int
SIG_SETMASK: int
SIG_DFL: int
SIG_IGN: int

def default_int_handler(signalnum: int, frame: FrameType | None, /) -> None: ...
def getsignal(signalnum: int, /) -> _Handler: ...
def signal(signalnum: int, handler: _Handler, /) -> _Handler: ...
def pthread_sigmask(how: int, mask: Iterable[int], /) -> set[int]: ...
def sigtimedwait(sigset: Iterable[int], timeout: float, /) -> struct_siginfo | None: ...
def sigwaitinfo(sigset: Iterable[int], /) -> struct_siginfo: ...
def strsignal(signalnum: int, /) -> str | None: ...
def valid_signals() -> set[int]: ...

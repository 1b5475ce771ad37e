"""Log lines on stderr that can never block or kill PID 1.

The standard `logging` module is not used: it costs start-up time and its
handlers block on a full pipe. Here a line is written with one write() of at
most PIPE_BUF bytes, or dropped (and counted in `dropped`) when stderr cannot
take it right now.

fd 2 is shared with the child, so O_NONBLOCK must not be set on its open file
description (the child's writes would start failing with EAGAIN), and a poll()
before a blocking write races with the child filling the buffer in between.
Instead each line is written with pwritev2(RWF_NOWAIT): non-blocking for this
one call, for pipes and sockets (Linux >= 5.8 for pipes). Where the kernel or
the file type does not support it (a tty, a file), a zero-timeout poll() says
whether a write would block; a tty's buffer and a file do not fill up behind
our back the way a stalled log collector's pipe does.
"""

import os
import sys
import time
from _thread import allocate_lock  # not threading: a start-up cost

#: typing-only imports without importing typing at run time (mypy: always_true).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

ERROR, WARNING, INFO, DEBUG = 0, 1, 2, 3
_LEVEL_NAMES = ("error", "warning", "info", "debug")
_PIPE_BUF = 4096  # Linux's, on every architecture: a write up to it is atomic

threshold = INFO
json_format = False
dropped = 0
_dropped_lock = allocate_lock()
_nowait = hasattr(os, "RWF_NOWAIT")  # False once the kernel says it cannot


def configure(verbosity: int, log_format: str = "text") -> None:
    """Show INFO and above, DEBUG from one -v on; pick "text" or "json" lines."""
    global threshold, json_format
    threshold = INFO + verbosity
    json_format = log_format == "json"
    if json_format:
        # Now, not at the first line: pause mode may give root up before it,
        # and an interpreter under a directory the new user cannot read
        # (pyenv's in /root) could then import nothing, and drop every line.
        import json  # noqa: F401


def error(msg: str, **fields: "Any") -> None:
    _emit(ERROR, msg, fields)


def warning(msg: str, **fields: "Any") -> None:
    _emit(WARNING, msg, fields)


def info(msg: str, **fields: "Any") -> None:
    _emit(INFO, msg, fields)


def debug(msg: str, **fields: "Any") -> None:
    _emit(DEBUG, msg, fields)


#: JSON: a message cut to this many characters fits in PIPE_BUF whatever it
#: holds (ensure_ascii writes a character outside the BMP as 12 bytes).
_JSON_CUT = (_PIPE_BUF - 256) // 12
#: Text: control characters written as escapes, so that nothing a child or an
#: orphan names itself (a comm of "x\n[pypause] ok") can start a line.
#: (C0 and C1 controls, DEL, and the Unicode line and paragraph separators.)
_ESCAPES = {c: "\\x%02x" % c for c in (*range(32), *range(127, 160))}
_ESCAPES.update(
    {ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t", 0x2028: "\\u2028", 0x2029: "\\u2029"}
)


def format_line(level: int, msg: str, fields: "dict[str, Any]") -> bytes:
    """Return one log line (bytes, newline-terminated, at most PIPE_BUF bytes).

    JSON lines are valid JSON (ASCII) and text lines valid UTF-8, whatever
    `msg` and `fields` hold: an over-long JSON line keeps a cut message and
    says "truncated"; a text line is cut between characters.
    """
    if json_format:
        import json  # only in JSON mode: json pulls in re, a start-up cost

        record = {"ts": time.time(), "level": _LEVEL_NAMES[level], "msg": msg}
        record.update(fields)
        text = json.dumps(record, default=str)
        if len(text) >= _PIPE_BUF:  # cut the message, not the JSON
            text = json.dumps(
                {
                    "ts": record["ts"],
                    "level": record["level"],
                    "msg": msg[:_JSON_CUT],
                    "truncated": True,
                }
            )
        return text.encode("ascii") + b"\n"
    text = "[pypause] %s%s%s" % (
        "" if level == INFO else _LEVEL_NAMES[level].upper() + ": ",
        msg.translate(_ESCAPES),
        "".join(" %s=%s" % (key, _text_value(value)) for key, value in fields.items()),
    )
    line = text.encode("utf-8", "replace")
    if len(line) >= _PIPE_BUF:
        line = line[: _PIPE_BUF - 1].decode("utf-8", "ignore").encode("utf-8")
    return line + b"\n"


def _text_value(value: "Any") -> str:
    """A field's value for a text line: escaped, and quoted if it holds a space."""
    text = str(value).translate(_ESCAPES)
    if not text or any(c in text for c in ' "='):
        return '"%s"' % text.replace('"', '\\"')
    return text


def _emit(level: int, msg: str, fields: "dict[str, Any]") -> None:
    if level > threshold:
        return
    try:
        if _write(format_line(level, msg, fields)):
            return
    except Exception:  # EPIPE, EBADF, a bad field: never fatal
        pass
    _count_dropped()


def _count_dropped() -> None:
    global dropped
    with _dropped_lock:  # the loop and the metrics thread both log
        dropped += 1


def _write(line: bytes) -> bool:
    """Write `line` to fd 2 if that cannot block; return False if it could not."""
    global _nowait
    if _nowait:
        try:
            os.pwritev(2, [line], -1, os.RWF_NOWAIT)
            return True
        except BlockingIOError:
            return False
        except OSError as e:
            import errno  # only on this path: loading it is a start-up cost

            if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS, errno.ESPIPE):
                raise
            _nowait = False  # a tty or a file, or an old kernel: poll from now on
    import select  # only on this path: loading it is a start-up cost

    poller = select.poll()
    poller.register(2, select.POLLOUT)
    if not any(ev & select.POLLOUT for _, ev in poller.poll(0)):
        return False
    os.write(2, line)
    return True


def usage_error(msg: str) -> None:
    """Print a one-line usage error, as every init does, without the log format."""
    try:
        sys.stderr.write("pypause: %s (see pypause --help)\n" % msg.translate(_ESCAPES))
        sys.stderr.flush()
    except (OSError, ValueError, AttributeError):
        pass

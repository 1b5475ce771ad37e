"""Log lines on stderr that can never block or kill PID 1.

The standard `logging` module is not used: it costs start-up time and its
handlers block on a full pipe. Here a line is written with one write() of at
most PIPE_BUF bytes, or dropped (and counted in `dropped`) when stderr cannot
take it right now.

fd 2 is shared with the child, so O_NONBLOCK must not be set on its open file
description (the child's writes would start failing with EAGAIN). When fd 2 is
a pipe, pypause opens a second description of the same pipe through
/proc/self/fd/2 and makes only that one non-blocking. For anything else (a tty,
a file, a socket) a zero-timeout poll() says whether a write would block.
"""

import os
import select
import stat
import sys
import time

ERROR, WARNING, INFO, DEBUG = 0, 1, 2, 3
_LEVEL_NAMES = ("error", "warning", "info", "debug")
_PIPE_BUF = select.PIPE_BUF

threshold = INFO
json_format = False
dropped = 0
_fd = None


def configure(verbosity, log_format="text"):
    """Show INFO and above, DEBUG from one -v on; pick "text" or "json" lines."""
    global threshold, json_format
    threshold = INFO + verbosity
    json_format = log_format == "json"


def error(msg, **fields):
    _emit(ERROR, msg, fields)


def warning(msg, **fields):
    _emit(WARNING, msg, fields)


def info(msg, **fields):
    _emit(INFO, msg, fields)


def debug(msg, **fields):
    _emit(DEBUG, msg, fields)


def format_line(level, msg, fields, now=None):
    """Return one log line (bytes, newline-terminated) in the configured format."""
    if json_format:
        import json  # only in JSON mode: json pulls in re, a start-up cost
        record = {"ts": time.time() if now is None else now,
                  "level": _LEVEL_NAMES[level], "msg": msg}
        record.update(fields)
        text = json.dumps(record, default=str)
    else:
        text = "[pypause] %s%s%s" % (
            "" if level == INFO else _LEVEL_NAMES[level].upper() + ": ",
            msg,
            "".join(" %s=%s" % item for item in fields.items()),
        )
    line = text.encode("utf-8", "replace")[:_PIPE_BUF - 1]
    return line + b"\n"


def _emit(level, msg, fields):
    global dropped
    if level > threshold:
        return
    try:
        line = format_line(level, msg, fields)
        fd = _writer()
        if fd == 2 and not _writable(fd):
            dropped += 1
            return
        os.write(fd, line)
    except Exception:  # EAGAIN, EPIPE, EBADF, a bad field: never fatal
        dropped += 1


def _writer():
    """Return the fd to write to, opening the non-blocking pipe twin once."""
    global _fd
    if _fd is None:
        _fd = 2
        try:
            if stat.S_ISFIFO(os.fstat(2).st_mode):
                _fd = os.open("/proc/self/fd/2",
                              os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            pass  # closed fd 2, or no /proc: poll() below guards writes
    return _fd


def _writable(fd):
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return any(ev & select.POLLOUT for _, ev in poller.poll(0))


def usage_error(msg):
    """Print a one-line usage error, as every init does, without the log format."""
    try:
        sys.stderr.write("pypause: %s (see pypause --help)\n" % msg)
        sys.stderr.flush()
    except (OSError, ValueError, AttributeError):
        pass

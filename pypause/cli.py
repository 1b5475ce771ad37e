"""The command line: `pypause [OPTIONS] [--] [COMMAND [ARG...]]`.

A small hand-written parser instead of argparse: argparse costs start-up time,
cannot stop at the first non-option argument reliably (its REMAINDER is
documented as fragile), and prints multi-line errors. Here option parsing
stops at `--` or at the first argument that is not an option, as dumb-init
and POSIX getopt do, so `pypause sh -c 'exit 4'` runs `sh -c 'exit 4'`.

Every option can also come from a PYPAUSE_* environment variable; a flag on
the command line wins over its variable (for repeatable options, the flags
replace the variable's list).
"""

from pypause import __version__, signals

#: typing-only imports without importing typing at run time (mypy: always_true).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence
    from typing import Any


class UsageError(Exception):
    """Bad command line or environment: one line for the user, exit status 2."""


class _Refused(ValueError):
    """A well-formed value that cannot work, with the reason to tell the user."""


class Config:
    """What the user asked for. (dataclasses would import inspect and re.)"""

    def __init__(
        self,
        command: list[str],
        verbosity: int = 0,
        metrics_addr: "tuple[str | None, int] | None" = None,
        pgroup: bool = False,
        rewrite: "Iterable[tuple[int, int]]" = (),
        expect_exit: "Iterable[int]" = (),
        pdeathsig: "int | None" = None,
        warn_on_reap: bool = False,
        grace_period: "float | None" = None,
        log_format: str = "text",
        user: "tuple[int, int] | None" = None,
        show: "str | None" = None,
    ) -> None:
        self.show = show  # "help" or "version": print it, run nothing
        self.command = command  # [] means pause mode
        self.verbosity = verbosity
        self.metrics_addr = metrics_addr  # (host or None for all, port), or None
        self.pgroup = pgroup  # forward to the child's process group
        self.rewrite = dict(rewrite)  # {signal: signal, or 0 to drop}
        self.expect_exit = frozenset(expect_exit)  # child codes reported as 0
        self.pdeathsig = pdeathsig  # signal asked for when our parent dies
        self.warn_on_reap = warn_on_reap
        self.grace_period = grace_period  # seconds, or None: exit at once
        self.log_format = log_format
        self.user = user  # pause mode: (uid, gid) to become; None: PAUSE_USER if root


#: What an option is. FLAG: true when given; COUNT: how many times it was
#: given (its variable holds the number); VALUE: takes a value, the last one
#: wins; LIST: takes a value, each adds to a list (its variable: a list).
FLAG, COUNT, VALUE, LIST = "flag", "count", "value", "list"


class Option:
    def __init__(
        self,
        short: "str | None",
        long: str,
        dest: str,
        kind: str,
        env: "str | None" = None,
        metavar: "str | None" = None,
        convert: "Callable[[str], Any] | None" = None,
        help: str = "",
    ) -> None:
        self.short = short
        self.long = long
        self.dest = dest
        self.kind = kind
        self.env = env
        self.metavar = metavar  # what help shows for the value of VALUE and LIST options
        self.convert = convert  # str -> value, ValueError if bad; for COUNT, the variable's
        self.help = help

    @property
    def takes_value(self) -> bool:
        return self.kind in (VALUE, LIST)


def _metrics_addr(text: str) -> "tuple[str | None, int]":
    from pypause import address  # only when asked for: see address.py

    return address.parse(text)


def _number(text: str, low: int, high: int) -> int:
    """An integer written in ASCII digits, within [low, high]."""
    if not (text.isascii() and text.isdigit()) or not low <= int(text) <= high:
        raise ValueError(text)
    return int(text)


def _verbosity(text: str) -> int:
    return _number(text, 0, 99)


def _rewrite(text: str) -> tuple[int, int]:
    """`FROM:TO` signals; TO may be 0 to drop FROM. A rule for a signal that
    pypause never forwards could never fire: refused."""
    source, sep, target = text.partition(":")
    if not sep:
        raise ValueError(text)
    signum = signals.parse(source)
    why = signals.never_forwarded(signum)
    if why:
        raise _Refused("pypause never forwards %s: %s" % (signals.name(signum), why))
    return signum, 0 if target.strip() == "0" else signals.parse(target)


def _exit_code(text: str) -> int:
    return _number(text.strip(), 0, 255)


#: Who pause mode becomes when started as root: the Kubernetes pause image's user.
PAUSE_USER = (65535, 65535)
#: The highest uid and gid: (uid_t)-1 means "unchanged" to the kernel.
_MAX_ID = 2**32 - 2


def _user(text: str) -> tuple[int, int]:
    """`UID[:GID]` (GID defaults to UID) or `root`: (0, 0), which keeps root.

    Numbers only: the pause image has no user database to look names up in.
    """
    if text == "root":
        return 0, 0
    uid_text, sep, gid_text = text.partition(":")
    uid = _number(uid_text, 0, _MAX_ID)
    gid = _number(gid_text, 0, _MAX_ID) if sep else uid
    if uid == 0 and gid != 0:
        raise _Refused("uid 0 keeps root and its groups; a group needs another uid")
    return uid, gid


def _seconds(text: str) -> float:
    value = float(text)
    if not 0 <= value < 1e9:  # also rejects nan and inf
        raise ValueError(text)
    return value


def _log_format(text: str) -> str:
    if text not in ("text", "json"):
        raise ValueError(text)
    return text


def _boolean(text: str) -> bool:
    """For variables of flags: 1/true/yes or 0/false/no."""
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(text)


OPTIONS = [
    Option("h", "help", "help", FLAG, help="show this help and exit"),
    Option("V", "version", "version", FLAG, help="print the version and exit"),
    Option(
        "v",
        "verbose",
        "verbosity",
        COUNT,
        env="PYPAUSE_VERBOSITY",
        convert=_verbosity,
        help="log more; repeat for more detail (variable: a number)",
    ),
    Option(
        "s",
        "subreaper",
        "subreaper",
        FLAG,
        env="PYPAUSE_SUBREAPER",
        help="accepted for tini compatibility: pypause becomes a child "
        "subreaper by itself whenever it is not PID 1",
    ),
    Option(
        "g",
        "pgroup",
        "pgroup",
        FLAG,
        env="PYPAUSE_PGROUP",
        help="forward signals to the child's whole process group",
    ),
    Option(
        "r",
        "rewrite",
        "rewrite",
        LIST,
        env="PYPAUSE_REWRITE",
        metavar="SIG:SIG",
        convert=_rewrite,
        help="forward the second signal when the first arrives; 0 drops it "
        "(repeatable; names or numbers)",
    ),
    Option(
        "e",
        "expect-exit",
        "expect_exit",
        LIST,
        env="PYPAUSE_EXPECT_EXIT",
        metavar="CODE",
        convert=_exit_code,
        help="report this exit code of the child as 0 (repeatable)",
    ),
    Option(
        "p",
        "pdeathsig",
        "pdeathsig",
        VALUE,
        env="PYPAUSE_PDEATHSIG",
        metavar="SIG",
        convert=signals.parse,
        help="ask the kernel for SIG when pypause's parent dies",
    ),
    Option(
        "w",
        "warn-on-reap",
        "warn_on_reap",
        FLAG,
        env="PYPAUSE_WARN_ON_REAP",
        help="log a warning for each orphan reaped",
    ),
    Option(
        None,
        "grace-period",
        "grace_period",
        VALUE,
        env="PYPAUSE_GRACE_PERIOD",
        metavar="SECONDS",
        convert=_seconds,
        help="when the child exits, SIGTERM the rest, wait at most SECONDS, "
        "SIGKILL what is left, then exit",
    ),
    Option(
        None,
        "log-format",
        "log_format",
        VALUE,
        env="PYPAUSE_LOG_FORMAT",
        metavar="text|json",
        convert=_log_format,
        help="log lines as text (default) or JSON",
    ),
    Option(
        None,
        "user",
        "user",
        VALUE,
        env="PYPAUSE_USER",
        metavar="UID[:GID]",
        convert=_user,
        help="pause mode: the user to become once the metrics port is bound "
        "(default 65535:65535 when started as root; root: stay root)",
    ),
    Option(
        None,
        "metrics-addr",
        "metrics_addr",
        VALUE,
        env="PYPAUSE_METRICS_ADDR",
        metavar="[HOST:]PORT",
        convert=_metrics_addr,
        help="serve Prometheus metrics on /metrics (PORT alone: every interface, IPv6 and IPv4)",
    ),
]
_BY_SHORT = {o.short: o for o in OPTIONS if o.short}
_BY_LONG = {o.long: o for o in OPTIONS}


def help_text() -> str:
    lines = [
        "usage: pypause [OPTIONS] [--] [COMMAND [ARG...]]",
        "",
        "Without COMMAND, pause mode: a pod sandbox that reaps orphans and exits 0",
        "on SIGTERM or SIGINT. With COMMAND, init mode: run it, forward signals to",
        "it, reap orphans, and exit with its status.",
        "",
        "options (each also read from the variable named; a flag wins):",
    ]
    for o in OPTIONS:
        flag = ("-%s, " % o.short if o.short else "    ") + "--" + o.long
        if o.takes_value:
            flag += " " + o.metavar  # type: ignore[operator]  # set for every VALUE and LIST
        lines.append("  %-30s %s" % (flag, o.help))
        if o.env:
            lines.append("  %-30s   variable: %s%s" % ("", o.env, "=1" if o.kind == FLAG else ""))
    return "\n".join(lines) + "\n"


def _convert(convert: "Callable[[str], Any]", raw: str, source: str) -> "Any":
    try:
        return convert(raw)
    except _Refused as e:
        raise UsageError("invalid value for %s: %r (%s)" % (source, raw, e)) from None
    except ValueError:
        raise UsageError("invalid value for %s: %r" % (source, raw)) from None


def _from_flags(argv: "Sequence[str]") -> "tuple[dict[str, Any], int]":
    """Parse the options in `argv`: ({dest: value}, index of COMMAND)."""
    values: dict[str, Any] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            return values, i + 1
        if arg.startswith("--"):
            i = _long_option(argv, i, values)
        elif arg.startswith("-") and arg != "-":
            i = _short_options(argv, i, values)
        else:
            return values, i
    return values, i


def _long_option(argv: "Sequence[str]", i: int, values: "dict[str, Any]") -> int:
    """Take the --option (=value, or value as the next argument) at argv[i];
    return the index after it."""
    key, eq, raw = argv[i][2:].partition("=")
    i += 1
    option = _BY_LONG.get(key)
    if option is None:
        raise UsageError("unknown option %r" % ("--" + key))
    if not option.takes_value and eq:
        raise UsageError("option %r takes no value" % ("--" + key))
    if option.takes_value and not eq:
        if i == len(argv):
            raise UsageError("option --%s needs a value" % key)
        raw, i = argv[i], i + 1
    _take(values, option, raw, "--" + key)
    return i


def _short_options(argv: "Sequence[str]", i: int, values: "dict[str, Any]") -> int:
    """Take the cluster of one-letter options at argv[i] (`-gv`, `-e143`, `-e 143`);
    return the index after it (and after its value, if that is the next argument)."""
    cluster = argv[i][1:]
    i += 1
    while cluster:
        letter, cluster = cluster[0], cluster[1:]
        option = _BY_SHORT.get(letter)
        if option is None:
            raise UsageError("unknown option %r" % ("-" + letter))
        raw = None
        if option.takes_value:  # the value is the rest of the cluster, or the next arg
            raw, cluster = cluster, ""
            if not raw:
                if i == len(argv):
                    raise UsageError("option -%s needs a value" % letter)
                raw, i = argv[i], i + 1
        _take(values, option, raw, "-" + letter)
    return i


def _take(values: "dict[str, Any]", option: Option, raw: "str | None", source: str) -> None:
    """Record `option`, given as `source` with the value `raw`, in `values`.

    The type: ignores: every option that takes a value has a convert
    (OPTIONS), and gets a raw value (the callers above).
    """
    if option.kind == FLAG:
        values[option.dest] = True
    elif option.kind == COUNT:
        values[option.dest] = values.get(option.dest, 0) + 1
    elif option.kind == LIST:
        values.setdefault(option.dest, []).append(
            _convert(option.convert, raw, source)  # type: ignore[arg-type]
        )
    else:
        values[option.dest] = _convert(option.convert, raw, source)  # type: ignore[arg-type]


def _from_environment(environ: "Mapping[str, str]") -> "dict[str, Any]":
    values: dict[str, Any] = {}
    for option in OPTIONS:
        raw = environ.get(option.env) if option.env else None
        if not raw:  # unset or empty: as if not given
            continue
        convert = _boolean if option.kind == FLAG else option.convert
        # The type: ignores: option.env is set (raw was read from it), and every
        # option with a variable that is not a FLAG has a convert (OPTIONS).
        if option.kind == LIST:
            values[option.dest] = [
                _convert(convert, item, option.env)  # type: ignore[arg-type]
                for item in raw.replace(",", " ").split()
            ]
        else:
            values[option.dest] = _convert(convert, raw, option.env)  # type: ignore[arg-type]
    return values


def parse(argv: "Sequence[str]", environ: "Mapping[str, str]") -> Config:
    """Parse `argv` (without the program name) and the PYPAUSE_* variables into
    a Config; with -h or -V, one whose `show` says which (and nothing else is
    read). Raise UsageError for anything malformed.
    """
    flags, command_at = _from_flags(argv)
    for shown in ("help", "version"):  # help first, wherever each stands
        if flags.pop(shown, False):
            return Config([], show=shown)
    values = _from_environment(environ)
    values.update(flags)
    values.pop("subreaper", None)  # automatic; see Option "subreaper"
    command = list(argv[command_at:])
    if command and "user" in values:
        raise UsageError(
            "--user (PYPAUSE_USER) is for pause mode: in init mode the app runs as the "
            "user pypause was started as"
        )
    return Config(command=command, **values)


def version_text() -> str:
    return "pypause %s\n" % __version__

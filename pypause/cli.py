"""The command line: `pypause [OPTIONS] [--] [COMMAND [ARG...]]`.

A small hand-written parser instead of argparse: argparse costs start-up time,
cannot stop at the first non-option argument reliably (its REMAINDER is
documented as fragile), and prints multi-line errors. Here option parsing
stops at `--` or at the first argument that is not an option, as dumb-init
and POSIX getopt do, so `pypause sh -c 'exit 4'` runs `sh -c 'exit 4'`.

Every option can also come from a PYPAUSE_* environment variable; a flag on
the command line wins over its variable.
"""

from pypause import __version__


class UsageError(Exception):
    """Bad command line or environment: one line for the user, exit status 2."""


class Config:
    """What the user asked for. (dataclasses would import inspect and re.)"""

    def __init__(self, command, verbosity=0, metrics_addr=None):
        self.command = command            # [] means pause mode
        self.verbosity = verbosity
        self.metrics_addr = metrics_addr  # (host, port) or None


class Option:
    def __init__(self, short, long, dest, env=None, metavar=None, convert=None, help=""):
        self.short = short
        self.long = long
        self.dest = dest
        self.env = env
        self.metavar = metavar  # None: a flag without a value
        self.convert = convert  # None: a flag; else str -> value, ValueError if bad
        self.help = help


def parse_metrics_addr(text):
    """Parse `[HOST:]PORT` into (host, port); a bare PORT binds all interfaces."""
    if text.startswith("["):  # IPv6: [::]:PORT
        host, sep, port = text[1:].partition("]:")
        if not sep or not host:
            raise ValueError(text)
    else:
        host, sep, port = text.rpartition(":")
        if not sep:
            host = "0.0.0.0"
        elif not host or ":" in host:
            raise ValueError(text)
    if not port.isascii() or not port.isdigit() or int(port) > 65535:
        raise ValueError(text)
    return host, int(port)


def _verbosity(text):
    value = int(text)
    if value < 0:
        raise ValueError(text)
    return value


OPTIONS = [
    Option("h", "help", "help", help="show this help and exit"),
    Option("V", "version", "version", help="print the version and exit"),
    Option("v", "verbose", "verbosity", env="PYPAUSE_VERBOSITY", convert=_verbosity,
           help="log more; repeat for more detail (variable: a number)"),
    Option("s", "subreaper", "subreaper",
           help="accepted for tini compatibility: pypause becomes a child "
                "subreaper by itself whenever it is not PID 1"),
    Option(None, "metrics-addr", "metrics_addr", env="PYPAUSE_METRICS_ADDR",
           metavar="[HOST:]PORT", convert=parse_metrics_addr,
           help="serve Prometheus metrics on /metrics (PORT alone: all interfaces)"),
]
_BY_SHORT = {o.short: o for o in OPTIONS if o.short}
_BY_LONG = {o.long: o for o in OPTIONS}


def help_text():
    lines = [
        "usage: pypause [OPTIONS] [--] [COMMAND [ARG...]]",
        "",
        "Without COMMAND, pause mode: a pod sandbox that reaps orphans and exits 0",
        "on SIGTERM or SIGINT. With COMMAND, init mode: run it, forward signals to",
        "it, reap orphans, and exit with its status.",
        "",
        "options:",
    ]
    for o in OPTIONS:
        flag = ("-%s, " % o.short if o.short else "    ") + "--" + o.long
        if o.metavar:
            flag += " " + o.metavar
        lines.append("  %-28s %s" % (flag, o.help))
        if o.env:
            lines.append("  %-28s   (or %s)" % ("", o.env))
    return "\n".join(lines) + "\n"


def _set(values, option, raw, source):
    if option.convert is None:
        values[option.dest] = True
        return
    try:
        values[option.dest] = option.convert(raw)
    except ValueError:
        raise UsageError("invalid value for %s: %r" % (source, raw)) from None


def parse(argv, environ):
    """Parse `argv` (without the program name) and the PYPAUSE_* variables.

    Return a Config, or the string "help" or "version" when one of those was
    asked for. Raise UsageError for anything malformed.
    """
    from_flags = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--":
            break
        if arg.startswith("--"):
            key, eq, raw = arg[2:].partition("=")
            option = _BY_LONG.get(key)
            if option is None:
                raise UsageError("unknown option --%s" % key)
            if option.metavar is None:
                if eq:
                    raise UsageError("option --%s takes no value" % key)
                _count_or_set(from_flags, option)
                continue
            if not eq:
                if i == len(argv):
                    raise UsageError("option --%s needs a value" % key)
                raw = argv[i]
                i += 1
            _set(from_flags, option, raw, "--" + key)
        elif arg.startswith("-") and arg != "-":
            cluster = arg[1:]
            while cluster:
                letter, cluster = cluster[0], cluster[1:]
                option = _BY_SHORT.get(letter)
                if option is None:
                    raise UsageError("unknown option -%s" % letter)
                if option.metavar is None:
                    _count_or_set(from_flags, option)
                    continue
                raw = cluster
                if not raw:
                    if i == len(argv):
                        raise UsageError("option -%s needs a value" % letter)
                    raw = argv[i]
                    i += 1
                _set(from_flags, option, raw, "-" + letter)
                cluster = ""
        else:
            i -= 1
            break
    if from_flags.get("help"):
        return "help"
    if from_flags.get("version"):
        return "version"

    values = {}
    for option in OPTIONS:
        raw = environ.get(option.env) if option.env else None
        if raw:
            _set(values, option, raw, option.env)
    values.update(from_flags)
    values.pop("subreaper", None)
    return Config(command=list(argv[i:]), **values)


def _count_or_set(values, option):
    if option.dest == "verbosity":
        values["verbosity"] = values.get("verbosity", 0) + 1
    else:
        values[option.dest] = True


def version_text():
    return "pypause %s\n" % __version__

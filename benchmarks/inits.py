"""The inits under test: how to find them and how to start them in each mode.

Modes (a mode an init lacks is None and shows as "—" in the table):
- init mode: `INIT -- CMD...`, run CMD, forward signals, reap, exit with CMD;
- pause mode: no command, sleep and reap until SIGTERM/SIGINT;
- metrics mode: pause mode serving Prometheus metrics (pypause only; the
  Python floor's counterpart only imports prometheus_client, the least
  serving metrics from Python can cost).
"""

import os
import shutil
import subprocess
import sys

# The Python floor: the least any pure-Python init can do and cost. It
# blocks every catchable signal, spawns the command (if any) with a clean
# signal state, then sleeps in sigwaitinfo(): SIGCHLD drains every exited
# child, any other signal goes to the child (or ends pause mode). `S` is the
# C module `_signal`, which the interpreter has loaded before any code runs:
# the floor imports nothing that `python -I` (with site) has not already
# imported. Like pypause it ends with os._exit, skipping finalization. Run
# with -I: no environment variables, no user site, no current directory in path.
FLOOR = """\
import os, sys
ALL = S.valid_signals() - {S.SIGKILL, S.SIGSTOP}
S.pthread_sigmask(S.SIG_BLOCK, ALL)
cmd = sys.argv[1:]
child = cmd and os.posix_spawnp(cmd[0], cmd, os.environ, setsigmask=(),
                                setsigdef=(S.SIGPIPE, S.SIGXFSZ, S.SIGINT))
while True:
    signo = S.sigwaitinfo(ALL).si_signo
    if signo == S.SIGCHLD:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            if pid == child:
                code = os.waitstatus_to_exitcode(status)
                os._exit(code if code >= 0 else 128 - code)
    elif child:
        os.kill(child, signo)
    elif signo in (S.SIGTERM, S.SIGINT):
        os._exit(0)
"""

FLOOR_NAME = "python floor"
# The same floor with `import signal as S`: the floor these benchmarks used
# before (then ending with sys.exit). `signal` imports enum, functools,
# collections and more, which no init needs: the difference between the two
# columns is what they cost.
SIGNAL_FLOOR_NAME = "floor + import signal"
METRICS_ADDR = "127.0.0.1:0"  # port 0: the kernel picks a free port; procfs finds it


class Init:
    def __init__(self, name, init_argv, pause_argv=None, metrics_argv=None, version=""):
        self.name = name
        self._init_argv = init_argv
        self.pause_argv = pause_argv  # list or None
        self.metrics_argv = metrics_argv  # list or None
        self.version = version

    def init_argv(self, command):
        return self._init_argv(list(command))


def default_pypause():
    """The installed pypause command next to the running interpreter (not a pyenv shim)."""
    return os.path.join(os.path.dirname(sys.executable), "pypause")


def clean_environment(directory, script):
    """A fresh venv holding pypause as a plain `pip install` would.

    Return (python, script, the directory pypause's code was copied from).

    Any interpreter start runs the .pth files of its site-packages, and a
    development machine has some that a container image does not (an
    editable install's import hook, a CA-bundle patch): they would weigh on
    pypause and the Python floor alike and hide pypause's own cost. Here
    pypause's package is copied into the venv and byte-compiled, as pip
    does; its dependencies are reached through a .pth of plain directory
    lines, which runs nothing; and `script` is the installed `pypause` command
    (bin/pypause), copied with its #! pointed at the venv.
    """
    import importlib.util
    import shutil
    import venv

    venv.EnvBuilder(with_pip=False, symlinks=True).create(directory)
    python = os.path.join(directory, "bin", "python")
    site_packages = subprocess.run(
        [python, "-I", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    source = os.path.dirname(importlib.util.find_spec("pypause").origin)
    shutil.copytree(
        source, os.path.join(site_packages, "pypause"), ignore=shutil.ignore_patterns("__pycache__")
    )
    subprocess.run([python, "-I", "-m", "compileall", "-q", site_packages], check=True)
    paths = []
    for name in ("setproctitle", "prometheus_client"):
        spec = importlib.util.find_spec(name)
        if spec and spec.submodule_search_locations:
            parent = os.path.dirname(list(spec.submodule_search_locations)[0])
            if parent not in paths:
                paths.append(parent)
    with open(os.path.join(site_packages, "benchmark-paths.pth"), "w") as f:
        f.write("".join(p + "\n" for p in paths))
    with open(script) as f:
        wrapper = f.read().split("\n", 1)[1]
    clean_script = os.path.join(directory, "bin", "pypause")
    with open(clean_script, "w") as f:
        f.write("#!%s\n%s" % (python, wrapper))
    os.chmod(clean_script, 0o755)
    return python, clean_script, source


def interpreter_of(script):
    """The interpreter named in `script`'s #! line: the Python floor must run on it."""
    try:
        with open(script, "rb") as f:
            first = f.readline()
    except OSError:
        return None
    if first.startswith(b"#!"):
        parts = first[2:].split()
        if parts and os.access(parts[0], os.X_OK):
            return parts[0].decode()
    return None


def _version(argv):
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    text = (done.stdout or done.stderr).strip()
    return text.splitlines()[0] if text else "?"


def pypause(script):
    addr = ["--metrics-addr", METRICS_ADDR]
    return Init(
        "pypause",
        lambda cmd: [script, "--"] + cmd,
        pause_argv=[script],
        metrics_argv=[script] + addr,
        version=_version([script, "--version"]),
    )


def pypause_metrics_init_argv(script, command):
    return [script, "--metrics-addr", METRICS_ADDR, "--"] + list(command)


def _floor(name, python, code, metrics=False):
    return Init(
        name,
        lambda cmd: [python, "-I", "-c", code] + cmd,
        pause_argv=[python, "-I", "-c", code],
        metrics_argv=[python, "-I", "-c", "import prometheus_client\n" + code] if metrics else None,
        version=_version([python, "-VV"]),
    )


def python_floors(python):
    """The Python floor, and the same floor importing `signal` (no metrics mode)."""
    return [
        _floor(FLOOR_NAME, python, "import _signal as S\n" + FLOOR, metrics=True),
        _floor(SIGNAL_FLOOR_NAME, python, "import signal as S\n" + FLOOR),
    ]


# (name, how to start init mode, pause-mode flags or None)
_PEERS = [
    ("tini", lambda exe, cmd: [exe, "--"] + cmd, None),
    ("dumb-init", lambda exe, cmd: [exe, "--"] + cmd, None),
    ("catatonit", lambda exe, cmd: [exe, "--"] + cmd, ["-P"]),
]
INSTALL_HINT = "apt-get install tini dumb-init catatonit  (Debian/Ubuntu packages)"


def peers(skip=()):
    """The C inits found on PATH (or /usr/bin), and a note for each one missing."""
    found, notes = [], []
    for name, argv, pause_flags in _PEERS:
        if name in skip:
            continue
        exe = shutil.which(name) or shutil.which(name, path="/usr/bin:/usr/sbin")
        if exe is None:
            notes.append("%s not found, skipped; install with: %s" % (name, INSTALL_HINT))
            continue
        found.append(
            Init(
                name,
                lambda cmd, exe=exe, argv=argv: argv(exe, cmd),
                pause_argv=[exe] + pause_flags if pause_flags else None,
                version=_version([exe, "--version"]),
            )
        )
    return found, notes

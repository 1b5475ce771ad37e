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

from benchmarks import pidns

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
# The floor run with -I -S: no site at all, as the pause image runs pypause.
# Without site, `os` is not loaded at start-up (site imports it), so this
# floor reaches the same functions through `posix`, the C module behind os,
# which is: it too imports nothing its interpreter has not already imported.
# (`import os` would add os, stat, posixpath and _collections_abc, about
# 1.5 ms on a 2-core EPYC: a cost that pypause, which imports os, pays there.)
NO_SITE_FLOOR_NAME = "python floor -IS"
NO_SITE_FLOOR = FLOOR.replace("import os, sys\n", "import posix as os, sys\n", 1)
if NO_SITE_FLOOR == FLOOR:
    raise ImportError("FLOOR no longer starts with `import os, sys`: update NO_SITE_FLOOR")
METRICS_ADDR = "127.0.0.1:0"  # port 0: the kernel picks a free port; /proc tells which

PYPAUSE_NAME = "pypause"  # pip's command (its #! line, no flags), the environment PATH alone
# The same command with one harmless PYTHON* variable set, as in an app image
# that sets any: pypause re-executes itself as `python3 -I -S` (bin/pypause).
APP_ENV_NAME = "pypause, PYTHON* set"
APP_VARIABLE = ("PYTHONUNBUFFERED", "1")
# pypause as the pause image launches it: `#!PYTHON -IS`, no site at all.
NO_SITE_NAME = "pypause -IS"
# What pip puts in the venv or the image, and what the copies below copy.
PACKAGES = ("pypause", "setproctitle", "prometheus_client")


class Init:
    """An init and how to start it in each mode.

    `env` is its whole environment (None: pidns.ENV, PATH alone). A `variant`
    is another way of launching an init measured already (pypause, PYTHON*
    set; pypause -IS; the floor -IS): the run measures its start-up and its
    memory, not the figures of the loop that every launch runs alike.
    """

    def __init__(
        self,
        name,
        init_argv,
        pause_argv=None,
        metrics_argv=None,
        version="",
        env=None,
        variant=False,
        serves_metrics=False,
    ):
        self.name = name
        self._init_argv = init_argv
        self.pause_argv = pause_argv  # list or None
        self.metrics_argv = metrics_argv  # list or None
        self.version = version
        self.env = env
        self.variant = variant
        self.serves_metrics = serves_metrics  # its metrics mode listens on a port

    def init_argv(self, command):
        return self._init_argv(list(command))


def default_pypause():
    """The installed pypause command next to the running interpreter (not a pyenv shim)."""
    return os.path.join(os.path.dirname(sys.executable), "pypause")


def _script_body(script):
    """The installed command without its #! line."""
    with open(script) as f:
        return f.read().split("\n", 1)[1]


def _copy_package(name, destination):
    """Copy the installed package (or module) `name` into `destination`, without
    its byte code; False if it is not installed."""
    import importlib.util

    spec = importlib.util.find_spec(name)
    if spec is None:
        return False
    if spec.submodule_search_locations:
        source = list(spec.submodule_search_locations)[0]
        shutil.copytree(
            source,
            os.path.join(destination, os.path.basename(source)),
            ignore=shutil.ignore_patterns("__pycache__"),
        )
    else:
        shutil.copy2(spec.origin, destination)
    return True


def clean_environment(directory, script):
    """A fresh venv holding pypause as a plain `pip install` would.

    Return (python, script, the directory pypause's code was copied from,
    the venv's site-packages).

    Any interpreter start runs the .pth files of its site-packages, and a
    development machine has some that a container image does not (an
    editable install's import hook, a CA-bundle patch): they would weigh on
    pypause and the Python floor alike and hide pypause's own cost. Here
    pypause's package and its two dependencies are copied into the venv and
    byte-compiled, as pip does (no .pth: the interpreter pypause re-executes
    as `-I -S` reads none, and would not find what one added), and `script`
    is the installed `pypause` command (bin/pypause), copied with its #!
    pointed at the venv.
    """
    import importlib.util
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
    for name in PACKAGES:
        _copy_package(name, site_packages)
    subprocess.run([python, "-I", "-m", "compileall", "-q", site_packages], check=True)
    clean_script = os.path.join(directory, "bin", "pypause")
    with open(clean_script, "w") as f:
        f.write("#!%s\n%s" % (python, _script_body(script)))
    os.chmod(clean_script, 0o755)
    return python, clean_script, source, site_packages


_LAYOUT = """\
import site, sys, sysconfig
print(sys.base_prefix, sys.base_exec_prefix, sys.prefix, sep="\\n")
print(sysconfig.get_path("stdlib"), sysconfig.get_path("platstdlib"), sep="\\n")
print(sysconfig.get_path("purelib"), *site.getsitepackages(), sep="\\n")
"""


def _layout(python):
    """(base prefix, base exec prefix, prefix, stdlib, platstdlib, purelib, [site dirs])
    of `python` run with -I -S."""
    lines = subprocess.run(
        [python, "-I", "-S", "-c", _LAYOUT], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    return tuple(lines[:6]) + (lines[6:],)


def image_environment(directory, python, site_packages, script):
    """The pause image's interpreter in miniature, as the image runs pypause.

    Return (python, script, how the interpreter got there).

    The image holds Python in a prefix of its own, not a venv, pypause and
    its dependencies in that Python's site-packages, and the `pypause`
    command with the line `#!PYTHON -IS`: started without site, pypause finds
    its site-packages with site.getsitepackages(), which names the prefix's.
    (In a venv it would name the base interpreter's: site.py makes sys.prefix
    the venv's, and -S skips site.py.) So here: the same interpreter file
    (`python` resolved: a hard link to it, a copy where no link can be made)
    in `directory`/bin, the directories of its standard library made of links
    to each entry of the real ones except site-packages and dist-packages, so
    that the interpreter's own search makes `directory` its prefix; then
    what `site_packages` (the clean venv's) holds of PACKAGES, copied with its
    byte code, and the command written with that line. Raise RuntimeError if
    the interpreter does not take `directory` as its prefix.
    """
    real = os.path.realpath(python)
    base, base_exec, _, stdlib, platstdlib, _, _ = _layout(real)
    for prefix, library in ((base, stdlib), (base_exec, platstdlib)):
        relative = os.path.relpath(library, prefix)
        target = os.path.join(directory, relative)
        if relative.startswith(os.pardir) or os.path.isdir(target):
            continue
        os.makedirs(target)
        for entry in os.listdir(library):
            if entry not in ("site-packages", "dist-packages"):
                os.symlink(os.path.join(library, entry), os.path.join(target, entry))
    os.makedirs(os.path.join(directory, "bin"), exist_ok=True)
    image_python = os.path.join(directory, "bin", os.path.basename(real))
    try:
        os.link(real, image_python)
        how = "a hard link to %s" % real
    except OSError:  # another file system, or links to others' files refused
        shutil.copy2(real, image_python)
        how = "a copy of %s" % real
    _, _, prefix, _, _, purelib, site_dirs = _layout(image_python)
    inside = os.path.realpath(directory) + os.sep
    if (
        os.path.realpath(prefix) != os.path.realpath(directory)
        or purelib not in site_dirs
        or not os.path.realpath(purelib).startswith(inside)
    ):
        raise RuntimeError(
            "%s did not take %s as its prefix (prefix %s, purelib %s, site dirs %s)"
            % (image_python, directory, prefix, purelib, site_dirs)
        )
    os.makedirs(purelib, exist_ok=True)
    for entry in os.listdir(site_packages):
        if entry in PACKAGES or entry.split(".", 1)[0] in PACKAGES:
            source = os.path.join(site_packages, entry)
            if os.path.isdir(source):
                shutil.copytree(source, os.path.join(purelib, entry))
            else:
                shutil.copy2(source, purelib)
    image_script = os.path.join(directory, "bin", "pypause")
    with open(image_script, "w") as f:
        f.write("#!%s -IS\n%s" % (image_python, _script_body(script)))
    os.chmod(image_script, 0o755)
    return image_python, image_script, how


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


def _version(argv, env=None):
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, env=env)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    text = (done.stdout or done.stderr).strip()
    return text.splitlines()[0] if text else "?"


def pypause(script, name=PYPAUSE_NAME, launcher=(), env=None, variant=False):
    """pypause started as `launcher + [script]` (launcher: an interpreter and its flags)."""
    command = list(launcher) + [script]
    addr = ["--metrics-addr", METRICS_ADDR]
    return Init(
        name,
        lambda cmd: command + ["--"] + cmd,
        pause_argv=command,
        metrics_argv=command + addr,
        version=_version(command + ["--version"], env),
        env=env,
        variant=variant,
        serves_metrics=True,
    )


def pypause_app_environment(script):
    """pip's command with one PYTHON* variable set: it pays a re-exec as `python3 -I -S`."""
    env = dict(pidns.ENV)
    env[APP_VARIABLE[0]] = APP_VARIABLE[1]
    return pypause(script, APP_ENV_NAME, env=env, variant=True)


def pypause_no_site(script, python=None):
    """pypause as the pause image starts it: `script`, whose #! line says `PYTHON -IS`,
    or with `python`, `python -IS script`."""
    return pypause(script, NO_SITE_NAME, launcher=[python, "-IS"] if python else (), variant=True)


def pypause_metrics_init_argv(script, command):
    return [script, "--metrics-addr", METRICS_ADDR, "--"] + list(command)


def launch_failure(init):
    """None if `INIT -- true` exits 0 (run here, not as PID 1), else why not."""
    argv = init.init_argv(["true"])
    env = pidns.ENV if init.env is None else init.env
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, env=env)
    except (OSError, subprocess.TimeoutExpired) as e:
        return "`%s` failed: %s" % (" ".join(argv), e)
    if done.returncode == 0:
        return None
    said = done.stderr.strip().splitlines()
    return "`%s` exited %d%s" % (
        " ".join(argv),
        done.returncode,
        (": " + said[-1]) if said else "",
    )


def _floor(name, python, code, flags=("-I",), metrics=False, variant=False):
    argv = [python] + list(flags) + ["-c"]
    return Init(
        name,
        lambda cmd: argv + [code] + cmd,
        pause_argv=argv + [code],
        metrics_argv=argv + ["import prometheus_client\n" + code] if metrics else None,
        version=_version([python, "-VV"]),
        variant=variant,
    )


def python_floors(python):
    """The Python floor, and the same floor importing `signal` (no metrics mode)."""
    return [
        _floor(FLOOR_NAME, python, "import _signal as S\n" + FLOOR, metrics=True),
        _floor(SIGNAL_FLOOR_NAME, python, "import signal as S\n" + FLOOR),
    ]


def no_site_floor(python):
    """The Python floor run with -I -S, as the pause image runs pypause, `posix` in
    place of `os` (no metrics mode: without site, prometheus_client is not on the path)."""
    return _floor(
        NO_SITE_FLOOR_NAME,
        python,
        "import _signal as S\n" + NO_SITE_FLOOR,
        ("-I", "-S"),
        variant=True,
    )


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

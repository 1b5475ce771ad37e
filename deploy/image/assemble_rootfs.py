"""Assemble the pause image's two layers from the build stage's own Python.

The Dockerfile's build stage runs this with the base image's interpreter:

    python3 -I assemble_rootfs.py WHEELS OUT

and the final stage copies each tree onto `scratch` as one layer:

    OUT/runtime   the interpreter, the modules of its standard library that
                  pypause can import (imported_stdlib()), and every shared
                  library they load, at the paths they have in the base image
                  (so /usr/local for the official python images, /usr for
                  Debian's python3: both come from the running interpreter,
                  nothing is hard-coded);
    OUT/pypause   pypause and its dependencies installed from the wheels in
                  WHEELS by the pip wheel found there, the `pypause` command in
                  /usr/local/bin, and /pause (CRI-O runs /pause whatever the
                  image's ENTRYPOINT says).

Everything is compiled to bytecode here: a pod sandbox runs on a read-only root
filesystem, where Python cannot cache what it compiles, and pypause with
prometheus-client then starts ~600 ms slower. The .pyc files are
"unchecked-hash" ones: used without comparing them with the source, so no copy
that changes file times (COPY, image export) can make Python ignore them.
"""

import compileall
import glob
import modulefinder
import os
import py_compile
import shutil
import site
import struct
import subprocess
import sys
import sysconfig

# Packages whose __init__ pypause never runs: it loads their submodules
# directly (pypause/promclient.py, pypause/title.py), so what the __init__
# imports is not pypause's to carry.
UNRUN_PACKAGES = {"prometheus_client", "setproctitle"}
CO_OPTIMIZED = 0x1  # a function's code object (inspect.CO_OPTIMIZED)


class _Finder(modulefinder.ModuleFinder):
    """modulefinder, told how pypause imports.

    Everything pypause and its dependencies' modules import is followed, in
    functions too (every path: metrics, the grace period, JSON logs, usage
    errors, exec failures). In the standard library only what a module
    imports when it is imported: a function's own imports run only when it is
    called, and followed blindly they would reach most of the library (site's
    help() alone reaches pydoc, http and email). What pypause calls in the
    standard library that imports more is found by the image test that runs
    every path inside the image and fails on any module it lacks.
    """

    def __init__(self, path, stdlib):
        super().__init__(path=path)
        self.stdlib = stdlib + os.sep

    def load_package(self, fqname, pathname):
        if fqname in UNRUN_PACKAGES:
            package = self.add_module(fqname)
            package.__file__, package.__path__ = pathname, [pathname]
            return package
        return super().load_package(fqname, pathname)

    def scan_code(self, co, m):
        if co.co_flags & CO_OPTIMIZED and (m.__file__ or "").startswith(self.stdlib):
            return
        super().scan_code(co, m)


def imported_stdlib(command, site_dir):
    """The files of the standard library that pypause can import: what the
    command script and every module of pypause import (modulefinder, above),
    what the interpreter imports before any of it (with -I -S), and the
    `encodings` package whole (codecs are looked up by name at run time:
    getaddrinfo() encodes a host name with the idna codec)."""
    stdlib = sysconfig.get_path("stdlib")
    dynload = os.path.join(stdlib, "lib-dynload")
    finder = _Finder([site_dir, stdlib, dynload], stdlib)
    finder.run_script(command)
    own = os.path.join(site_dir, "pypause")
    for name in sorted(os.listdir(own)):
        if name.endswith(".py"):
            finder.import_hook("pypause." + name[:-3])
    started = subprocess.run([sys.executable, "-I", "-S", "-c",
                              "import sys; print(' '.join(sys.modules))"],
                             check=True, capture_output=True, text=True).stdout.split()
    for name in started:
        try:
            finder.import_hook(name)
        except ImportError:  # built in or frozen, with no file
            pass
    for name in sorted(os.listdir(os.path.join(stdlib, "encodings"))):
        if name.endswith(".py"):  # with what each codec imports (idna: stringprep)
            finder.import_hook("encodings." + name[:-3])
    files = {m.__file__ for m in finder.modules.values()
             if m.__file__ and m.__file__.startswith(stdlib + os.sep)}
    return stdlib, sorted(f for f in files if os.path.isfile(f))


def copy_path(path, root):
    """Copy `path` into the tree `root` as it is seen in this filesystem.

    Every symbolic link met on the way (python3 -> python3.11, /lib64 ->
    usr/lib64 on a merged-/usr system) is recreated as a link and its target
    copied too, so the path resolves the same way in the image.
    """
    parts = path.strip("/").split("/")
    for i in range(1, len(parts) + 1):
        current = "/" + "/".join(parts[:i])
        dest = root + current
        if os.path.islink(current):
            target = os.readlink(current)
            if not os.path.lexists(dest):
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                os.symlink(target, dest)
            resolved = os.path.join(os.path.dirname(current), target)
            copy_path(os.path.normpath(resolved + "/" + "/".join(parts[i:])), root)
            return
    if not os.path.lexists(root + path):
        os.makedirs(os.path.dirname(root + path), exist_ok=True)
        shutil.copy2(path, root + path)


def elf_interpreter(path):
    """The dynamic loader named in the PT_INTERP header of an ELF executable."""
    with open(path, "rb") as f:
        ident = f.read(16)
        if ident[:4] != b"\x7fELF":
            raise SystemExit("%s is not an ELF file" % path)
        is64, little = ident[4] == 2, ident[5] == 1
        end = "<" if little else ">"
        if is64:
            f.seek(0x20)
            (phoff,) = struct.unpack(end + "Q", f.read(8))
            f.seek(0x36)
        else:
            f.seek(0x1C)
            (phoff,) = struct.unpack(end + "I", f.read(4))
            f.seek(0x2A)
        phentsize, phnum = struct.unpack(end + "HH", f.read(4))
        for i in range(phnum):
            f.seek(phoff + i * phentsize)
            header = f.read(phentsize)
            p_type = struct.unpack(end + "I", header[:4])[0]
            if p_type == 3:  # PT_INTERP
                if is64:
                    offset, _, _, size = struct.unpack(end + "QQQQ", header[8:40])
                else:
                    offset, _, _, size = struct.unpack(end + "IIII", header[4:20])
                f.seek(offset)
                return f.read(size).rstrip(b"\0").decode()
    return None  # statically linked


def is_elf(path):
    with open(path, "rb") as f:
        return f.read(4) == b"\x7fELF"


def shared_libraries(loader, elf):
    """Paths of the shared libraries `elf` loads, as the loader resolves them here."""
    out = subprocess.run([loader, "--list", elf], check=True, capture_output=True,
                         text=True).stdout
    paths = []
    for line in out.splitlines():
        name, arrow, rest = line.strip().partition("=>")
        if arrow:
            target = rest.split(" (")[0].strip()
            if target == "not found":
                raise SystemExit("%s needs %s, which is not in the base image" % (elf, name))
            if target:  # "linux-vdso.so.1 =>  (0x...)" on old loaders: in the kernel
                paths.append(target)
        elif name.startswith("/"):
            paths.append(name.split(" (")[0])
    return paths


def compile_tree(tree, shown_as, sourceless=False):
    """Compile every .py under `tree`; tracebacks name the file under `shown_as`.

    `sourceless`: each module becomes MODULE.pyc in place of MODULE.py, which
    Python imports without a source (the standard library's copy: half the
    size, and pypause never prints a traceback that would show its lines).
    """
    ok = compileall.compile_dir(
        tree, ddir=shown_as, quiet=1, workers=0, legacy=sourceless,
        invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    if not ok:
        raise SystemExit("compiling %s failed" % tree)
    if sourceless:
        for directory, _, names in os.walk(tree):
            for name in names:
                if name.endswith(".py"):
                    os.remove(os.path.join(directory, name))


def build_runtime(root, stdlib, modules):
    """The interpreter and the standard library's `modules` (files), compiled."""
    copy_path(sys.executable, root)
    for path in modules:
        copy_path(path, root)
    # The interpreter finds its exec_prefix by this directory, and warns on
    # every start without it, even when no module of it is needed.
    os.makedirs(root + os.path.join(stdlib, "lib-dynload"), exist_ok=True)
    compile_tree(root + stdlib, stdlib, sourceless=True)
    # Libraries found through /etc/ld.so.conf (e.g. /usr/local/lib) are found
    # in the image only through the base's cache.
    if os.path.exists("/etc/ld.so.cache"):
        copy_path("/etc/ld.so.cache", root)


def install_pypause(wheels, root):
    site_dir = sysconfig.get_path("purelib")
    # site.py puts this directory on sys.path at start-up (once it exists).
    if site_dir not in site.getsitepackages():
        raise SystemExit("%s is not a site-packages directory of %s" % (site_dir, sys.executable))
    pip = glob.glob(os.path.join(wheels, "pip-*.whl"))
    if len(pip) != 1:
        raise SystemExit("%s must hold exactly one pip wheel, found %r" % (wheels, pip))
    # pip runs straight from its wheel: the base image needs no pip of its own.
    subprocess.run(
        [sys.executable, "-I", os.path.join(pip[0], "pip"), "install", "--no-index",
         "--find-links", wheels, "--no-compile", "--no-cache-dir",
         "--disable-pip-version-check", "--root-user-action=ignore",
         "--target", root + site_dir, "pypause-init"],
        check=True)
    # pip puts the `pypause` command, with this interpreter in its #! line,
    # beside the packages; PATH must find it.
    command = root + "/usr/local/bin/pypause"
    os.makedirs(os.path.dirname(command), exist_ok=True)
    os.rename(root + site_dir + "/bin/pypause", command)
    os.rmdir(root + site_dir + "/bin")
    isolate_command(command)
    compile_tree(root + site_dir, site_dir)
    # The kernel reads the #! line of the link's target: /pause runs with -IS too.
    os.symlink("/usr/local/bin/pypause", root + "/pause")
    return command, root + site_dir


# The longest #! line (less its newline) that kernels before Linux 5.1 read
# whole (BINPRM_BUF_SIZE was 128 bytes then).
SHEBANG_LIMIT = 127


def isolate_command(command):
    """Make the command's #! line `#!<interpreter> -IS`: Python without `site`.

    pip writes `#!<interpreter>` and drops any flag the script's own #! line
    had (pypa/pip#10661), so the flags are put back here. -I ignores every
    PYTHON* variable and the user's site-packages; -S skips `site` itself,
    which is ~30% of Python's start-up below -I (no .pth files, no
    sitecustomize); the command then adds site-packages to sys.path itself.
    The image is thereby immune to a PYTHONHOME or PYTHONPATH set by whoever
    runs it (auto-instrumentation injects them into every container of a pod;
    PYTHONHOME alone makes a plain interpreter die with "Fatal Python error"),
    and pypause never needs to re-execute itself.

    One word after the interpreter: the kernel hands everything after it to
    the interpreter as a single argument, so `-I -S` would arrive as the one
    argument "-I -S"; Python reads "-IS" as -I and -S.
    """
    with open(command, "rb") as f:
        first, rest = f.readline(), f.read()
    interpreter = first[2:].rstrip(b"\n")
    # A path pip could not put on a #! line (too long, spaces) gets its
    # /bin/sh launcher instead, and the image has no shell.
    if not first.startswith(b"#!/") or not first.endswith(b"\n") or b" " in interpreter:
        raise SystemExit("%s: expected '#!<interpreter>' as its first line, found %r"
                         % (command, first))
    if not os.path.samefile(interpreter, sys.executable):
        raise SystemExit("%s runs %s, not this interpreter (%s)"
                         % (command, interpreter.decode(), sys.executable))
    line = b"#!" + interpreter + b" -IS\n"
    if len(line) - 1 > SHEBANG_LIMIT:
        raise SystemExit("%s: #! line longer than %d bytes: %r" % (command, SHEBANG_LIMIT, line))
    with open(command, "wb") as f:
        f.write(line + rest)


def add_shared_libraries(runtime, trees):
    loader = elf_interpreter(os.path.realpath(sys.executable))
    if loader is None:  # a static interpreter loads no extension module either
        return
    elves = [os.path.realpath(sys.executable)]
    for tree in trees:
        for directory, _, names in os.walk(tree):
            elves += [os.path.join(directory, n) for n in names
                      if n.endswith(".so") and is_elf(os.path.join(directory, n))]
    libraries = {loader}
    for elf in elves:
        libraries.update(shared_libraries(loader, elf))
    for library in sorted(libraries):
        copy_path(library, runtime)


def main(wheels, out):
    runtime, app = out + "/runtime", out + "/pypause"
    command, site_dir = install_pypause(wheels, app)
    build_runtime(runtime, *imported_stdlib(command, site_dir))
    add_shared_libraries(runtime, [runtime, app])


if __name__ == "__main__":
    main(*sys.argv[1:])

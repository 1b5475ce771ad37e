"""The pause image on real container runtimes: podman + runc, and containerd.

No container registry is reachable, so the session builds everything it runs,
once per test run:

  base image   Debian's python3 with its standard library, unpacked from the
               .deb packages apt fetches (no shell, no pip: like a distroless
               Python image);
  wheelhouse   pypause's wheel plus its dependencies' and pip's wheels for the
               base's Python, fetched from the package index;
  pause image  the repository's Dockerfile built on that base, the wheelhouse
               handed in as the `wheels` build context.

and, for the examples/ Dockerfiles (pypause as an app image's init), two more
bases from Debian's packages: Debian's python3 with pip, venv and a shell
(debian:bookworm with python3 from apt), and the same less the PEP 668 marker
(what the official python images are to pip). Their pip takes pypause's
dependencies from a wheelhouse in the image instead of the index.

All podman state lives in a private directory (CONTAINERS_CONF,
CONTAINERS_STORAGE_CONF); containerd runs with its own config, state, root and
socket. Whatever a test creates is removed by the fixtures, also on failure;
only processes these tests started are ended, by PID.
"""

import glob
import os
import shutil
import sys
import tempfile
import time

import pytest

from tests.container.runtimes import (
    ARM64_BASE_IMAGE,
    ARM64_IMAGE,
    BASE_IMAGE,
    DEBIAN_PYTHON_IMAGE,
    IMAGE,
    MEASURED,
    METRICS_DOCKERFILE,
    PYTHON_STYLE_IMAGE,
    REPO,
    Podman,
    offline_build,
    podman_problem,
    run,
)
from tests.support.proc import mounts_under

# Debian's python3 with the full standard library (ssl, http.server, ctypes...).
BASE_PACKAGES = ["python3-minimal", "libpython3-stdlib"]
# What the examples/ Dockerfiles' RUN lines need besides: pip, venv, a shell, rm.
EXAMPLE_PACKAGES = BASE_PACKAGES + ["python3-pip", "python3-venv", "dash", "coreutils"]
# In the closure through Depends only for dpkg's, perl's and mailcap's
# maintainer scripts, which are never run here.
NOT_NEEDED_PACKAGES = {
    "dpkg",
    "install-info",
    "tar",
    "perl",
    "perl-base",
    "perl-modules-5.36",
    "libperl5.36",
    "mailcap",
    "mime-support",
    "libgdbm-compat4",
}


@pytest.fixture(scope="session")
def workdir():
    # A short path: with podman 4.3 and a storage directory deeper than ~40
    # characters (pytest's tmp_path is), every attached `podman run` waits
    # for conmon's 20 s timeout before it returns.
    path = tempfile.mkdtemp(prefix="pypause-ct-")
    yield path
    mounted = mounts_under(path)
    assert not mounted, "mounts left under %s: %s" % (path, mounted)
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def podman(workdir):
    problem = podman_problem()
    if problem:
        pytest.skip(problem)
    engine = Podman(os.path.join(workdir, "podman"))
    yield engine
    engine.remove_everything()
    engine("rmi", "--all", "--force", check=False)


def debian_python_rootfs(workdir, packages=BASE_PACKAGES, debs=None, arch=None):
    """Unpack Debian packages (python3's by default) and the closure of their
    dependencies into workdir/rootfs; the .debs are kept in `debs` (downloaded
    only if not there yet), by default workdir/debs.

    The packages are those of `arch` (a Debian architecture: arm64; by default
    dpkg's own), as apt would resolve them on such a machine: it is made apt's
    only architecture, so that names resolve to it (and to Architecture: all)
    and never to another one dpkg has been told of (with arm64 added, the
    closure would hold libc6:arm64 too). A foreign one's package lists must be
    there (dpkg --add-architecture, apt-get update), and its .debs need a
    `debs` of their own: the Architecture: all ones are named alike for every
    architecture."""
    arch = arch or run(["dpkg", "--print-architecture"]).stdout.strip()
    apt_options = ["-o", "APT::Architecture=" + arch, "-o", "APT::Architectures=" + arch]
    closure = run(
        ["apt-cache"]
        + apt_options
        + [
            "depends",
            "--recurse",
            "--no-recommends",
            "--no-suggests",
            "--no-conflicts",
            "--no-breaks",
            "--no-replaces",
            "--no-enhances",
        ]
        + packages
    ).stdout
    packages = sorted(
        {line for line in closure.splitlines() if line and not line.startswith((" ", "<"))}
        - NOT_NEEDED_PACKAGES
    )
    assert "python3-minimal" in packages, "apt knows no python3-minimal: run apt-get update"
    debs = debs or os.path.join(workdir, "debs")
    rootfs = os.path.join(workdir, "rootfs")
    os.makedirs(debs, exist_ok=True)
    os.makedirs(rootfs)
    missing = [p for p in packages if not glob.glob(os.path.join(debs, p + "_*.deb"))]
    if missing:
        run(
            ["apt-get"]
            + apt_options
            + ["download", "-q", "-o", "APT::Sandbox::User=root"]
            + missing,
            cwd=debs,
            timeout=300,
        )
    for package in packages:
        (deb,) = glob.glob(os.path.join(debs, package + "_*.deb"))
        run(["dpkg-deb", "-x", deb, rootfs])
    for doc in ("doc", "man", "info", "locale", "lintian"):
        shutil.rmtree(os.path.join(rootfs, "usr/share", doc), ignore_errors=True)
    os.mkdir(os.path.join(rootfs, "tmp"))
    os.chmod(os.path.join(rootfs, "tmp"), 0o1777)
    return rootfs


def import_rootfs(podman, rootfs, name, env=(), arch=None):
    """`podman import` a directory as image `name`, with PATH and `env` set and
    python3 as its CMD; its configuration names `arch` (an OCI architecture:
    arm64) if given, else the host's."""
    tarball = rootfs.rstrip("/") + ".tar"
    run(["tar", "-C", rootfs, "--numeric-owner", "-cf", tarball, "."])
    changes = [
        arg
        for variable in ("PATH=/usr/local/bin:/usr/bin:/bin",) + tuple(env)
        for arg in ("--change", "ENV " + variable)
    ]
    podman(
        "import",
        *changes,
        "--change",
        'CMD ["python3"]',
        *(["--arch", arch] if arch else []),
        tarball,
        name,
    )
    os.unlink(tarball)
    return name


@pytest.fixture(scope="session")
def base_image(podman, workdir):
    """A registry-free stand-in for a slim Python base image (Debian layout: /usr/bin/python3)."""
    rootfs = debian_python_rootfs(os.path.join(workdir, "base"), debs=os.path.join(workdir, "debs"))
    return import_rootfs(podman, rootfs, BASE_IMAGE)


@pytest.fixture(scope="session")
def debian_python_image(podman, workdir, wheel_context):
    """A registry-free stand-in for `debian:bookworm` after `apt-get install python3
    python3-venv`: python3 in /usr with pip, venv and the PEP 668 marker that makes
    pip refuse to install outside a venv, and a shell for RUN lines.

    Its pip is configured as for an offline mirror (PIP_NO_INDEX, PIP_FIND_LINKS):
    /wheelhouse holds pypause's dependencies, which pip would fetch from the index.
    """
    rootfs = debian_python_rootfs(
        os.path.join(workdir, "debian-python"), EXAMPLE_PACKAGES, debs=os.path.join(workdir, "debs")
    )
    assert os.path.isfile(os.path.join(rootfs, "usr/lib/python3.11/EXTERNALLY-MANAGED"))
    if not os.path.lexists(os.path.join(rootfs, "bin/sh")):
        os.symlink("dash", os.path.join(rootfs, "bin/sh"))
    shutil.copytree(os.path.join(wheel_context, "wheels"), os.path.join(rootfs, "wheelhouse"))
    return import_rootfs(
        podman, rootfs, DEBIAN_PYTHON_IMAGE, env=("PIP_NO_INDEX=1", "PIP_FIND_LINKS=/wheelhouse")
    )


@pytest.fixture(scope="session")
def python_style_image(podman, debian_python_image, workdir):
    """A registry-free stand-in for the official python image, for pip: the Debian
    python3 with pip above, less the PEP 668 marker (the official images have
    none), so that `pip install` as root installs into /usr/local (Debian's pip
    does so outside a venv) and its commands land in /usr/local/bin.

    Python itself stays in /usr/bin, not /usr/local/bin as in the official images.
    """
    context = os.path.join(workdir, "python-style")
    os.makedirs(context)
    with open(os.path.join(context, "Containerfile"), "w") as f:
        f.write(
            "FROM %s\n"
            'RUN ["python3", "-c", "import os, sysconfig; '
            "os.unlink(os.path.join(sysconfig.get_path('stdlib'), 'EXTERNALLY-MANAGED'))\"]\n"
            % debian_python_image
        )
    podman.build(context, "-t", PYTHON_STYLE_IMAGE)
    return PYTHON_STYLE_IMAGE


def _manylinux_platforms(glibc, machine):
    """pip's --platform values for a glibc: pip does not expand them to older ones itself."""
    major, minor = map(int, glibc.split(".")[:2])
    tags = ["manylinux_%d_%d_%s" % (major, m, machine) for m in range(minor, 4, -1)]
    tags += ["manylinux2014_" + machine, "manylinux2010_" + machine, "manylinux1_" + machine]
    return [arg for tag in tags for arg in ("--platform", tag)]


def make_wheel_context(podman, base_image, workdir, name="wheel-context"):
    """workdir/`name`/wheels: pypause, its dependencies and pip, for the Python of
    `base_image` (its version, glibc and machine, asked of it: under emulation
    for a foreign one)."""
    version, glibc, machine = podman.run_in(
        base_image,
        "python3",
        "-c",
        "import platform, sys; print('%d.%d' % sys.version_info[:2], "
        "platform.libc_ver()[1], platform.machine())",
    ).stdout.split()
    # Build from a copy: an in-tree build would leave build/ in the repository.
    src = os.path.join(workdir, "src")
    if not os.path.isdir(src):
        shutil.copytree(
            REPO,
            src,
            ignore=shutil.ignore_patterns(
                ".git", "__pycache__", "*.egg-info", "build", "dist", ".pytest_cache", ".venv"
            ),
        )
    context = os.path.join(workdir, name)
    wheels = os.path.join(context, "wheels")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    run(pip + ["wheel", "--no-deps", "--wheel-dir", wheels, src], timeout=300)
    (own,) = glob.glob(os.path.join(wheels, "pypause_init-*.whl"))
    run(
        pip
        + [
            "download",
            "--only-binary=:all:",
            "--python-version",
            version,
            "--dest",
            wheels,
            own,
            "pip",
        ]
        + _manylinux_platforms(glibc, machine),
        timeout=300,
    )
    return context


@pytest.fixture(scope="session")
def wheel_context(podman, base_image, workdir):
    """Directory with wheels/: pypause, its dependencies and pip, for the base's Python."""
    return make_wheel_context(podman, base_image, workdir)


def build_pause_image(podman, base_image, wheel_context, name, *options, timeout=600):
    """The repository's Dockerfile built on `base_image`, offline, by the documented
    build script (which fills in the OCI labels); `options` go to the build."""
    run(
        [
            os.path.join(REPO, "deploy", "image", "build.sh"),
            *offline_build(base_image, wheel_context),
            *options,
            "-t",
            name,
        ],
        env=dict(podman.env, ENGINE="podman"),
        timeout=timeout,
    )
    return name


@pytest.fixture(scope="session")
def image(podman, base_image, wheel_context):
    """The repository's Dockerfile built on the Debian base, offline, by the
    documented build script (which fills in the OCI labels)."""
    return build_pause_image(podman, base_image, wheel_context, IMAGE)


def build_metrics_image(podman, pause_image, name, *options):
    """deploy/image/metrics.Dockerfile on top of `pause_image`; `options` go to the build."""
    podman.build(
        os.path.dirname(METRICS_DOCKERFILE),
        "--build-arg",
        "PAUSE_IMAGE=" + pause_image,
        *options,
        "-t",
        name,
        "-f",
        METRICS_DOCKERFILE,
    )
    return name


@pytest.fixture(scope="session")
def metrics_image(podman, image):
    """deploy/image/metrics.Dockerfile on top: the variant whose sandboxes serve metrics."""
    return build_metrics_image(podman, image, IMAGE + "-metrics")


@pytest.fixture(scope="session")
def nonreaping_image(podman, base_image, workdir):
    """A sandbox image whose PID 1 never reaps: the negative control of the reaping tests.

    Python with no SIGCHLD handler, on the same base, with the pause image's user.
    """
    context = os.path.join(workdir, "nonreaping")
    os.makedirs(context)
    with open(os.path.join(context, "Containerfile"), "w") as f:
        f.write(
            "FROM %s\nUSER 65535:65535\n"
            'ENTRYPOINT ["python3", "-c", "import signal; signal.pause()"]\n' % base_image
        )
    name = "localhost/pypause-test-nonreaping:latest"
    podman.build(context, "-t", name)
    return name


@pytest.fixture(scope="session")
def oci_archive(podman, workdir):
    """oci_archive(image): the image saved as an OCI archive (once), for `ctr images import`."""
    saved = {}

    def save(image):
        if image not in saved:
            path = os.path.join(workdir, "oci-%d.tar" % len(saved))
            podman("save", "--format", "oci-archive", "--output", path, image)
            saved[image] = path
        return saved[image]

    return save


# ---------------------------------------------------------------- linux/arm64, emulated

BINFMT = "/proc/sys/fs/binfmt_misc"
ENTRY = BINFMT + "/qemu-aarch64"
# Where qemu-user-static describes the entry: for update-binfmts (binfmt-support),
# and as the line to write to the register file (systemd-binfmt's format).
BINFMTS_FORMAT = "/usr/share/binfmts/qemu-aarch64"
BINFMT_D_LINE = "/usr/lib/binfmt.d/qemu-aarch64.conf"
ARM64_APT = ["-o", "APT::Architecture=arm64", "-o", "APT::Architectures=arm64"]


def _entry_usable():
    """None if binfmt_misc's qemu-aarch64 entry is enabled with the F flag, else what is not."""
    try:
        with open(ENTRY) as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return "not registered"
    flags = [line.split(":", 1)[1].strip() for line in lines if line.startswith("flags:")]
    if lines[0] != "enabled":
        return "registered but disabled"
    if not flags or "F" not in flags[0]:
        return "registered without the F (fix-binary) flag: it cannot work inside containers"
    return None


def _setting_up_problem(problem):
    """Why this session cannot set up the entry that is `problem` (_entry_usable's), or None."""
    if os.geteuid() != 0:
        return "qemu-aarch64 binfmt %s, and setting it up needs root" % problem
    if problem not in ("not registered", "registered but disabled"):
        return "qemu-aarch64 binfmt " + problem  # someone else's: leave it alone
    if not (os.path.exists(BINFMTS_FORMAT) or os.path.exists(BINFMT_D_LINE)):
        return (
            "qemu-aarch64 binfmt %s and qemu-user-static is not installed (see .ci/run)" % problem
        )
    return None


def _mount_binfmt_misc():
    """Mount binfmt_misc unless it is (skip if it cannot be); return whether it was mounted here."""
    if os.path.exists(os.path.join(BINFMT, "register")):
        return False
    r = run(["mount", "-t", "binfmt_misc", "binfmt_misc", BINFMT], check=False)
    if r.returncode != 0:
        pytest.skip("binfmt_misc is not mounted and cannot be: %s" % r.stderr.strip())
    return True


def _enable_or_register(problem):
    """Make the entry that is `problem` (_entry_usable's) usable; return what was done to it:
    "enabled", "registered", or None if it was usable."""
    if problem is None:
        return None
    if problem == "registered but disabled":
        with open(ENTRY, "w") as f:
            f.write("1")
        return "enabled"
    if shutil.which("update-binfmts") and os.path.exists(BINFMTS_FORMAT):
        run(["update-binfmts", "--enable", "qemu-aarch64"])
    else:
        with open(BINFMT_D_LINE) as f:
            line = [line for line in f if line.startswith(":")][0]
        with open(os.path.join(BINFMT, "register"), "w") as f:
            f.write(line.strip())
    return "registered"


@pytest.fixture(scope="session")
def binfmt():
    """qemu-aarch64 in binfmt_misc, set up here if qemu-user-static is installed and it
    is not; undone at the end (only what was done here: unregistered if registered
    here, unmounted if mounted here)."""
    problem = _entry_usable()
    if problem is None:
        yield
        return
    cannot = _setting_up_problem(problem)
    if cannot:
        pytest.skip(cannot)
    mounted = _mount_binfmt_misc()
    done = _enable_or_register(_entry_usable() if mounted else problem)
    try:
        problem = _entry_usable()
        if problem:
            pytest.skip("qemu-aarch64 binfmt %s after setting it up" % problem)
        yield
    finally:
        if done and os.path.exists(ENTRY):
            with open(ENTRY, "w") as f:
                f.write("0" if done == "enabled" else "-1")  # disable / remove
        if mounted:
            run(["umount", BINFMT], check=False)


@pytest.fixture(scope="session")
def arm64_podman(binfmt, podman, workdir):
    """A private podman of its own, for the arm64 builds.

    podman 4.3's layer cache does not tell platforms apart: the Dockerfile's
    final stage (FROM scratch, COPY --from=build) matches step for step, so an
    amd64 build after an arm64 one in the same storage reuses its layers and
    is the arm64 image, tagged amd64 (test_multiarch_manifest checks it is
    not). Only the finished image is brought over to the session's podman
    (podman load): never a cache candidate, as no intermediate image is.
    """
    engine = Podman(os.path.join(workdir, "podman-arm64"))
    yield engine
    engine.remove_everything()
    engine("rmi", "--all", "--force", check=False)


@pytest.fixture(scope="session")
def arm64_base_image(arm64_podman, workdir):
    """Debian's arm64 python3, from Debian's arm64 packages, imported as an arm64
    image (in arm64_podman's storage)."""
    if run(["apt-cache"] + ARM64_APT + ["show", "python3-minimal"], check=False).returncode:
        pytest.skip(
            "apt has no arm64 package lists: dpkg --add-architecture arm64 && "
            "apt-get update (see .ci/run)"
        )
    start = time.monotonic()
    rootfs = debian_python_rootfs(
        os.path.join(workdir, "base-arm64"), debs=os.path.join(workdir, "debs-arm64"), arch="arm64"
    )
    name = import_rootfs(arm64_podman, rootfs, ARM64_BASE_IMAGE, arch="arm64")
    MEASURED["arm64 base (download, unpack, import)"] = "%.0f s" % (time.monotonic() - start)
    return name


@pytest.fixture(scope="session")
def arm64_image(podman, arm64_podman, arm64_base_image, workdir):
    """The pause image for linux/arm64: the Dockerfile built by deploy/image/build.sh on the
    arm64 base, offline, its RUN steps executed by the base's arm64 python3 under qemu;
    built in arm64_podman's storage, then loaded into the session's podman."""
    start = time.monotonic()
    context = make_wheel_context(arm64_podman, arm64_base_image, workdir, "wheel-context-arm64")
    wheels = sorted(os.listdir(os.path.join(context, "wheels")))
    assert [
        w for w in wheels if w.startswith("setproctitle-") and "cp311" in w and "aarch64" in w
    ], wheels
    build_pause_image(
        arm64_podman, arm64_base_image, context, ARM64_IMAGE, "--platform", "linux/arm64"
    )
    MEASURED["arm64 pause image build (emulated)"] = "%.0f s" % (time.monotonic() - start)
    archive = os.path.join(workdir, "pause-image-arm64.tar")
    arm64_podman("save", "--format", "docker-archive", "-o", archive, ARM64_IMAGE)
    try:
        podman("load", "-i", archive)
    finally:
        os.remove(archive)
    return ARM64_IMAGE


@pytest.fixture(scope="session")
def arm64_metrics_image(podman, arm64_image):
    return build_metrics_image(
        podman, arm64_image, ARM64_IMAGE + "-metrics", "--platform", "linux/arm64"
    )


def pytest_terminal_summary(terminalreporter):
    if MEASURED:
        terminalreporter.section("pause image measurements")
        for key, value in MEASURED.items():
            terminalreporter.write_line("%s: %s" % (key, value))

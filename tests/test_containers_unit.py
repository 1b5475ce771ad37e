"""pypause/containers.py: the container named by a /proc/PID/cgroup, as pure logic.

The black-box side (processes in real cgroups, scraped) is
tests/test_metrics_containers.py; here every runtime's naming, with and
without a cgroup namespace, and properties over any bytes a process's cgroup
names can make of the file.
"""

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pypause.containers import NONE, from_cgroup, from_path

pytestmark = pytest.mark.timeout(120)

ID = "0123456789abcdef" * 4
OTHER = "fedcba9876543210" * 4
UID = "8d5f3c9e_1a2b_4c3d_9e8f_0a1b2c3d4e5f"
#: Every value from_cgroup may return: what a label may hold.
VALID = re.compile(r"(none|((containerd|cri-o|docker)://)?[0-9a-f]{64})\Z")

NAMINGS = [
    # containerd, systemd driver
    (
        "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod%s.slice/"
        "cri-containerd-%s.scope" % (UID, ID),
        "containerd://" + ID,
    ),
    # containerd (or cri-dockerd), cgroupfs driver; every QoS class
    ("/kubepods/besteffort/pod%s/%s" % (UID, ID), ID),
    ("/kubepods/burstable/pod%s/%s" % (UID, ID), ID),
    ("/kubepods/pod%s/%s" % (UID, ID), ID),
    ("/k8s.io/%s" % ID, ID),  # containerd's CRI without a cgroup parent
    # CRI-O, both drivers
    ("/kubepods.slice/kubepods-burstable.slice/crio-%s.scope" % ID, "cri-o://" + ID),
    ("/kubepods/burstable/pod%s/crio-%s" % (UID, ID), "cri-o://" + ID),
    # docker, both drivers
    ("/system.slice/docker-%s.scope" % ID, "docker://" + ID),
    ("/docker/%s" % ID, "docker://" + ID),
    # podman, both managers: no scheme in Kubernetes' sense
    ("/machine.slice/libpod-%s.scope" % ID, ID),
    ("/libpod_parent/libpod-%s" % ID, ID),
    # inside a cgroup namespace: paths relative to its root
    ("/../cri-containerd-%s.scope" % ID, "containerd://" + ID),
    (
        "/../../kubepods-besteffort-pod%s.slice/cri-containerd-%s.scope" % (UID, ID),
        "containerd://" + ID,
    ),
    # below the container's own cgroup (systemd in a container): still its container
    ("/system.slice/docker-%s.scope/init.scope" % ID, "docker://" + ID),
    # a container in a container (kind's node, then a pod in it): the innermost
    ("/system.slice/docker-%s.scope/kubepods/besteffort/pod%s/%s" % (OTHER, UID, ID), ID),
]

NO_CONTAINER = [
    "/",
    "",
    "/..",
    "/user.slice/user-0.slice/session-1.scope",
    "/system.slice/containerd.service",
    "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod%s.slice" % UID,
    "/kubepods/besteffort/pod%s" % UID,
    "/machine.slice/libpod-conmon-%s.scope" % ID,  # the monitor, not the container
    "/kubepods/besteffort/pod%s/crio-conmon-%s" % (UID, ID),
    "/docker/" + ID[:-1],  # 63 digits
    "/docker/" + ID + "0",  # 65
    "/docker/" + ID.upper(),
    "/cri-containerd-%s.scope.extra" % ID,
    "/process_api/aabdb165d14d552b0faa4cde3f885f71",  # 32 hex: this machine's own
]


@pytest.mark.parametrize("path, expected", NAMINGS)
def test_every_runtime_naming(path, expected):
    assert from_path(path) == expected
    assert from_cgroup(b"0::%s\n" % path.encode(), live=False) == expected


@pytest.mark.parametrize("path", NO_CONTAINER)
def test_a_cgroup_that_names_no_container(path):
    assert from_path(path) is None
    assert from_cgroup(b"0::%s\n" % path.encode(), live=True) == NONE


def v1_host(path, unified="/"):
    """A hybrid host's /proc/PID/cgroup: v1 controllers at `path`, the v2 line last."""
    v1 = "".join(
        "%s:%s\n" % (hierarchy, path)
        for hierarchy in ("12:pids", "11:memory", "4:cpu,cpuacct", "1:name=systemd")
    )
    return (v1 + "0::%s\n" % unified).encode()


def test_a_live_process_is_found_in_its_v1_lines():
    assert from_cgroup(v1_host("/kubepods/besteffort/pod%s/%s" % (UID, ID)), live=True) == ID


def test_a_zombie_keeps_only_its_v2_line():
    # The kernel moves an exited process's v1 memberships to the root; the v2
    # line keeps its cgroup until it is reaped.
    cgroup = "/kubepods/besteffort/pod%s/%s" % (UID, ID)
    assert from_cgroup(v1_host("/", unified=cgroup), live=False) == ID
    assert from_cgroup(v1_host("/"), live=False) == NONE
    # v1 lines are not looked at for a zombie, whatever they say
    assert from_cgroup(v1_host(cgroup), live=False) == NONE


def test_the_v2_line_wins_over_the_v1_lines():
    assert from_cgroup(v1_host("/docker/" + OTHER, unified="/docker/" + ID), live=True) == (
        "docker://" + ID
    )


def test_a_fake_v2_line_in_a_v1_path_is_not_taken():
    # A cgroup name may hold a newline: a process that may name its v1 cgroup
    # could make a line that looks like the v2 one. The kernel writes the real
    # v2 line last, and that one is used.
    fake = "/x\n0::/docker/%s" % OTHER
    assert from_cgroup(v1_host(fake, unified="/docker/" + ID), live=False) == "docker://" + ID
    assert from_cgroup(v1_host(fake, unified="/"), live=False) == NONE


def test_a_cgroup_v1_only_host():
    text = ("5:pids:/kubepods/besteffort/pod%s/%s\n1:name=systemd:/\n" % (UID, ID)).encode()
    assert from_cgroup(text, live=True) == ID
    assert from_cgroup(text, live=False) == NONE


def test_bytes_that_are_not_utf8():
    assert (
        from_cgroup(b"0::/\xff\xfe/docker/" + ID.encode() + b"\n", live=False) == "docker://" + ID
    )
    assert from_cgroup(b"0::/docker/\xff" + ID.encode()[1:] + b"\n", live=False) == NONE


# -- properties ----------------------------------------------------------------

ALPHABET = "0123456789abcdefABCDEF-_.:/\n\x00 " + "crio-dockerlibpdntsaeufm"
COMPONENT = st.one_of(
    st.text(ALPHABET, max_size=80),
    st.sampled_from(["cri-containerd-", "crio-", "docker-", "libpod-", "crio-conmon-", "", ".."])
    .flatmap(
        lambda prefix: st.text("0123456789abcdef", min_size=62, max_size=66).map(
            lambda digits: prefix + digits
        )
    )
    .flatmap(lambda stem: st.sampled_from([stem, stem + ".scope"])),
)
PATHS = st.lists(COMPONENT, max_size=8).map(lambda parts: "/" + "/".join(parts))


@settings(max_examples=500, deadline=None, database=None)
@given(st.binary(max_size=2048), st.booleans())
def test_any_bytes_give_a_valid_label_or_none(text, live):
    assert VALID.match(from_cgroup(text, live))


@settings(max_examples=500, deadline=None, database=None)
@given(
    st.lists(st.tuples(st.sampled_from(["0", "1", "12"]), st.text(max_size=20), PATHS), max_size=6),
    st.booleans(),
)
def test_any_cgroup_file_gives_a_valid_label_or_none(lines, live):
    text = "".join("%s:%s:%s\n" % line for line in lines).encode("utf-8", "surrogatepass")
    value = from_cgroup(text, live)
    assert VALID.match(value)
    if value != NONE:  # the ID is one the file holds, as a whole component
        assert value.rpartition("/")[2] in text.decode("utf-8", "replace")


@settings(max_examples=300, deadline=None, database=None)
@given(PATHS, st.sampled_from(NAMINGS))
def test_the_innermost_container_wins(outer, naming):
    inner, expected = naming
    if inner.startswith("/.."):
        return  # relative paths are only ever whole
    assert from_path(outer + inner) == expected
    assert from_path(outer + inner + "/init.scope") == expected


def test_of_two_v2_lines_the_last_is_taken():
    # Only a cgroup name with a newline can make a second one; the kernel's is last.
    text = b"0::/docker/%s\n0::/docker/%s\n" % (OTHER.encode(), ID.encode())
    assert from_cgroup(text, live=False) == "docker://" + ID
    assert from_cgroup(b"0::/docker/" + ID.encode(), live=False) == "docker://" + ID  # no newline

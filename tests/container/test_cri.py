"""The pause image as containerd's CRI plugin runs a pod sandbox, driven as the kubelet drives it.

A kind node's kubelet talks to containerd through the CRI: RunPodSandbox,
CreateContainer, StartContainer, StopContainer, StopPodSandbox,
RemovePodSandbox. These tests send those requests, with what the kubelet puts
in them (containerd_cri.pod_config and container_config), to Debian's
containerd 1.6 and its CRI plugin, configured with deploy/containerd's
snippet (`sandbox_image`), on a private node: its own config, root, state,
socket, cgroups and CNI bridge network, in a network namespace made for it
(containerd_cri.CriNode). No kubelet, no registry, no kind.

What happens is read from the host's /proc (PIDs, parents, states,
namespaces, credentials, write counters); metrics are fetched from inside a
pod's network namespace on 127.0.0.1, as a sidecar would, never at the pod's
address.
"""

import datetime
import errno
import os
import re
import signal
import statistics
import time

import pytest

from tests.container.containerd_cri import (
    CNI_CACHE,
    CriNode,
    cni_cache_entries,
    container_config,
    cri_problem,
    pod_config,
    processes_mentioning,
)
from tests.container.runtimes import (
    MEASURED,
    ORPHAN_COMM,
    ORPHAN_MAKER,
    ORPHANS,
    ZOMBIE_HOLDER,
    adopt_then_kill_orphans,
    fetch_in_netns,
    metrics_port,
    scrape_reaped_and_held,
    wait_until_adopted,
    wait_until_reaped,
    zombies,
)
from tests.support.http import metric_value, parse_samples
from tests.support.proc import (
    cgroup_hierarchies,
    fd_target,
    interfaces,
    io_counters,
    listening_tcp_ports,
    mounts_mentioning,
    namespace,
    namespace_members,
    pidns_members,
    root_is_read_only,
    stat,
    status_field,
    thread_count,
    title,
)
from tests.support.running import wait_for, wait_until_idle

grpc = pytest.importorskip(
    "grpc", reason="grpcio (the CRI client's transport) is not installed: pip install '.[test]'"
)
cri = pytest.importorskip(
    "cri_api.v1.api_pb2",
    reason="container-runtime-interface-api (the "
    "CRI v1 stubs) is not installed: pip install '.[test]'",
)

# The first test also builds the images when it runs alone (under a minute here).
pytestmark = pytest.mark.timeout(300)

# containerd 1.6 stops a sandbox with SIGKILL at once; StopPodSandbox also
# tears down the pod's network. Measured here: ~60 ms.
STOP_BOUND = 2.0


@pytest.fixture(scope="module")
def nodes(podman, oci_archive, workdir):
    """nodes(sandbox_image): a started CriNode whose sandbox_image is that image.

    One node per sandbox image, started on first use and stopped (every pod,
    containerd, its shims, mounts, network namespaces, CNI cache, cgroups)
    when the module ends, also after a failure.
    """
    problem = cri_problem()
    if problem:
        pytest.skip(problem)
    started = {}
    # Directories the CRI plugin creates outside its root and state, and
    # leaves empty: libcni's cache, the mount points of pod network namespaces.
    host_dirs = [CNI_CACHE, os.path.dirname(CNI_CACHE), "/var/run/netns"]
    host_dirs = [d for d in host_dirs if not os.path.exists(d)]

    def node(sandbox_image):
        if sandbox_image not in started:
            started[sandbox_image] = CriNode(
                os.path.join(workdir, "cri%d" % len(started)), sandbox_image
            )
            started[sandbox_image].start()
            started[sandbox_image].import_image(oci_archive(sandbox_image))
        return started[sandbox_image]

    try:
        yield node
    finally:
        errors = []
        for n in started.values():
            try:
                n.stop()
            except Exception as e:  # noqa: BLE001 -- stop the other nodes too
                errors.append(e)
        for directory in host_dirs:  # the ones we made, deepest first
            try:
                os.rmdir(directory)
            except FileNotFoundError:
                pass
            except OSError as e:  # not empty: what the nodes left is removed above
                errors.append(e)
        record_measurements(started.values())
        assert not errors, errors


@pytest.fixture
def cri_node(nodes):
    """Like `nodes`; every pod the test made is stopped and removed after it."""
    used = []

    def get(sandbox_image):
        used.append(nodes(sandbox_image))
        return used[-1]

    yield get
    for node in used:
        node.remove_every_pod()


def record_measurements(started):
    starts = [t for node in started for t in node.start_times]
    stops = [t for node in started for t in node.stop_times]

    def spread(values):
        return "median %.0f ms, max %.0f ms (%d sandboxes)" % (
            statistics.median(values) * 1000,
            max(values) * 1000,
            len(values),
        )

    if starts:
        MEASURED["CRI RunPodSandbox returned"] = spread([rpc for rpc, _ in starts])
        MEASURED["CRI RunPodSandbox to pypause waiting for signals"] = spread(
            [ready for _, ready in starts]
        )
    if stops:
        # Some stopped with containers still running, which containerd stops first.
        MEASURED["CRI StopPodSandbox returned"] = spread(stops)


def run_sandbox(node, pod):
    """RunPodSandbox with pypause as the sandbox; return (id, PID) once pypause idles."""
    start = time.monotonic()
    sandbox_id, pid = node.run_pod(pod)
    returned = time.monotonic() - start
    # RunPodSandbox returns once the task runs, before Python has started.
    wait_for(lambda: title(pid) == ["pypause"], 10, "pid %d to show pypause's title" % pid)
    wait_until_idle(pid)
    node.start_times.append((returned, time.monotonic() - start))
    return sandbox_id, pid


def start_orphan_maker(node, sandbox_id, pod, image, attempt=0):
    """A container of the pod that leaves ORPHANS orphans; return (container id, PID)."""
    config = container_config(cri, pod, "app", image, ["python3", *ORPHAN_MAKER], attempt=attempt)
    return node.start_container(sandbox_id, pod, config)


def start_zombie_holder(node, sandbox_id, pod, image):
    """A container of the pod whose process holds HELD zombies; return (container id, PID)."""
    config = container_config(cri, pod, "holder", image, ["python3", *ZOMBIE_HOLDER])
    return node.start_container(sandbox_id, pod, config)


# ---------------------------------------------------------------- 1. restricted


def test_restricted_sandbox_runs_pypause_as_pid_1_of_the_pod(cri_node, image):
    node = cri_node(image)
    # runAsNonRoot has no CRI field: the kubelet checks the image's user itself.
    assert node.call("ImageStatus", image=cri.ImageSpec(image=image)).image.uid.value == 65535

    pod = pod_config(cri, node, "restricted")
    sandbox_id, pid = run_sandbox(node, pod)
    assert node.sandbox_status(sandbox_id).state == cri.SANDBOX_READY
    assert status_field(pid, "NSpid")[-1] == "1", "PID 1 of the pod's PID namespace"
    assert stat(pid).comm == "pypause" and title(pid) == ["pypause"], "pause mode"
    assert status_field(pid, "Uid") == ["65535"] * 4
    assert status_field(pid, "Gid") == ["65535"] * 4
    assert status_field(pid, "Seccomp") == ["2"], "seccomp RuntimeDefault: a filter"
    assert status_field(pid, "NoNewPrivs") == ["1"]
    for capabilities in ("CapInh", "CapPrm", "CapEff", "CapAmb"):
        assert status_field(pid, capabilities) == ["0" * 16], capabilities
    assert root_is_read_only(pid)
    # The pod's own network namespace, which the CNI bridge gave an eth0.
    assert namespace(pid, "net") != namespace(node.proc.pid, "net")
    assert interfaces(pid) == ["eth0", "lo"]

    # A "restricted" container runs beside it, in the pod's network namespace.
    config = container_config(
        cri, pod, "app", image, ["python3", "-c", "import _signal; _signal.pause()"]
    )
    container_id, app = node.start_container(sandbox_id, pod, config)
    assert node.container_status(container_id).state == cri.CONTAINER_RUNNING
    assert namespace(app, "net") == namespace(pid, "net")
    assert namespace(app, "pid") != namespace(pid, "pid"), "no shareProcessNamespace"
    assert status_field(app, "CapBnd") == ["0" * 16], "capabilities: drop ALL"
    assert status_field(app, "NoNewPrivs") == ["1"], "allowPrivilegeEscalation: false"
    assert root_is_read_only(app)
    assert node.sandbox_status(sandbox_id).state == cri.SANDBOX_READY
    assert stat(pid).comm == "pypause"


# ---------------------------------------------------------------- 2. shareProcessNamespace


@pytest.mark.parametrize("sandbox", ["pypause", "non-reaping control"])
def test_shared_pid_namespace_orphans_are_adopted_and_reaped_by_the_sandbox(
    cri_node, image, request, sandbox
):
    if sandbox == "pypause":
        sandbox_image = image
    else:  # the same pod on a node whose sandbox image's PID 1 never reaps
        sandbox_image = request.getfixturevalue("nonreaping_image")
    node = cri_node(sandbox_image)
    pod = pod_config(cri, node, "orphans", share_pid=True)
    if sandbox == "pypause":
        sandbox_id, pid = run_sandbox(node, pod)
    else:
        sandbox_id, pid = node.run_pod(pod)
    _, app = start_orphan_maker(node, sandbox_id, pod, sandbox_image)
    assert namespace(app, "pid") == namespace(pid, "pid")

    # Every orphan's parent is the sandbox's PID 1; then they die at once.
    adopt_then_kill_orphans(pid, ORPHANS)
    if sandbox == "pypause":
        wait_until_reaped(pid)
        assert set(pidns_members(pid)) == {pid, app}
    else:
        wait_for(
            lambda: len(zombies(pid)) == ORPHANS,
            10,
            "%d zombies under the non-reaping sandbox" % ORPHANS,
        )
        assert all(stat(z).ppid == pid for z in zombies(pid))
    assert node.sandbox_status(sandbox_id).state == cri.SANDBOX_READY


# ---------------------------------------------------------------- 3. restart


def test_container_restarted_in_the_same_sandbox_both_attempts_reaped(cri_node, image):
    node = cri_node(image)
    pod = pod_config(cri, node, "restart", share_pid=True)
    sandbox_id, pid = run_sandbox(node, pod)
    started = stat(pid).starttime  # not another process with a reused PID

    for attempt in (0, 1):
        # The kubelet restarts an exited container as attempt N+1 in the same sandbox.
        container_id, app = start_orphan_maker(node, sandbox_id, pod, image, attempt)
        wait_until_adopted(pid, ORPHANS)
        # The container's process dies (as on a crash); its runtime then kills
        # what is left in the container's cgroup: the orphans, the sandbox's
        # children now, which pypause reaps.
        os.kill(app, signal.SIGTERM)
        wait_for(
            lambda: node.container_status(container_id).state == cri.CONTAINER_EXITED,
            10,
            "attempt %d to exit" % attempt,
        )
        assert node.container_status(container_id).exit_code == 128 + signal.SIGTERM
        wait_until_reaped(pid)
        assert set(pidns_members(pid)) == {pid}, "only the sandbox is left"
        assert node.sandbox_status(sandbox_id).state == cri.SANDBOX_READY
        assert node.sandbox_info(sandbox_id)["pid"] == pid
        assert stat(pid).starttime == started, "the same PID 1"

    containers = node.call(
        "ListContainers", filter=cri.ContainerFilter(pod_sandbox_id=sandbox_id)
    ).containers
    assert sorted((c.metadata.attempt, c.state) for c in containers) == [
        (0, cri.CONTAINER_EXITED),
        (1, cri.CONTAINER_EXITED),
    ]


# ---------------------------------------------------------------- 4. metrics


def test_metrics_sandbox_counts_the_pods_orphans_in_its_network_namespace(cri_node, metrics_image):
    port = metrics_port()
    node = cri_node(metrics_image)
    pod = pod_config(cri, node, "metrics", share_pid=True)
    sandbox_id, pid = run_sandbox(node, pod)
    # Beside the orphan maker, a container whose process keeps its zombies.
    holder_id, holder = start_zombie_holder(node, sandbox_id, pod, metrics_image)
    app_id, _ = start_orphan_maker(node, sandbox_id, pod, metrics_image)
    # The containers, by the IDs CreateContainer returned (containerd's
    # cgroupfs driver names a container's cgroup after its bare ID): the
    # orphans' read from each zombie's unified line before the reap, the
    # holder's from its live process's.
    body = scrape_reaped_and_held(pid, port, app_id, holder_id, holder)
    values = parse_samples(body)
    assert metric_value(values, "pypause_zombies_reaped_total") == ORPHANS, body
    assert metric_value(values, "pypause_zombies") == 0, "the held zombies are not pypause's"
    # Open in the pod's namespace, by the sandbox; not in the node's.
    assert listening_tcp_ports(pid) == [port]
    assert fetch_in_netns(node.proc.pid, port, "/healthz") is None


def test_two_host_network_sandboxes_the_second_runs_on_without_the_port(cri_node, metrics_image):
    port = metrics_port()
    node = cri_node(metrics_image)
    node_netns = namespace(node.proc.pid, "net")
    first_pod = pod_config(cri, node, "host-net-first", share_pid=True, host_network=True)
    first_id, first = run_sandbox(node, first_pod)
    wait_for(lambda: port in listening_tcp_ports(first), 10, "the first sandbox to listen")
    second_pod = pod_config(cri, node, "host-net-second", share_pid=True, host_network=True)
    second_id, second = run_sandbox(node, second_pod)
    assert namespace(first, "net") == namespace(second, "net") == node_netns

    # The second could not bind the port: no socket, no HTTP thread...
    assert listening_tcp_ports(second) == []
    assert thread_count(second) == 1
    assert thread_count(first) == 2
    # ... and said so in one line. containerd gives a sandbox no stdout or
    # stderr (the line goes to /dev/null), so the kernel's write counters tell:
    # each sandbox has made runc's start-up writes (the same for both) and one
    # write(2) per log line; the first logged where it serves, the second why
    # it does not, and the difference in bytes is that of the two lines.
    serving = "[pypause] serving metrics on http://[::]:%d/metrics (IPv6 and IPv4)\n" % port
    disabled = "[pypause] ERROR: metrics disabled: cannot listen on *:%d: %s\n" % (
        port,
        os.strerror(errno.EADDRINUSE),
    )
    assert fd_target(second, 2) == "/dev/null"
    first_io, second_io = io_counters(first), io_counters(second)
    assert second_io["syscw"] == first_io["syscw"], "one line each"
    assert second_io["wchar"] - first_io["wchar"] == len(disabled) - len(serving)

    # It goes on as a sandbox: PID 1 of its pod, reaping the pod's orphans.
    start_orphan_maker(node, second_id, second_pod, metrics_image)
    adopt_then_kill_orphans(second, ORPHANS)
    wait_until_reaped(second)
    for sandbox_id in (first_id, second_id):
        assert node.sandbox_status(sandbox_id).state == cri.SANDBOX_READY
    # No other line since: the only new writes are the orphans' own (each set
    # its name with one write), which the kernel adds to their reaper's counters.
    after = io_counters(second)
    assert (after["syscw"] - second_io["syscw"], after["wchar"] - second_io["wchar"]) == (
        ORPHANS,
        ORPHANS * len(ORPHAN_COMM),
    )

    # The node's port is the first sandbox's, which reaped none of them.
    _, _, body = fetch_in_netns(node.proc.pid, port, "/metrics")["/metrics"]
    values = parse_samples(body)
    assert metric_value(values, "pypause_zombies_reaped_total") == 0
    assert metric_value(values, "pypause_processes") == 1


# ---------------------------------------------------------------- 5. stop and remove


def exited_at(text):
    """A containerd event's RFC 3339 time (nanoseconds, Z) as a POSIX timestamp."""
    whole, _, fraction = text.rstrip("Z").partition(".")
    seconds = datetime.datetime.fromisoformat(whole).replace(tzinfo=datetime.timezone.utc)
    return seconds.timestamp() + float("0." + (fraction or "0"))


def test_stop_kills_the_sandbox_and_remove_leaves_nothing_behind(cri_node, image):
    node = cri_node(image)
    pod = pod_config(cri, node, "stop", share_pid=True)
    sandbox_id, pid = run_sandbox(node, pod)
    pid_ns = namespace(pid, "pid")
    spec = node.sandbox_info(sandbox_id)["runtimeSpec"]["linux"]
    (netns_path,) = [ns["path"] for ns in spec["namespaces"] if ns["type"] == "network"]
    cgroup = spec["cgroupsPath"]
    assert any(os.path.isdir(h + cgroup) for h in cgroup_hierarchies())
    assert os.path.ismount(netns_path) and len(interfaces(node.proc.pid)) == 3  # + a veth
    container_id, _ = start_orphan_maker(node, sandbox_id, pod, image)
    wait_until_adopted(pid, ORPHANS)

    watcher = node.watch_exits()
    try:
        # As the kubelet deletes a pod: the containers first, with their grace
        # period (SIGTERM: the app exits, its orphans are killed and reaped)...
        node.call("StopContainer", container_id=container_id, timeout=30)
        assert watcher.exit_of(container_id)["exit_status"] == 128 + signal.SIGTERM
        wait_until_reaped(pid)
        # ... then the sandbox.
        wall = time.time()
        elapsed = node.stop_pod(sandbox_id)
        exited = watcher.exit_of(sandbox_id)
    finally:
        watcher.close()
    MEASURED["CRI StopPodSandbox: the sandbox's exit"] = (
        "%s after %.0f ms (the call returned after %.0f ms)"
        % (
            "SIGKILL" if exited["exit_status"] == 137 else "status %d" % exited["exit_status"],
            (exited_at(exited["exited_at"]) - wall) * 1000,
            elapsed * 1000,
        )
    )
    # containerd kills a sandbox: no SIGTERM, nothing for pypause to handle.
    assert (exited["pid"], exited["exit_status"]) == (pid, 128 + signal.SIGKILL)
    assert elapsed < STOP_BOUND
    assert stat(pid) is None, "gone when StopPodSandbox returns"
    assert node.sandbox_status(sandbox_id).state == cri.SANDBOX_NOTREADY

    node.remove_pod(sandbox_id)
    with pytest.raises(grpc.RpcError) as error:
        node.sandbox_status(sandbox_id)
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    assert namespace_members(pid_ns) == {}, "processes left in the pod's PID namespace"
    assert processes_mentioning(sandbox_id) == [], "a shim left"
    assert mounts_mentioning(sandbox_id) == [], "rootfs, /dev/shm..."
    assert not os.path.exists(netns_path) and mounts_mentioning(netns_path) == []
    assert interfaces(node.proc.pid) == ["lo", "pp-cri0"], "the pod's veth"
    reserved = [
        n
        for n in os.listdir(os.path.join(node.ipam_dir, "pypause-cri-test"))
        if re.match(r"^\d+\.\d+\.\d+\.\d+$", n)
    ]
    assert reserved == [], "addresses still reserved in host-local IPAM"
    assert cni_cache_entries(sandbox_id) == []
    assert [h for h in cgroup_hierarchies() if os.path.exists(h + cgroup)] == []

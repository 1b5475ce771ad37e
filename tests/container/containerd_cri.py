"""containerd's CRI plugin, driven as the kubelet drives it (helpers for test_cri.py).

A `CriNode` is one private containerd (its own config, root, state, socket,
CNI configuration and IPAM directory) started in a network namespace of its
own, made for it with `unshare --net`: that namespace plays the node's. The
pods' bridge and veths live there, and a `hostNetwork` sandbox binds its
metrics port there, never on the machine's own interfaces; everything in it
goes away with the last process in it.

`CriNode.cri` is a CRI v1 client (PyPI's container-runtime-interface-api
stubs over grpcio) on the node's socket: RunPodSandbox, CreateContainer,
StopPodSandbox... with the requests the kubelet sends, built by
`pod_config()` and `container_config()`.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid

from tests.container.runtimes import Containerd, run, setup_problem, shims_of
from tests.support.proc import cgroup_hierarchies, command_lines, mounts_under
from tests.support.running import wait_for

CNI_BIN_DIR = "/usr/lib/cni"
CNI_PLUGINS = ("bridge", "host-local", "loopback")
CNI_NETWORK = "pypause-cri-test"
CNI_CACHE = "/var/lib/cni/results"  # libcni's default cache, which containerd 1.6 uses
RPC_TIMEOUT = 60

# The pod network, as the peers' notes describe it: a bridge with no gateway
# and no masquerading, addresses from a link-local range. No traffic is ever
# sent to these addresses: metrics are fetched from inside a pod's network
# namespace, on 127.0.0.1.
CNI_CONFLIST = {
    "cniVersion": "0.4.0",
    "name": CNI_NETWORK,
    "plugins": [
        {
            "type": "bridge",
            "bridge": "pp-cri0",
            "isGateway": False,
            "ipMasq": False,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": "169.254.99.0/24"}]],
                "dataDir": None,
            },
        },
        {"type": "loopback"},
    ],
}

# Added to the deploy snippet's CRI table: what a node's containerd has that
# this machine needs (no AppArmor; no CAP_SYS_RESOURCE for the sandbox's
# oom_score_adj of -998).
CRI_KEYS = """\
  disable_apparmor = true
  restrict_oom_score_adj = true
"""
CRI_TABLES = """\
[plugins."io.containerd.grpc.v1.cri".containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
[plugins."io.containerd.grpc.v1.cri".cni]
  bin_dir = "%s"
  conf_dir = "%s/cni"
"""

# Run by `unshare --net`: bring the new namespace's loopback up (the CRI's
# streaming server and a hostNetwork sandbox's metrics listen on it), then
# become containerd.
LOOPBACK_UP_THEN_EXEC = """\
import fcntl, os, socket, struct, sys
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
    ifreq = fcntl.ioctl(s, SIOCGIFFLAGS, struct.pack("16s24x", b"lo"))
    flags = struct.unpack_from("H", ifreq, 16)[0]
    fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH22x", b"lo", flags | IFF_UP))
os.execvp(sys.argv[1], sys.argv[1:])
"""


def cri_problem():
    """Why the CRI tests cannot run here, or None."""
    return setup_problem(
        "containerd, runc, network namespaces",
        ("containerd", "ctr", "containerd-shim-runc-v2", "runc", "unshare", "nsenter"),
        [
            "%s/%s (containernetworking-plugins)" % (CNI_BIN_DIR, p)
            for p in CNI_PLUGINS
            if not os.access(os.path.join(CNI_BIN_DIR, p), os.X_OK)
        ],
    )


class CriNode(Containerd):
    """A containerd with the CRI plugin, in a network namespace of its own.

    Its config: the deploy snippet with `sandbox_image`, plus what this node
    needs (CRI_KEYS, CRI_TABLES).
    """

    def __init__(self, workdir, sandbox_image):
        super().__init__(workdir, sandbox_image, CRI_KEYS, CRI_TABLES % (CNI_BIN_DIR, workdir))
        os.makedirs(os.path.join(workdir, "cni"))
        os.makedirs(os.path.join(workdir, "pods"))
        self.sandbox_image = sandbox_image
        # Like the kubelet's cgroupfs driver (/kubepods/besteffort/pod<uid>),
        # a parent of our own, removed when the node stops.
        self.cgroup_root = "/%s-%s" % (
            os.path.basename(os.path.dirname(workdir)),
            os.path.basename(workdir),
        )
        conflist = json.loads(json.dumps(CNI_CONFLIST))
        conflist["plugins"][0]["ipam"]["dataDir"] = self.ipam_dir = os.path.join(workdir, "ipam")
        with open(os.path.join(workdir, "cni", "10-pypause.conflist"), "w") as f:
            json.dump(conflist, f, indent=2)
        self.channel = None
        self.cri = None
        self.images = None
        # Everything created through this node, for the clean-up.
        self.created = set()
        self.netns_paths = set()
        # Measurements, in seconds.
        self.start_times = []
        self.stop_times = []

    # ------------------------------------------------------------ daemon

    def start(self):
        import grpc
        from cri_api.v1 import api_pb2_grpc

        super().start("unshare", "--net", "--", sys.executable, "-c", LOOPBACK_UP_THEN_EXEC)
        self.channel = grpc.insecure_channel("unix://" + self.socket)
        self.cri = api_pb2_grpc.RuntimeServiceStub(self.channel)
        self.images = api_pb2_grpc.ImageServiceStub(self.channel)

        def network_ready():
            conditions = {c.type: c.status for c in self.call("Status").status.conditions}
            return conditions.get("RuntimeReady") and conditions.get("NetworkReady")

        wait_for(network_ready, 30, "the CRI plugin to report the runtime and network ready")

    def netns(self):
        """The node's network namespace: /proc/PID/ns/net of containerd."""
        return "/proc/%d/ns/net" % self.proc.pid

    # ------------------------------------------------------------ CRI calls

    def call(self, method, **fields):
        """Call a CRI method with a request built from `fields`."""
        from cri_api.v1 import api_pb2 as cri

        stub = self.cri if hasattr(self.cri, method) else self.images
        request = getattr(cri, method + "Request")(**fields)
        return getattr(stub, method)(request, timeout=RPC_TIMEOUT)

    def run_pod(self, config):
        """RunPodSandbox; return (sandbox id, the host PID of the sandbox's process)."""
        sandbox_id = self.call("RunPodSandbox", config=config).pod_sandbox_id
        self.created.add(sandbox_id)
        info = self.sandbox_info(sandbox_id)
        for ns in info["runtimeSpec"]["linux"]["namespaces"]:
            if ns["type"] == "network" and ns.get("path"):
                self.netns_paths.add(ns["path"])
        return sandbox_id, info["pid"]

    def sandbox_status(self, sandbox_id):
        return self.call("PodSandboxStatus", pod_sandbox_id=sandbox_id).status

    def sandbox_info(self, sandbox_id):
        """The verbose part of PodSandboxStatus: pid, runtimeSpec, config..."""
        r = self.call("PodSandboxStatus", pod_sandbox_id=sandbox_id, verbose=True)
        return json.loads(r.info["info"])

    def start_container(self, sandbox_id, pod, config):
        """CreateContainer + StartContainer; return (container id, host PID of its process)."""
        container_id = self.call(
            "CreateContainer", pod_sandbox_id=sandbox_id, config=config, sandbox_config=pod
        ).container_id
        self.call("StartContainer", container_id=container_id)
        r = self.call("ContainerStatus", container_id=container_id, verbose=True)
        return container_id, json.loads(r.info["info"])["pid"]

    def container_status(self, container_id):
        return self.call("ContainerStatus", container_id=container_id).status

    def stop_pod(self, sandbox_id):
        """StopPodSandbox, timed; return its duration in seconds."""
        start = time.monotonic()
        self.call("StopPodSandbox", pod_sandbox_id=sandbox_id)
        elapsed = time.monotonic() - start
        self.stop_times.append(elapsed)
        return elapsed

    def remove_pod(self, sandbox_id):
        self.call("RemovePodSandbox", pod_sandbox_id=sandbox_id)

    def remove_every_pod(self):
        """Stop and remove every sandbox this node has (and so every container)."""
        for sandbox in self.call("ListPodSandbox").items:
            self.stop_pod(sandbox.id)
            self.remove_pod(sandbox.id)
        left = [s.id for s in self.call("ListPodSandbox").items]
        left += [c.id for c in self.call("ListContainers").containers]
        assert not left, "the CRI still lists %s" % left

    def watch_exits(self):
        """`ctr events` in the background: the task exits containerd publishes."""
        return ExitWatcher(self)

    # ------------------------------------------------------------ clean-up

    def stop(self):
        """Remove every pod, end containerd and its shims, and undo what it left."""
        errors = []
        if self.channel is not None:
            if self.proc.poll() is None:
                try:
                    self.remove_every_pod()
                except Exception as e:  # noqa: BLE001 -- clean up the rest regardless
                    errors.append("removing pods: %r" % e)
            self.channel.close()
        self.end()
        # What containerd could not remove outlives it: the containers'
        # processes (in our cgroups) and their shims (ended above).
        for pid in self.contained_processes():
            os.kill(pid, signal.SIGKILL)
        wait_for(
            lambda: not shims_of(self.socket) and not self.contained_processes(),
            10,
            "the shims and the pods' processes to exit",
        )
        self.remove_mounts()
        errors += self.remove_cgroups()
        left = mounts_under(self.dir)
        assert not left and not errors, (left, errors)

    def remove_mounts(self):
        """Unmount what is left under the node's directory, and the pods' network namespaces."""
        for mount in reversed(mounts_under(self.dir)):
            run(["umount", mount], check=False)
        for path in self.netns_paths:  # bind mounts of the pods' network namespaces
            if os.path.ismount(path):
                run(["umount", path], check=False)
            if os.path.exists(path):
                os.unlink(path)
        for sandbox_id in self.created:
            for name in cni_cache_entries(sandbox_id):
                os.unlink(os.path.join(CNI_CACHE, name))

    def remove_cgroups(self):
        """Remove the node's cgroups, children first; return what could not be removed."""
        errors = []
        for hierarchy in cgroup_hierarchies():
            for directory, _, _ in sorted(os.walk(hierarchy + self.cgroup_root), reverse=True):
                try:
                    os.rmdir(directory)
                except OSError as e:
                    errors.append("cgroup %s: %s" % (directory, e))
        return errors

    def contained_processes(self):
        """PIDs in the cgroups of this node's pods."""
        pids = set()
        for hierarchy in cgroup_hierarchies():
            for directory, _, files in os.walk(hierarchy + self.cgroup_root):
                if "cgroup.procs" in files:
                    with open(os.path.join(directory, "cgroup.procs")) as f:
                        pids.update(int(pid) for pid in f.read().split())
        return sorted(pids)


class ExitWatcher:
    """Collects the /tasks/exit events of `ctr events` while it runs."""

    def __init__(self, node):
        self.proc = subprocess.Popen(
            ["ctr", "--address", node.socket, "events"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.exits = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        for line in self.proc.stdout:
            if " /tasks/exit " in line:
                self.exits.append(json.loads(line[line.index("{") :]))

    def exit_of(self, container_id, timeout=10):
        """The exit event of `container_id`'s task: exit_status, exited_at, pid."""
        return wait_for(
            lambda: next(
                (
                    e
                    for e in self.exits
                    if e["container_id"] == container_id and e["id"] == container_id
                ),
                None,
            ),
            timeout,
            "the exit event of %s" % container_id,
        )

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
        self.proc.wait(10)
        self.thread.join(10)


# ---------------------------------------------------------------- requests


def pod_config(cri, node, name, share_pid=False, host_network=False):
    """The PodSandboxConfig the kubelet sends for a pod.

    What the kubelet's generatePodSandboxConfig puts there: metadata, labels,
    hostname (not with hostNetwork), the log directory, and a security context
    with seccomp RuntimeDefault (always, since Kubernetes 1.20's #84623 fix),
    the namespaces (pid POD with shareProcessNamespace, else CONTAINER;
    network NODE with hostNetwork) and, for a "restricted" pod's
    securityContext (runAsUser/runAsGroup 65535, runAsNonRoot), the user and
    group. Also readonly_rootfs, which the CRI has for a sandbox and the
    kubelet leaves unset (containerd 1.6 makes a sandbox's root read-only and
    sets no_new_privs either way). The sandbox context has no capabilities or
    no_new_privs fields: those are per container in the CRI.
    """
    uid = str(uuid.uuid4())
    log_directory = os.path.join(node.dir, "pods", "default_%s_%s" % (name, uid))
    os.makedirs(log_directory)
    namespaces = cri.NamespaceOption(
        network=cri.NODE if host_network else cri.POD,
        pid=cri.POD if share_pid else cri.CONTAINER,
        ipc=cri.POD,
    )
    security = cri.LinuxSandboxSecurityContext(
        namespace_options=namespaces,
        seccomp=cri.SecurityProfile(profile_type=cri.SecurityProfile.RuntimeDefault),
        readonly_rootfs=True,
    )
    security.run_as_user.value = 65535
    security.run_as_group.value = 65535
    labels = {
        "io.kubernetes.pod.name": name,
        "io.kubernetes.pod.namespace": "default",
        "io.kubernetes.pod.uid": uid,
    }
    return cri.PodSandboxConfig(
        metadata=cri.PodSandboxMetadata(name=name, uid=uid, namespace="default", attempt=0),
        hostname="" if host_network else name,
        log_directory=log_directory,
        labels=labels,
        annotations={"kubernetes.io/config.source": "api"},
        linux=cri.LinuxPodSandboxConfig(
            cgroup_parent="%s/pod%s" % (node.cgroup_root, uid), security_context=security
        ),
    )


def container_config(cri, pod, name, image, command, attempt=0):
    """The ContainerConfig of a "restricted" container in `pod`.

    runAsUser 65535, allowPrivilegeEscalation false (no_new_privs),
    capabilities drop ALL, readOnlyRootFilesystem, seccomp RuntimeDefault;
    the pod's namespaces (pid POD when the pod shares its process namespace).
    """
    sandbox_ns = pod.linux.security_context.namespace_options
    security = cri.LinuxContainerSecurityContext(
        capabilities=cri.Capability(drop_capabilities=["ALL"]),
        namespace_options=cri.NamespaceOption(
            network=sandbox_ns.network, pid=sandbox_ns.pid, ipc=sandbox_ns.ipc
        ),
        readonly_rootfs=True,
        no_new_privs=True,
        seccomp=cri.SecurityProfile(profile_type=cri.SecurityProfile.RuntimeDefault),
    )
    security.run_as_user.value = 65535
    os.makedirs(os.path.join(pod.log_directory, name), exist_ok=True)
    return cri.ContainerConfig(
        metadata=cri.ContainerMetadata(name=name, attempt=attempt),
        image=cri.ImageSpec(image=image),
        command=command,
        log_path="%s/%d.log" % (name, attempt),
        labels={"io.kubernetes.container.name": name},
        linux=cri.LinuxContainerConfig(security_context=security),
    )


# ---------------------------------------------------------------- the host's view


def processes_mentioning(text):
    """PIDs whose command line contains `text` (a sandbox's id, say)."""
    return [pid for pid, argv in command_lines().items() if text.encode() in b"\0".join(argv)]


def cni_cache_entries(sandbox_id):
    try:
        names = os.listdir(CNI_CACHE)
    except OSError:
        return []
    return [n for n in names if n.startswith(CNI_NETWORK + "-" + sandbox_id)]

"""What the kernel says about processes, read from /proc: the one reader of it
for the tests and the benchmarks.

Every reader takes a PID as this process sees it (for a PID 1 of a namespace
of its own: its PID out here). Those that answer "is it there" return None
or an empty result for a process that is gone; those that measure (rss_kib,
cpu_ns, ...) raise OSError.
"""

import collections
import os
import time

# The fields of /proc/PID/stat (proc(5)) that the tests and benchmarks read,
# by their index after the ")" that ends the command name. The name is in
# parentheses and may itself hold spaces and parentheses: the last ")" ends it.
_STAT_FIELDS = {
    "state": 0,
    "ppid": 1,
    "pgrp": 2,
    "session": 3,
    "tpgid": 5,
    "utime": 11,
    "stime": 12,
    "starttime": 19,
}
Stat = collections.namedtuple("Stat", ["pid", "comm", *_STAT_FIELDS])


def parse_stat(text):
    """The Stat of one /proc/PID/stat line (numbers as ints, state a letter)."""
    comm = text[text.index("(") + 1 : text.rindex(")")]
    after = text[text.rindex(")") + 2 :].split()
    values = {name: after[i] for name, i in _STAT_FIELDS.items()}
    return Stat(
        int(text.split(None, 1)[0]),
        comm,
        values.pop("state"),
        **{name: int(v) for name, v in values.items()},
    )


def stat(pid):
    """The Stat of `pid`, or None if it is gone (reaped: a zombie still has one)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return parse_stat(f.read())
    except OSError:  # ENOENT, or ESRCH when it went between the open and the read
        return None


def processes():
    """{pid: Stat} of every process this /proc shows."""
    found = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            fields = stat(int(name))
            if fields:
                found[int(name)] = fields
    return found


def tids(pid):
    """The thread IDs of `pid` (the names in /proc/PID/task), or None if it is gone."""
    try:
        return os.listdir("/proc/%d/task" % pid)
    except OSError:
        return None


def children(pid):
    """PIDs of the children of every thread of `pid`, zombies included; [] if gone."""
    found = []
    for tid in tids(pid) or ():
        try:
            with open("/proc/%d/task/%s/children" % (pid, tid)) as f:
                found.extend(int(c) for c in f.read().split())
        except OSError:
            continue  # the thread ended while we listed it
    return found


def children_of(pid, comm=None):
    """PIDs whose parent is `pid` (and whose name is `comm`, if given)."""
    return [p for p, s in processes().items() if s.ppid == pid and (comm is None or s.comm == comm)]


def zombies_of(pid):
    """PIDs of the children of `pid` that have exited and not been reaped yet."""
    found = []
    for child in children(pid):
        fields = stat(child)
        if fields and fields.state == "Z":  # None: reaped since the listing
            found.append(child)
    return found


def descendants(pid):
    """{pid: Stat} of `pid` and of every process below it, zombies included."""
    table = processes()
    found = {pid: table[pid]} if pid in table else {}
    below = {}
    for p, s in table.items():
        below.setdefault(s.ppid, []).append(p)
    frontier = [pid]
    while frontier:
        for p in below.get(frontier.pop(), ()):
            if p not in found:
                found[p] = table[p]
                frontier.append(p)
    return found


def namespace(pid, kind):
    """The identity of `pid`'s namespace of `kind` ("pid", "net", ...), as
    "pid:[4026532195]". Raises OSError if `pid` is gone."""
    return os.readlink("/proc/%d/ns/%s" % (pid, kind))


def pidns_members(pid):
    """{pid: Stat} of every process in the PID namespace of `pid`; {} if it is gone."""
    try:
        ns = namespace(pid, "pid")
    except OSError:
        return {}
    return namespace_members(ns)


def namespace_members(pid_ns):
    """{pid: Stat} of every process whose PID namespace is `pid_ns` (a
    namespace() identity: it outlives the namespace's PID 1)."""
    members = {}
    for p, s in processes().items():
        try:
            if namespace(p, "pid") == pid_ns:
                members[p] = s
        except OSError:
            continue  # gone meanwhile
    return members


def waiting_for_signals(pid):
    """True if `pid`'s main thread sleeps in sigwaitinfo()/sigtimedwait().

    /proc/PID/wchan names the kernel function a task sleeps in, the same on
    every architecture (the syscall numbers of /proc/PID/syscall differ).
    """
    try:
        with open("/proc/%d/wchan" % pid) as f:
            return "sigtimedwait" in f.read()
    except OSError:
        return False


def all_threads_asleep(pid):
    """True if every thread of `pid` sleeps in a system call."""
    threads = tids(pid)
    return threads is not None and all(
        syscall(pid, tid)[:1] not in ([], ["running"]) for tid in threads
    )


# -- /proc/PID/status -----------------------------------------------------------


def status_fields(pid, tid=None):
    """{field: value} of /proc/PID/status (of thread `tid`, if given), the
    values as written, tabs and all. Raises OSError if it is gone."""
    path = "/proc/%d/status" % pid if tid is None else "/proc/%d/task/%s/status" % (pid, tid)
    with open(path) as f:
        return dict(line.rstrip("\n").split(":", 1) for line in f if ":" in line)


def status_field(pid, key, tid=None):
    """The words of field `key` of /proc/PID/status (of thread `tid`, if given)."""
    return status_fields(pid, tid)[key].split()


def _signal_set(pid, key):
    try:
        mask = int(status_field(pid, key)[0], 16)
    except OSError:
        return None
    return {n + 1 for n in range(64) if mask >> n & 1}


def blocked_signals(pid):
    """The set of signals `pid` blocks (SigBlk of its main thread), or None if gone."""
    return _signal_set(pid, "SigBlk")


def ignored_signals(pid):
    """The set of signals `pid` ignores (SigIgn), or None if it is gone."""
    return _signal_set(pid, "SigIgn")


def rss_kib(pid):
    """Resident set size (VmRSS): every page mapped in RAM, shared ones too."""
    return int(status_field(pid, "VmRSS")[0])


def context_switches(pid):
    """Voluntary + involuntary context switches, summed over the live threads.

    A thread that exited took its count with it; idle inits do not start or
    end threads, and thread_count() lets the caller check that.
    """
    total = 0
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            fields = status_fields(pid, tid)
        except FileNotFoundError:
            continue  # the thread ended while we listed it
        total += int(fields["voluntary_ctxt_switches"]) + int(fields["nonvoluntary_ctxt_switches"])
    return total


def _rollup_kib(pid, keys):
    fields = {}
    with open("/proc/%d/smaps_rollup" % pid) as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.split()
    return sum(int(fields[k][0]) for k in keys)


def uss_kib(pid):
    """Unique set size: the pages only this process maps (what killing it frees)."""
    return _rollup_kib(pid, ("Private_Clean", "Private_Dirty"))


def pss_kib(pid):
    """Proportional set size: each page's size divided by the processes mapping it."""
    return _rollup_kib(pid, ("Pss",))


# -- CPU, threads, fds ------------------------------------------------------------

# clock_getcpuclockid(3) for another process: MAKE_PROCESS_CPUCLOCK(pid,
# CPUCLOCK_SCHED) from the kernel's posix-timers.h. This clock counts every
# thread the process ever had, in nanoseconds; summing /proc/PID/task/*/schedstat
# would lose the CPU time of threads that already exited (a metrics server
# may run one thread per request).
_CPUCLOCK_SCHED = 2


def cpu_ns(pid):
    """CPU time (user + system) of the whole process so far, in nanoseconds."""
    return time.clock_gettime_ns(((~pid) << 3) | _CPUCLOCK_SCHED)


def thread_count(pid):
    return len(os.listdir("/proc/%d/task" % pid))


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def fd_flags(pid, fd):
    """The open-file flags of `pid`'s `fd` (octal "flags:" of /proc/PID/fdinfo/FD)."""
    with open("/proc/%d/fdinfo/%d" % (pid, fd)) as f:
        for line in f:
            if line.startswith("flags:"):
                return int(line.split()[1], 8)
    raise KeyError("flags")


def title(pid):
    """The words of the process title (setproctitle pads /proc/PID/cmdline with
    NULs), or None if it is gone."""
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().split(b"\0")[0].decode().split()
    except OSError:
        return None


def io_counters(pid):
    """{field: int} of /proc/PID/io (rchar, wchar, read_bytes, ...)."""
    with open("/proc/%d/io" % pid) as f:
        return {k: int(v) for k, v in (line.split(": ") for line in f)}


def cwd(pid):
    """The working directory of `pid`."""
    return os.readlink("/proc/%d/cwd" % pid)


def exe(pid):
    """The executable `pid` runs, or None if it is gone (or a zombie)."""
    try:
        return os.readlink("/proc/%d/exe" % pid)
    except OSError:
        return None


def fd_target(pid, fd):
    """What `pid`'s descriptor `fd` refers to ("/dev/null", "pipe:[123]", ...)."""
    return os.readlink("/proc/%d/fd/%d" % (pid, fd))


def syscall(pid, tid=None):
    """The words of /proc/PID/syscall (of thread `tid`, if given): the number of
    the system call it sleeps in and its arguments, or ["running"]; [] if it
    is gone."""
    path = "/proc/%d/syscall" % pid if tid is None else "/proc/%d/task/%s/syscall" % (pid, tid)
    try:
        with open(path) as f:
            return f.read().split()
    except OSError:
        return []


def command_lines():
    """{pid: argv as bytes} of every process this /proc shows."""
    found = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open("/proc/%s/cmdline" % name, "rb") as f:
                    found[int(name)] = f.read().split(b"\0")
            except OSError:
                continue
    return found


def environ_holds(pid, entry):
    """True if `entry` (b"NAME=value") is in `pid`'s initial environment."""
    try:
        with open("/proc/%d/environ" % pid, "rb") as f:
            return entry in f.read().split(b"\0")
    except OSError:  # gone, a zombie (empty), or not ours to read
        return False


# -- mounts, sockets ----------------------------------------------------------------


def _mounts(pid="self"):
    """(mount point, options, file system type, super options) of each mount
    of /proc/PID/mountinfo, in the order they were mounted."""
    with open("/proc/%s/mountinfo" % pid) as f:
        rows = [line.split() for line in f]
    return [(row[4], row[5].split(","), row[row.index("-") + 1], row[-1]) for row in rows]


def mounts_under(directory):
    """Our mount points at or below `directory`, in the order they were mounted."""
    return [
        point
        for point, _, _, _ in _mounts()
        if point == directory or point.startswith(directory + "/")
    ]


def mounts_mentioning(text):
    """The lines of our /proc/self/mountinfo that contain `text`."""
    with open("/proc/self/mountinfo") as f:
        return [line.strip() for line in f if text in line]


def cgroup_mounts():
    """{"unified": the cgroup v2 mount, "pids": the cgroup v1 pids mount}, those there are."""
    found = {}
    for point, _, kind, super_options in _mounts():
        if kind == "cgroup2":
            found.setdefault("unified", point)
        elif kind == "cgroup" and "pids" in super_options.split(","):
            found.setdefault("pids", point)
    return found


def cgroup_hierarchies():
    """Mount points of the cgroup file systems (v1 controllers and v2)."""
    return [point for point, _, kind, _ in _mounts() if kind in ("cgroup", "cgroup2")]


def root_is_read_only(pid):
    """True if `/` is mounted read-only in `pid`'s mount namespace."""
    return any(point == "/" and "ro" in options for point, options, _, _ in _mounts(pid))


def _listening(pid):
    """(port, connections waiting in its accept queue) of each TCP socket `pid` listens on.

    The socket inodes among /proc/PID/fd are matched with LISTEN rows of
    /proc/PID/net/tcp{,6} (IPv4 and IPv6).
    """
    inodes = set()
    fd_dir = "/proc/%d/fd" % pid
    for fd in os.listdir(fd_dir):
        try:
            target = os.readlink(os.path.join(fd_dir, fd))
        except FileNotFoundError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = []
    for table in ("tcp", "tcp6"):
        try:
            with open("/proc/%d/net/%s" % (pid, table)) as f:
                next(f)  # header
                for line in f:
                    cols = line.split()
                    # cols[1] local "ADDR:PORT" in hex, cols[3] state (0A = LISTEN),
                    # cols[4] "tx_queue:rx_queue" (for LISTEN, rx_queue is the accept
                    # queue), cols[9] inode
                    if cols[3] == "0A" and cols[9] in inodes:
                        found.append(
                            (
                                int(cols[1].rpartition(":")[2], 16),
                                int(cols[4].partition(":")[2], 16),
                            )
                        )
        except FileNotFoundError:
            continue
    return found


def listening_tcp_ports(pid):
    """TCP ports that `pid` listens on: finds the port an init bound with port 0
    without parsing its logs."""
    return sorted({port for port, _ in _listening(pid)})


def accept_queue(pid):
    """Connections the kernel has established for `pid` that it has not accept()ed yet."""
    return sum(queued for _, queued in _listening(pid))


def interfaces(pid):
    """Network interfaces of the network namespace of `pid` (/proc/PID/net/dev)."""
    with open("/proc/%d/net/dev" % pid) as f:
        return sorted(line.split(":")[0].strip() for line in f.readlines()[2:])


def ipv6_addresses(pid):
    """(address in hex, interface) of each IPv6 address of the network namespace
    of `pid` (/proc/PID/net/if_inet6); [] where IPv6 is disabled or absent."""
    try:
        with open("/proc/%d/net/if_inet6" % pid) as f:
            return [(row[0], row[-1]) for row in (line.split() for line in f)]
    except FileNotFoundError:  # a kernel without IPv6
        return []


def listen_overflows():
    """TcpExt ListenOverflows of this network namespace: SYNs dropped on a full backlog."""
    with open("/proc/net/netstat") as f:
        lines = f.read().splitlines()
    for names, values in zip(lines[::2], lines[1::2]):
        if names.startswith("TcpExt:"):
            return int(dict(zip(names.split(), values.split()))["ListenOverflows"])
    return 0

"""What the kernel says about a running init, read from /proc.

All readers take a PID as the harness sees it (the init's PID in the
harness's own PID namespace) and raise OSError once the process is gone.
"""

import os
import time

# clock_getcpuclockid(3) for another process: MAKE_PROCESS_CPUCLOCK(pid,
# CPUCLOCK_SCHED) from the kernel's posix-timers.h. This clock counts every
# thread the process ever had, in nanoseconds; summing /proc/PID/task/*/schedstat
# would lose the CPU time of threads that already exited (a metrics server
# may run one thread per request).
_CPUCLOCK_SCHED = 2


def cpu_ns(pid):
    """CPU time (user + system) of the whole process so far, in nanoseconds."""
    return time.clock_gettime_ns(((~pid) << 3) | _CPUCLOCK_SCHED)


def tasks(pid):
    return os.listdir("/proc/%d/task" % pid)


def _status_fields(path):
    fields = {}
    with open(path) as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


def context_switches(pid):
    """Voluntary + involuntary context switches, summed over the live threads.

    A thread that exited took its count with it; idle inits do not start or
    end threads, and thread_count() lets the caller check that.
    """
    total = 0
    for tid in tasks(pid):
        try:
            fields = _status_fields("/proc/%d/task/%s/status" % (pid, tid))
        except FileNotFoundError:
            continue  # the thread ended while we listed it
        total += int(fields["voluntary_ctxt_switches"])
        total += int(fields["nonvoluntary_ctxt_switches"])
    return total


def thread_count(pid):
    return len(tasks(pid))


def rss_kib(pid):
    """Resident set size (VmRSS): every page mapped in RAM, shared ones too."""
    return int(_status_fields("/proc/%d/status" % pid)["VmRSS"].split()[0])


def _rollup_kib(pid, keys):
    fields = _status_fields("/proc/%d/smaps_rollup" % pid)
    return sum(int(fields[k].split()[0]) for k in keys)


def uss_kib(pid):
    """Unique set size: the pages only this process maps (what killing it frees)."""
    return _rollup_kib(pid, ("Private_Clean", "Private_Dirty"))


def pss_kib(pid):
    """Proportional set size: each page's size divided by the processes mapping it."""
    return _rollup_kib(pid, ("Pss",))


def state(pid):
    """The one-letter state from /proc/PID/stat (R, S, Z, ...)."""
    with open("/proc/%d/stat" % pid) as f:
        return f.read().rpartition(")")[2].split()[0]


def children(pid):
    """PIDs of the children of every thread of `pid`, zombies included."""
    found = []
    for tid in tasks(pid):
        try:
            with open("/proc/%d/task/%s/children" % (pid, tid)) as f:
                found.extend(int(c) for c in f.read().split())
        except FileNotFoundError:
            continue
    return found


def zombie_children(pid):
    """How many children of `pid` have exited and not been reaped yet."""
    count = 0
    for child in children(pid):
        try:
            if state(child) == "Z":
                count += 1
        except (FileNotFoundError, ProcessLookupError):
            continue  # reaped between the listing and now (ESRCH if during the read)
    return count


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

"""When processes exec, as the kernel reports it: the proc connector.

With CONFIG_PROC_EVENTS, a netlink socket (NETLINK_CONNECTOR, group
CN_IDX_PROC) receives a message for every fork and exec on the machine, each
stamped by the kernel at the event with ktime_get_ns(), which is
CLOCK_MONOTONIC. The time from one exec to another is thus the kernel's own,
with nothing of the harness's scheduling in it. PIDs are those of the initial
PID namespace, where the harness runs (the connector serves no other). Needs
CAP_NET_ADMIN (root).
"""

import errno
import socket
import struct

NETLINK_CONNECTOR, CN_IDX_PROC, CN_VAL_PROC = 11, 1, 1
NLMSG_DONE, PROC_CN_MCAST_LISTEN = 3, 1
PROC_EVENT_FORK, PROC_EVENT_EXEC = 1, 2
_NLMSGHDR = struct.Struct("=IHHII")  # length, type, flags, sequence, port
_CN_MSG = struct.Struct("=IIIIHH")  # idx, val, sequence, ack, data length, flags
# struct proc_event: what, cpu, timestamp_ns, then for a fork (parent pid,
# parent tgid, child pid, child tgid) and for an exec (pid, tgid).
_EVENT = struct.Struct("=IIQIIII")
_EVENT_AT = _NLMSGHDR.size + _CN_MSG.size


class ProcEvents:
    """The forks and execs of every process, from the moment this is open."""

    def __init__(self):
        self.lost = 0  # times the socket's buffer overflowed, losing events
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_CONNECTOR)
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            self._sock.bind((0, CN_IDX_PROC))
            op = struct.pack("=I", PROC_CN_MCAST_LISTEN)
            msg = _CN_MSG.pack(CN_IDX_PROC, CN_VAL_PROC, 0, 0, len(op), 0) + op
            self._sock.send(_NLMSGHDR.pack(_NLMSGHDR.size + len(msg), NLMSG_DONE, 0, 0, 0) + msg)
            self._sock.setblocking(False)
        except OSError:
            self._sock.close()
            raise

    def close(self):
        self._sock.close()

    def read(self):
        """[(what, ns, a, b, c, d)] for the forks and execs since the last read."""
        events = []
        while True:
            try:
                data = self._sock.recv(65536)
            except BlockingIOError:
                return events
            except OSError as e:
                if e.errno != errno.ENOBUFS:
                    raise
                self.lost += 1
                continue
            if len(data) >= _EVENT_AT + _EVENT.size:
                event = _EVENT.unpack_from(data, _EVENT_AT)
                if event[0] in (PROC_EVENT_FORK, PROC_EVENT_EXEC):
                    events.append(event[:1] + event[2:])


def exec_to_child_exec(events, pid):
    """Nanoseconds from the exec of `pid` to the first exec of a process it forked.

    None if either is missing from `events` (lost, or `pid` never ran a child).
    """
    started, children = None, set()
    for what, ns, _a, b, _c, d in events:
        if what == PROC_EVENT_FORK and b == pid:
            children.add(d)
        elif what == PROC_EVENT_EXEC and b == pid and started is None:
            started = ns
        elif what == PROC_EVENT_EXEC and b in children and started is not None:
            return ns - started
    return None

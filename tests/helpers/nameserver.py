"""A name server on 127.0.0.1:53 (UDP) that answers as told, for resolver tests.

usage: nameserver.py MODE LOG [DELAY]
MODE silent: never answers; nxdomain: answers NXDOMAIN; refused: answers
REFUSED; slow: after DELAY seconds, answers A queries with 127.0.0.1 and
every other type with no record (NOERROR). Each query is appended to the
file LOG as "NAME TYPE" (one line) when it arrives. Prints "ready" once it
listens; runs until killed. Meant to run in a network namespace of its own.
"""

import select
import socket
import struct
import sys
import time

mode, log = sys.argv[1], sys.argv[2]
delay = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
RCODES = {"nxdomain": 3, "refused": 5, "slow": 0}


def question(packet):
    """(name, type, end of the question section) of the first question."""
    labels, at = [], 12
    while packet[at]:
        labels.append(packet[at + 1 : at + 1 + packet[at]].decode("ascii", "replace"))
        at += 1 + packet[at]
    qtype = struct.unpack("!H", packet[at + 1 : at + 3])[0]
    return ".".join(labels), qtype, at + 5


def answer(packet):
    ident, flags = struct.unpack("!HH", packet[:4])
    _, qtype, end = question(packet)
    records = b""
    if mode == "slow" and qtype == 1:  # A: 127.0.0.1, named by a pointer to the question
        records = struct.pack("!HHHIH", 0xC00C, 1, 1, 60, 4) + socket.inet_aton("127.0.0.1")
    # QR, the query's RD, RA, and the response code
    reply_flags = 0x8000 | (flags & 0x0100) | 0x0080 | RCODES[mode]
    return (
        struct.pack("!HHHHHH", ident, reply_flags, 1, 1 if records else 0, 0, 0)
        + packet[12:end]
        + records
    )


sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("127.0.0.1", 53))
print("ready", flush=True)
due = []  # (when, reply, address)
while True:
    timeout = max(0.0, min(w for w, _, _ in due) - time.monotonic()) if due else None
    if select.select([sock], [], [], timeout)[0]:
        packet, address = sock.recvfrom(4096)
        name, qtype, _ = question(packet)
        with open(log, "a") as f:
            f.write("%s %d\n" % (name, qtype))
        if mode != "silent":
            due.append((time.monotonic() + delay, answer(packet), address))
    now = time.monotonic()
    for item in [d for d in due if d[0] <= now]:
        due.remove(item)
        sock.sendto(item[1], item[2])

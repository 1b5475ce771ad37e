"""The metrics address: `[HOST:]PORT` as the user writes it, and the socket
that listens on it.

What may be written and what can be listened on are one subject, so they
live here together. They run at different times: parse() when the command
line is read, before the child is started (cli imports this module only for
a `--metrics-addr`), listen() in the metrics thread. So this module needs
only the C module `_socket`; listen() imports `socket`, which imports enum and
selectors, when it runs.
"""

import _socket
import errno

#: typing-only imports without importing typing at run time (mypy: always_true).
TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    from typing import Any


def parse(text: str) -> "tuple[str | None, int]":
    """Parse `[HOST:]PORT` into (host, port); a bare PORT (host None) binds
    every interface, IPv6 and IPv4.

    HOST is an IPv4 address, `[IPv6]` (with an optional `%zone`), or a DNS
    name of ASCII letters, digits and hyphens: anything else (an IDNA name, an
    over-long label) is refused here, before the child is started, rather
    than failing at bind time. Raises ValueError.
    """
    host: str | None
    if text.startswith("["):  # IPv6: [::]:PORT
        host, sep, port = text[1:].partition("]:")
        if not sep or not _is_ipv6(host):
            raise ValueError(text)
    else:
        host, sep, port = text.rpartition(":")
        if not sep:
            host = None  # every interface, IPv6 and IPv4: see listen()
        elif not (_is_address(_socket.AF_INET, host) or _is_hostname(host)):
            raise ValueError(text)
    if not (port.isascii() and port.isdigit()) or int(port) > 65535:
        raise ValueError(text)
    return host, int(port)


def _is_ipv6(text: str) -> bool:
    address, percent, zone = text.partition("%")
    if percent and not (0 < len(zone) < 16 and _is_name(zone.replace(".", "-"))):
        return False
    return _is_address(_socket.AF_INET6, address)


def _is_address(family: int, text: str) -> bool:
    try:
        _socket.inet_pton(family, text)
    except (OSError, ValueError):  # ValueError: an embedded NUL
        return False
    return True


def _is_hostname(text: str) -> bool:
    """A DNS name (RFC 1123): at most 253 characters, dot-separated labels of
    1 to 63 ASCII letters, digits and inner hyphens; one final dot allowed."""
    name = text[:-1] if text.endswith(".") else text
    return 0 < len(name) <= 253 and all(
        0 < len(label) <= 63
        and _is_name(label)
        and not label.startswith("-")
        and not label.endswith("-")
        for label in name.split(".")
    )


def _is_name(text: str) -> bool:
    return text.isascii() and text.replace("-", "").replace("_", "").isalnum()


def is_numeric(host: str) -> bool:
    """True if `host` is an IP address (a zone too): listening on it asks no
    name server."""
    try:
        _socket.getaddrinfo(host, None, 0, 0, 0, _socket.AI_NUMERICHOST)
    except (OSError, UnicodeError):
        return False
    return True


def listen(host: "str | None", port: int) -> "tuple[socket.socket, str]":
    """A non-blocking listening socket; return (socket, how to show its address).

    `host` None means every interface, IPv6 and IPv4 alike (`[::]` with
    IPV6_V6ONLY off), or IPv4 alone (`0.0.0.0`) where the kernel has no IPv6.
    Raises OSError (and UnicodeError for a name IDNA cannot encode).
    """
    import socket

    if host is None:
        try:
            sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        except OSError:
            return listen("0.0.0.0", port)
        try:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            return _listen(sock, ("::", port)), "[::]"
        except OSError as e:
            sock.close()
            if e.errno not in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
                raise
            return listen("0.0.0.0", port)
    family, _, _, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        _listen(sock, address)
    except OSError:
        sock.close()
        raise
    shown: str = address[0]  # type: ignore[assignment]  # AF_INET or AF_INET6: a str
    return sock, "[%s]" % shown if family == socket.AF_INET6 else shown


def _listen(sock: "socket.socket", address: "tuple[Any, ...]") -> "socket.socket":
    import socket

    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(address)
    # A burst of scrapers must not wait for SYN retransmission (a backlog of 5 did).
    sock.listen(128)
    sock.setblocking(False)
    return sock

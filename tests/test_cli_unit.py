"""The parser's and the log lines' pure logic, without starting processes."""

import json
import random
import signal
import socket

import pytest

from pypause import address, cli, log, signals

pytestmark = pytest.mark.timeout(10)


@pytest.mark.parametrize(
    "text, addr",
    [
        ("9100", (None, 9100)),
        ("0", (None, 0)),
        ("127.0.0.1:9100", ("127.0.0.1", 9100)),
        ("localhost:80", ("localhost", 80)),
        ("[::]:9100", ("::", 9100)),
        ("[::1]:1", ("::1", 1)),
        ("[fe80::1%eth0]:9100", ("fe80::1%eth0", 9100)),
        ("metrics.my-pod.svc:9100", ("metrics.my-pod.svc", 9100)),
    ],
)
def test_metrics_addr(text, addr):
    assert address.parse(text) == addr


@pytest.mark.parametrize(
    "text",
    [
        "",
        ":",
        "x",
        "host:",
        ":80",
        "::1:80",
        "[::1]",
        "[]:80",
        "1:2:3",
        "65536",
        "-1",
        "9100 ",
        "٣",
    ],
)
def test_bad_metrics_addr(text):
    with pytest.raises(ValueError):
        address.parse(text)


def test_flags_cluster_and_win_over_environment():
    config = cli.parse(
        ["-vv", "--metrics-addr=1.2.3.4:5", "cmd", "-v"],
        {"PYPAUSE_VERBOSITY": "5", "PYPAUSE_METRICS_ADDR": "9"},
    )
    assert config.command == ["cmd", "-v"]
    assert config.verbosity == 2
    assert config.metrics_addr == ("1.2.3.4", 5)


def test_environment_applies_without_flags():
    config = cli.parse([], {"PYPAUSE_VERBOSITY": "1", "PYPAUSE_METRICS_ADDR": "9100"})
    assert (config.command, config.verbosity, config.metrics_addr) == ([], 1, (None, 9100))


def test_lone_dash_is_a_command():
    assert cli.parse(["-", "x"], {}).command == ["-", "x"]


@pytest.mark.parametrize(
    "text, signum",
    [
        ("TERM", 15),
        ("SIGTERM", 15),
        ("term", 15),
        ("9", 9),
        ("RTMIN", signal.SIGRTMIN),
        ("SIGRTMIN+2", signal.SIGRTMIN + 2),
        ("RTMAX-1", signal.SIGRTMAX - 1),
        ("IOT", signal.SIGABRT),
        ("cld", signal.SIGCHLD),
    ],
)
def test_signal_names(text, signum):
    assert signals.parse(text) == signum


@pytest.mark.parametrize("text", ["", "NOPE", "0", "65", "RTMIN+99", "RTMIN-1", "SIG"])
def test_bad_signal_names(text):
    with pytest.raises(ValueError):
        signals.parse(text)


def test_signal_name_round_trip():
    for signum in signals.WAITED:
        assert signals.parse(signals.name(signum)) == signum


def test_signal_names_are_those_of_the_signal_module():
    """signals.py names them without `signal` (and its enum): the same names
    (and SIGSTKFLT, which Python names only from 3.11 on)."""
    for signum in range(1, signal.NSIG):
        if signal.SIGRTMIN < signum < signal.SIGRTMAX:
            expected = "SIGRTMIN+%d" % (signum - signal.SIGRTMIN)
        else:
            try:
                expected = signal.Signals(signum).name
            except ValueError:
                expected = "SIGSTKFLT" if signum == 16 else "SIG%d" % signum
        assert signals.name(signum) == expected
        if signum in signal.valid_signals():  # not glibc's own 32 and 33
            assert signals.parse(expected) == signum


def test_fuzzed_metrics_addresses_are_refused_or_bindable():
    """Whatever is accepted can be handed to getaddrinfo without an exception
    other than OSError (no IDNA UnicodeError, no ValueError)."""
    rng = random.Random(10)
    alphabet = [
        "a",
        "b",
        "7",
        "-",
        "_",
        ".",
        ":",
        "[",
        "]",
        "%",
        "::",
        "é",
        "\u00df",
        "\U0001f600",
        " ",
        "\x00",
        "a" * 63,
        "b" * 64,
        "1.2.3.4",
        "::1",
        "99999",
    ]
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 8)))
        if rng.random() < 0.5:
            text += ":%d" % rng.choice([0, 1, 9100, 65535, 65536, 10**6])
        try:
            host, port = address.parse(text)
        except ValueError:
            continue
        assert 0 <= port <= 65535
        if host is None:
            continue
        try:
            socket.getaddrinfo(host, port, flags=socket.AI_NUMERICHOST)
        except socket.gaierror:  # a name, not an address: it must encode for DNS
            assert host.encode("idna").decode("ascii") == host


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_fuzzed_log_lines_are_one_valid_line_within_pipe_buf(log_format):
    rng = random.Random(4)
    pieces = [
        "x",
        "\n",
        "\r",
        "\x1b[2J",
        "\x00",
        "é",
        "\U0001f600",
        "\udcff",
        '"',
        "\\",
        "[pypause] ok",
        " ",
        "=",
        "\u2028",
    ]
    log.configure(0, log_format)
    try:
        wide = ["\U0001f600", "\udcff", "\x01"]  # 12, 6 and 6 bytes in JSON
        for _ in range(500):
            pool = pieces if rng.random() < 0.5 else wide
            msg = "".join(rng.choice(pool) for _ in range(rng.choice([1, 10, 500, 3000])))
            field = "".join(rng.choice(pieces) for _ in range(rng.choice([0, 5, 2000])))
            line = log.format_line(log.WARNING, msg, {"comm": field, "pid": 7})
            assert len(line) <= 4096 and line.endswith(b"\n")
            assert line.count(b"\n") == 1 and b"\r" not in line
            text = line.decode("utf-8")  # strict: valid UTF-8
            if log_format == "json":
                assert json.loads(text)["level"] == "warning"
            else:
                assert text.startswith("[pypause] WARNING: ")
                assert not {"\x1b", "\x00", "\u2028"} & set(text)
    finally:
        log.configure(0, "text")


def test_text_fields_cannot_forge_a_line():
    line = log.format_line(log.WARNING, "reaped zombie", {"comm": "x\n[pypause] ok", "pid": 9})
    assert line == b'[pypause] WARNING: reaped zombie comm="x\\n[pypause] ok" pid=9\n'

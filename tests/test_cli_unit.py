"""The parser's pure logic, without starting processes."""

import pytest

from pypause import cli, signals

pytestmark = pytest.mark.timeout(10)


@pytest.mark.parametrize("text, addr", [
    ("9100", ("0.0.0.0", 9100)),
    ("0", ("0.0.0.0", 0)),
    ("127.0.0.1:9100", ("127.0.0.1", 9100)),
    ("localhost:80", ("localhost", 80)),
    ("[::]:9100", ("::", 9100)),
    ("[::1]:1", ("::1", 1)),
])
def test_metrics_addr(text, addr):
    assert cli.parse_metrics_addr(text) == addr


@pytest.mark.parametrize("text", ["", ":", "x", "host:", ":80", "::1:80", "[::1]", "[]:80",
                                  "1:2:3", "65536", "-1", "9100 ", "٣"])
def test_bad_metrics_addr(text):
    with pytest.raises(ValueError):
        cli.parse_metrics_addr(text)


def test_flags_cluster_and_win_over_environment():
    config = cli.parse(["-vv", "--metrics-addr=1.2.3.4:5", "cmd", "-v"],
                       {"PYPAUSE_VERBOSITY": "5", "PYPAUSE_METRICS_ADDR": "9"})
    assert config.command == ["cmd", "-v"]
    assert config.verbosity == 2
    assert config.metrics_addr == ("1.2.3.4", 5)


def test_environment_applies_without_flags():
    config = cli.parse([], {"PYPAUSE_VERBOSITY": "1", "PYPAUSE_METRICS_ADDR": "9100"})
    assert (config.command, config.verbosity, config.metrics_addr) == ([], 1, ("0.0.0.0", 9100))


def test_lone_dash_is_a_command():
    assert cli.parse(["-", "x"], {}).command == ["-", "x"]


@pytest.mark.parametrize("text, signum", [
    ("TERM", 15), ("SIGTERM", 15), ("term", 15), ("9", 9),
    ("RTMIN", signals.signal.SIGRTMIN), ("SIGRTMIN+2", signals.signal.SIGRTMIN + 2),
    ("RTMAX-1", signals.signal.SIGRTMAX - 1),
])
def test_signal_names(text, signum):
    assert signals.parse(text) == signum


@pytest.mark.parametrize("text", ["", "NOPE", "0", "65", "RTMIN+99", "RTMIN-1", "SIG"])
def test_bad_signal_names(text):
    with pytest.raises(ValueError):
        signals.parse(text)


def test_signal_name_round_trip():
    for signum in signals.WAITED:
        assert signals.parse(signals.name(signum)) == signum

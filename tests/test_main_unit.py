"""main's start of the metrics: whatever fails there, the init goes on, and
pause mode's privilege drop (`bound`) happens exactly once."""

import pytest

from pypause import address, main

pytestmark = pytest.mark.timeout(30)


def test_an_unexpected_error_while_starting_the_server_disables_metrics_only(monkeypatch, capfd):
    # What the pause image once did without the idna codec's stringprep:
    # getaddrinfo() raised LookupError on the main thread, and PID 1 died.
    def no_idna(host):
        raise LookupError("unknown encoding: idna")

    monkeypatch.setattr(address, "is_numeric", no_idna)
    drops = []
    assert main._start_metrics(("127.0.0.1", 0), "pause", lambda: drops.append(1)) is None
    assert drops == [1]
    err = capfd.readouterr().err
    assert err.count("\n") == 1 and "metrics disabled" in err and "idna" in err


def test_bound_is_not_called_twice_when_serving_fails_after_it(monkeypatch, capfd):
    from pypause import metrics

    def bound_then_fail(collected, host, port, bound):
        bound()
        raise RuntimeError("a bug after the drop")

    monkeypatch.setattr(metrics, "serve", bound_then_fail)
    drops = []
    assert main._start_metrics(("127.0.0.1", 0), "pause", lambda: drops.append(1)) is None
    assert drops == [1]
    assert "metrics disabled" in capfd.readouterr().err

"""The parts of prometheus_client that pypause uses, and nothing else.

`import prometheus_client` runs the package's __init__, which imports every
exposition helper it has: http.server, http.client, ssl, urllib, wsgiref —
~9 MiB of memory in every pod and ~100 ms of start-up. pypause needs the
registry, the metric families, the process collector and the OpenMetrics
writer. So the package is registered under its name without running its
__init__, and only those submodules are imported. The classic text format
is written here (`text()`): its writer in prometheus_client lives in
exposition.py, the very module that imports the HTTP machinery.

A prometheus_client that lays itself out differently fails here with an
ImportError naming its version, which pypause logs before going on without
metrics. The tests run against the oldest version pyproject.toml allows and
the newest.
"""

import os
import sys
from importlib.machinery import PathFinder

#: typing-only imports without importing typing at run time (mypy: always_true).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

TEXT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _register_package() -> None:
    """Put prometheus_client in sys.modules without running its __init__."""
    if "prometheus_client" in sys.modules:  # already imported whole (a test): use it
        return
    spec = PathFinder.find_spec("prometheus_client")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("prometheus_client is not installed")
    package = type(sys)("prometheus_client")
    package.__spec__ = spec
    package.__path__ = list(spec.submodule_search_locations)
    package.__file__ = spec.origin
    package.__package__ = "prometheus_client"
    sys.modules["prometheus_client"] = package


def _version() -> str:
    """prometheus_client's version, from the name of its .dist-info directory.

    Only to explain a failure: importlib.metadata would load email, zipfile
    and more, which the pause image then had to carry for this line alone.
    """
    prefix = "prometheus_client-"
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        for name in names:
            if name.startswith(prefix) and name.endswith(".dist-info"):
                return name[len(prefix) : -len(".dist-info")]
    return "(version unknown)"


_register_package()
try:
    from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily
    from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS_TYPE
    from prometheus_client.openmetrics.exposition import generate_latest as openmetrics
    from prometheus_client.process_collector import ProcessCollector
    from prometheus_client.registry import CollectorRegistry
    from prometheus_client.utils import floatToGoString
except ImportError as e:
    raise ImportError(
        "prometheus_client %s is not laid out as pypause expects: %s" % (_version(), e)
    ) from None

__all__ = [
    "CollectorRegistry",
    "CounterMetricFamily",
    "GaugeMetricFamily",
    "OPENMETRICS_TYPE",
    "ProcessCollector",
    "TEXT_TYPE",
    "openmetrics",
    "text",
]


def text(registry: "Any") -> bytes:
    """The Prometheus text format (0.0.4) of what `registry` collects.

    Only counters and gauges: all pypause exports (and none with `_created`).
    """
    out = []
    for family in registry.collect():
        if family.type not in ("counter", "gauge"):
            raise ValueError("%s: a %s, which pypause does not write" % (family.name, family.type))
        name = family.name + "_total" if family.type == "counter" else family.name
        help_text = family.documentation.replace("\\", r"\\").replace("\n", r"\n")
        out.append("# HELP %s %s\n# TYPE %s %s\n" % (name, help_text, name, family.type))
        for sample in family.samples:
            labels = ",".join(
                '%s="%s"' % (key, _escape(value)) for key, value in sorted(sample.labels.items())
            )
            out.append(
                "%s%s %s\n"
                % (sample.name, "{%s}" % labels if labels else "", floatToGoString(sample.value))
            )
    return "".join(out).encode("utf-8")


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")

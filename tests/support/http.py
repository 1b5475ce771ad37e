"""pypause's metrics as a scraper sees them: GET, samples, a free port, the
reason phrases."""

import email
import re
import socket
import subprocess
import sys
import urllib.error
import urllib.request

#: The reason phrase of each status pypause's metrics server answers with,
#: written out here rather than taken from httpd: the tests hold the server to it.
REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def port_from(stderr):
    """Read pypause's stderr up to the line that says where metrics are served."""
    while True:
        line = stderr.readline().decode()
        assert line, "pypause ended before serving metrics"
        m = re.search(r"serving metrics on http://\S+:(\d+)/metrics", line)
        if m:
            return int(m.group(1))


def url(host, port, path):
    return "http://%s:%d%s" % ("[%s]" % host if ":" in host else host, port, path)


def http_get(port, path="/metrics", host="127.0.0.1", headers=None, timeout=10):
    """(status, headers, body) of one GET through urllib; an HTTP error status too."""

    req = urllib.request.Request(url(host, port, path), headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.headers, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()


def parse_samples(text):
    """{(name, frozenset(labels)): value} of a scrape in the text format."""
    from prometheus_client.parser import text_string_to_metric_families

    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def metric_samples(port, timeout=10):
    """parse_samples() of one scrape of pypause's /metrics, which must answer 200."""
    status, _, text = http_get(port, timeout=timeout)
    assert status == 200, (status, text)
    return parse_samples(text)


def metric_value(got, name, **labels):
    """The value of series `name{labels}` in metric_samples() `got`, or None."""
    return got.get((name, frozenset(labels.items())))


def free_port():
    """A TCP port of 127.0.0.1 that nothing listens on just now."""

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- from inside another namespace -----------------------------------------------

# A client for one GET (argv: host port path [accept]) that writes the answer
# as it came: status line, headers, body. Of the standard library it needs
# only what the pause image holds (what pypause imports: no urllib), so the
# same lines serve inside a container, with the image's python3 (there is no
# curl), and in a network namespace, with this interpreter (get_inside).
LOOPBACK_GET = """\
import socket, sys
host, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
accept = sys.argv[4] if len(sys.argv) > 4 else "*/*"
s = socket.create_connection((host, port), timeout=10)
s.sendall(b"GET %s HTTP/1.0\\r\\nAccept: %s\\r\\n\\r\\n" % (path.encode(), accept.encode()))
answer = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    answer += chunk
sys.stdout.write(answer.decode())
"""


def parse_answer(text):
    """(status, content type, body) of an HTTP answer LOOPBACK_GET wrote, read
    in text mode (its CRLFs have become newlines)."""
    status_line, _, rest = text.partition("\n")
    headers, _, body = rest.partition("\n\n")
    return int(status_line.split()[1]), email.message_from_string(headers).get_content_type(), body


def get_inside(prefix, port, path="/metrics", host="127.0.0.1"):
    """(status, content type, body) of one GET of `path` from host:`port`, run by
    this interpreter behind `prefix` (an nsenter into a network namespace);
    None if it could not connect."""
    r = subprocess.run(
        [*prefix, sys.executable, "-IS", "-c", LOOPBACK_GET, host, str(port), path],
        capture_output=True,
        text=True,
        timeout=20,
    )
    return parse_answer(r.stdout) if r.returncode == 0 else None

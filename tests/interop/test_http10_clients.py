"""Real HTTP/1.0 keep-alive clients against frontd: ApacheBench (`ab -k`) and `curl --http1.0`.

Regression for frontd issue 12, item 1: `ab -k` stopped after the first request with
"Connection reset by peer", and curl opened a new connection per request, because the
connection announced as kept alive was closed.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import Frontd
from tests.interop.conftest import find_program

CONFIG = """
[[vhost]]
names = ["site.test"]
default = true
root = "{root}"
"""
# ab and curl are bounded: each run ends well within this, or the test fails.
CLIENT_TIMEOUT = 120


@pytest.fixture
def server(frontd, site: Path) -> Frontd:
    return frontd(CONFIG.format(root=site))


def run(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=CLIENT_TIMEOUT, stdin=subprocess.DEVNULL)


def field(output: str, name: str) -> int:
    match = re.search(rf"^{name}:\s+(\d+)", output, re.MULTILINE)
    assert match, f"no {name!r} in ab's output:\n{output}"
    return int(match.group(1))


def test_ab_keep_alive(server: Frontd) -> None:
    ab = find_program("ab")
    result = run([ab, "-k", "-n", "2000", "-c", "8", "-s", "30", server.url("/hello.txt")])
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert field(output, "Complete requests") == 2000
    assert field(output, "Failed requests") == 0
    assert field(output, "Keep-Alive requests") == 2000
    assert "Non-2xx responses" not in output, output  # ab prints the line only when some are


def test_curl_http10_reuses_the_connection(server: Frontd) -> None:
    curl = find_program("curl")
    result = run([curl, "-sS", "-v", "--http1.0", "-H", "Connection: keep-alive",
                  server.url("/hello.txt?i=1"), server.url("/hello.txt?i=2"), server.url("/sub/")])
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hello\nhello\n<h1>sub</h1>\n"
    # curl -v says so each time it sends a request over a connection it already has.
    assert len(re.findall(r"Re-?using existing connection", result.stderr, re.IGNORECASE)) == 2, result.stderr
    assert len(re.findall(r"^\* +Connected to ", result.stderr, re.MULTILINE)) == 1, result.stderr

"""The checks every interop peer goes through, as a base class each peer's module subclasses
with a `deploy` fixture (a `Deployment`): two backends on two vhosts and two prefixes, GET,
HEAD, a 5 MiB POST, a chunked POST, a status and a header relayed, a 10 MiB response, header
hygiene (httpoxy, "_" folding, merged fields), a backend down and a slow backend."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator

import requests

from tests.interop.conftest import Deployment, parse_output

FIVE_MIB = 5 * 1024 * 1024
BIG_PIECE = bytes(range(256)) * 256
RAMP_10_MIB_SHA256 = hashlib.sha256(BIG_PIECE * 160).hexdigest()
ZERO_10_MIB_SHA256 = hashlib.sha256(bytes(10 * 1024 * 1024)).hexdigest()


def upload_body() -> bytes:
    return os.urandom(FIVE_MIB)


class GatewayPeerChecks:
    """Subclassed as `Test<Peer>` in each peer's module, next to a `deploy` fixture."""

    def test_two_backends_two_vhosts_two_prefixes(self, deploy: Deployment) -> None:
        for backend in ("a", "b"):
            response = deploy.request("GET", backend, "info", "/more/path", params={"q": "1", "r": "x y"})
            assert response.status_code == 200, response.text
            info = parse_output(response.content)
            assert info["peer"] == backend
            assert response.headers["X-Peer"] == backend
            assert info["SCRIPT_NAME"] == deploy.script_name(backend, "info")
            assert info["PATH_INFO"] == deploy.path_info("info", "/more/path")
            assert info["QUERY_STRING"] == "q=1&r=x+y"
            assert info["REQUEST_METHOD"] == "GET"
            assert info["HTTP_HOST"] == deploy.routes[backend][0]

    def test_wrong_vhost_does_not_reach_the_backend(self, deploy: Deployment) -> None:
        # /two/ exists on b.test only.
        response = requests.get(deploy.url("/two/", "info"), headers={"Host": "a.test"}, timeout=10)
        assert response.status_code == 404

    def test_head(self, deploy: Deployment) -> None:
        response = deploy.request("HEAD", "a", "info")
        assert response.status_code == 200
        assert response.headers["X-Peer"] == "a"
        assert response.content == b""
        # The connection stays usable: HEAD framing was right.
        assert deploy.request("GET", "a", "info").status_code == 200

    def test_post_five_mib(self, deploy: Deployment) -> None:
        body = upload_body()
        response = deploy.request("POST", "b", "echo", data=body,
                                  headers={"Content-Type": "application/octet-stream"})
        assert response.status_code == 200, response.text[:500]
        result = parse_output(response.content)
        assert int(result["length"]) == len(body)
        assert result["sha256"] == hashlib.sha256(body).hexdigest()

    def test_chunked_post(self, deploy: Deployment) -> None:
        pieces = [os.urandom(size) for size in (1, 1000, 70000, 300000, 5)]

        def chunks() -> Iterator[bytes]:
            yield from pieces

        body = b"".join(pieces)
        response = deploy.request("POST", "a", "echo", data=chunks(),
                                  headers={"Content-Type": "application/octet-stream"})
        assert response.status_code == 200, response.text[:500]
        result = parse_output(response.content)
        assert int(result["length"]) == len(body)
        assert result["sha256"] == hashlib.sha256(body).hexdigest()

    def test_status_and_header_relayed(self, deploy: Deployment) -> None:
        response = deploy.request("GET", "b", "status")
        assert response.status_code == 409
        assert response.headers["X-Peer-Test"] == "relayed"
        assert response.text == "conflict from b\n"

    def test_ten_mib_response(self, deploy: Deployment) -> None:
        digest = hashlib.sha256()
        size = 0
        host, prefix = deploy.routes["a"]
        with requests.get(deploy.url(prefix, "big"), headers={"Host": host}, timeout=30, stream=True) as response:
            assert response.status_code == 200
            for data in response.iter_content(1 << 16):
                digest.update(data)
                size += len(data)
        assert size == 10 * 1024 * 1024
        assert digest.hexdigest() == deploy.big_sha256

    def test_header_hygiene(self, deploy: Deployment) -> None:
        # httpoxy (CVE-2016-5385): Proxy never becomes HTTP_PROXY. "_" names that would fold
        # onto trusted variables are dropped. Repeated fields arrive merged.
        response = deploy.request("GET", "a", "info", headers={
            "Proxy": "http://127.0.0.1:9/", "X_Test": "folded", "X-Test": "a"})
        info = parse_output(response.content)
        assert info.get("HTTP_PROXY") is None
        assert info["HTTP_X_TEST"] == "a"

    def test_backend_down_is_quick_502(self, deploy: Deployment) -> None:
        for prefix in ("/down/", "/down-tcp/"):
            started = time.monotonic()
            response = requests.get(deploy.url(prefix, "info"), headers={"Host": "a.test"}, timeout=10)
            assert response.status_code in (502, 503)
            assert time.monotonic() - started < 2.0

    def test_slow_backend_is_504(self, deploy: Deployment) -> None:
        started = time.monotonic()
        response = requests.get(deploy.url("/slow/", "slow"), headers={"Host": "a.test"}, timeout=10)
        assert response.status_code == 504
        assert time.monotonic() - started < 2.9  # the app sleeps 3 s; the route waits 1 s
        deploy.server.wait_error_log(rf"504: {deploy.kind} \S+: no output for 1s")

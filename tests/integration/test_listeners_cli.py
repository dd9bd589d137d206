"""Listeners of every form, the command line (-t, --version) and the log formats."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import requests

from tests.conftest import REPO, recv_all
from tests.http_client import parse_one

VHOST = """
[[vhost]]
names = ["site.test"]
root = "{root}"
"""


def frontd_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "frontd", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=30, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})


def unix_get(path: Path, target: bytes = b"/hello.txt") -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        sock.sendall(b"GET %s HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n" % target)
        return recv_all(sock)


def test_unix_socket_listener_replaces_a_stale_socket(frontd, site: Path, tmp_path: Path) -> None:
    path = tmp_path / "frontd.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))  # bound, never listening: what a crash leaves behind
    stale.close()
    server = frontd(VHOST.format(root=site),
                    top=f'listen = ["127.0.0.1:0", "unix:{path}"]')
    assert f"unix:{path}" in server.addresses
    assert parse_one(unix_get(path)).body == b"hello\n"


def test_ipv6_and_all_address_listeners(frontd, site: Path) -> None:
    server = frontd(VHOST.format(root=site), top='listen = ["127.0.0.1:0", "[::1]:0"]')
    v6 = [a for a in server.addresses if a.startswith("[::1]:")]
    assert v6, server.addresses
    port = int(v6[0].rsplit(":", 1)[1])
    assert port != 0
    response = requests.get(f"http://[::1]:{port}/hello.txt", timeout=5)
    assert response.text == "hello\n"


def test_listening_line_names_the_real_port(frontd, site: Path) -> None:
    server = frontd(VHOST.format(root=site))
    assert server.port > 0
    assert re.search(rf"listening on 127\.0\.0\.1:{server.port}\b", server.errors())


def test_address_in_use_is_a_clear_error(frontd, site: Path, tmp_path: Path) -> None:
    first = frontd(VHOST.format(root=site))
    conf = tmp_path / "second.conf"
    conf.write_text(f'listen = ["127.0.0.1:{first.port}"]\nerror_log = "{tmp_path}/second.log"\n'
                    + VHOST.format(root=site))
    result = frontd_cli("-c", str(conf), cwd=tmp_path)
    assert result.returncode == 1
    assert f"127.0.0.1:{first.port}: address already in use" in result.stderr + (tmp_path / "second.log").read_text()


def test_config_test_ok_and_error(tmp_path: Path, site: Path) -> None:
    good = tmp_path / "good.conf"
    good.write_text('listen = ["127.0.0.1:8080"]\n' + VHOST.format(root=site))
    result = frontd_cli("-t", "-c", str(good), cwd=tmp_path)
    assert result.returncode == 0
    assert "configuration ok" in result.stdout
    bad = tmp_path / "bad.conf"
    bad.write_text('listen = ["127.0.0.1:8080"]\n' + VHOST.format(root=site)
                   + '\n  [[vhost.route]]\n  prefix = "/php/"\n  fastcgi_pas = "127.0.0.1:9000"\n')
    result = frontd_cli("-t", "-c", str(bad), cwd=tmp_path)
    assert result.returncode == 1
    assert "vhost[0].route[0]" in result.stderr and 'did you mean "fastcgi"' in result.stderr
    assert str(bad) in result.stderr


def test_config_test_into_a_closed_pipe(tmp_path: Path, site: Path) -> None:
    # Issue 12, item 9: `frontd -t | head -1` ended in a BrokenPipeError traceback. The reader goes
    # away before frontd writes (deterministic) or after the first line (as head does), with
    # stdout block-buffered and unbuffered.
    good = tmp_path / "good.conf"
    good.write_text('listen = ["127.0.0.1:8080"]\n' + VHOST.format(root=site))
    for unbuffered in ("", "1"):
        for first_line in (False, True):
            read_end, write_end = os.pipe()
            env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "PYTHONUNBUFFERED": unbuffered}
            if not first_line:
                os.close(read_end)
            proc = subprocess.Popen([sys.executable, "-m", "frontd", "-t", "-c", str(good)], cwd=tmp_path,
                                    stdin=subprocess.DEVNULL, stdout=write_end, stderr=subprocess.PIPE, env=env)
            os.close(write_end)
            if first_line:
                with open(read_end, "rb") as reader:
                    assert b"configuration ok" in reader.readline()
            try:
                _, stderr = proc.communicate(timeout=30)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            case = f"unbuffered={unbuffered!r} first_line={first_line}"
            assert b"Traceback" not in stderr and b"Exception" not in stderr, (case, stderr)
            assert proc.returncode == 0, (case, proc.returncode, stderr)


def test_version(tmp_path: Path) -> None:
    result = frontd_cli("--version", cwd=tmp_path)
    assert result.returncode == 0 and re.fullmatch(r"frontd \d+\.\d+\.\d+\n", result.stdout)


def test_access_log_is_combined_log_format(frontd, site: Path) -> None:
    server = frontd(VHOST.format(root=site))
    requests.get(server.url("/hello.txt?x=1"), headers={"Referer": "http://r.test/", "User-Agent": 'ua "q"'},
                 timeout=5)
    line = server.wait_access_log(r".*hello\.txt.*").group(0)
    assert re.fullmatch(
        r'127\.0\.0\.1 - - \[\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}\] '
        r'"GET /hello\.txt\?x=1 HTTP/1\.1" 200 6 "http://r\.test/" "ua \\"q\\""', line), line


def test_access_log_off(frontd, site: Path, tmp_path: Path) -> None:
    server = frontd(VHOST.format(root=site), top='access_log = "off"')
    assert requests.get(server.url("/hello.txt"), timeout=5).status_code == 200
    assert not any(p.name.endswith("access.log") and p.stat().st_size for p in tmp_path.iterdir())

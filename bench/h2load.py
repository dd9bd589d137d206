#!/usr/bin/env python3
"""HTTP/2 against HTTP/1.1 over TLS, with h2load (nghttp2-client), on 127.0.0.1 only.

Starts frontd (one worker, no access log) and, with --nginx, nginx (one worker, `http2` on its
TLS listener), each from a config rendered into a fresh work directory with a self-signed ECDSA
P-256 certificate, a 96-byte index.html and a 1 MiB file (the shared bench's https-small and
static-1MiB bodies). For each server and file it runs h2load over HTTP/2 (`-c CONNS -m STREAMS`)
and over HTTP/1.1 with TLS (`--h1 -c CONNS -m 1`), and prints requests/s and the server's CPU
microseconds per request (its processes' utime + stime across the run, from /proc, over the
requests h2load saw done). Every process
it starts is stopped by its PID.

    python3 bench/h2load.py                       # frontd only
    python3 bench/h2load.py --nginx --seconds 10  # beside nginx
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TICKS = os.sysconf("SC_CLK_TCK")

FRONTD_CONF = """listen = [{{ address = "127.0.0.1:{port}", tls = true }}]
workers = 1
pid_file = "{dir}/frontd.pid"
error_log = "{dir}/frontd.error.log"
access_log = "off"

[[vhost]]
names = ["localhost"]
default = true
root = "{dir}/www"
tls_certificate = "{dir}/server.pem"
tls_key = "{dir}/server.key"
"""

NGINX_CONF = """daemon off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/nginx.error.log;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    keepalive_requests 10000000;   # its default (1000) ends an HTTP/2 connection mid-run with GOAWAY
    client_body_temp_path {dir}/nginx-tmp;
    proxy_temp_path {dir}/nginx-tmp;
    fastcgi_temp_path {dir}/nginx-tmp;
    uwsgi_temp_path {dir}/nginx-tmp;
    scgi_temp_path {dir}/nginx-tmp;
    server {{
        listen 127.0.0.1:{port} ssl http2;
        ssl_certificate {dir}/server.pem;
        ssl_certificate_key {dir}/server.key;
        root {dir}/www;
    }}
}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(root: int) -> float:
    """utime + stime of `root` and its children (the master and its workers)."""
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(entry) == root or int(fields[1]) == root:
            total += (int(fields[11]) + int(fields[12])) / TICKS
    return total


def wait_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"server exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"nothing listens on {port}")


def h2load(url: str, seconds: float, conns: int, streams: int, h1: bool) -> tuple[float, int, int]:
    args = ["h2load", "-D", f"{seconds:g}", "-c", str(conns), "-m", str(streams), url]
    if h1:
        args.insert(1, "--h1")
    result = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 60)
    out = result.stdout
    rps = re.search(r"finished in [\d.]+s, ([\d.]+) req/s", out)
    done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded", out)
    if rps is None or done is None:
        sys.exit(f"h2load said:\n{out}{result.stderr}")
    return float(rps.group(1)), int(done.group(1)), int(done.group(1)) - int(done.group(2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--conns", type=int, default=32)
    parser.add_argument("--streams", type=int, default=10)
    parser.add_argument("--nginx", action="store_true", help="also measure nginx with http2 on")
    parser.add_argument("--files", default="/index.html,/1m.bin", help="paths to measure, comma-separated")
    options = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="frontd-h2load-"))
    work.chmod(0o755)  # nginx workers run as nobody
    (work / "www").mkdir()
    (work / "nginx-tmp").mkdir()
    (work / "www" / "index.html").write_bytes(b"<!DOCTYPE html><title>bench</title><p>" + b"x" * 49 + b"</p>\n")
    (work / "www" / "1m.bin").write_bytes(os.urandom(1 << 20))
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(work / "server.key"), "-out", str(work / "server.pem"), "-days", "2",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    servers: list[tuple[str, list[str], str]] = []
    port = free_port()
    (work / "frontd.conf").write_text(FRONTD_CONF.format(port=port, dir=work))
    servers.append(("frontd", [sys.executable, "-m", "frontd", "-c", str(work / "frontd.conf")], f"https://127.0.0.1:{port}"))
    if options.nginx and shutil.which("nginx"):
        nport = free_port()
        (work / "nginx.conf").write_text(NGINX_CONF.format(port=nport, dir=work))
        servers.append(("nginx", ["nginx", "-c", str(work / "nginx.conf"), "-p", str(work)], f"https://127.0.0.1:{nport}"))
    print(f"| server | file | protocol | c | m | req/s | server CPU µs/req | failed |\n|---|---|---|---|---|---|---|---|")
    try:
        for name, argv, base in servers:
            env = {**os.environ, "PYTHONPATH": str(REPO)}
            proc = subprocess.Popen(argv, cwd=work, env=env, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                wait_port(int(base.rsplit(":", 1)[1]), proc)
                for path in options.files.split(","):
                    for h1 in (False, True):
                        streams = 1 if h1 else options.streams
                        before = cpu_seconds(proc.pid)
                        rps, done, failed = h2load(base + path, options.seconds, options.conns, streams, h1)
                        used = cpu_seconds(proc.pid) - before
                        # The 32 handshakes are in it too: a few ms against thousands of requests.
                        per = used / max(done, 1) * 1e6
                        print(f"| {name} | {path} | {'HTTP/1.1 TLS' if h1 else 'HTTP/2'} | {options.conns} | {streams} "
                              f"| {rps:.0f} | {per:.0f} | {failed} |", flush=True)
            finally:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

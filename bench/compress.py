#!/usr/bin/env python3
"""Compression cost per MiB: frontd's `compress` against nginx's gzip (levels 1 and 6).

    python3 bench/compress.py [--seconds 5] [--rounds 2] [--old-tree DIR]

Each server serves one 100 KiB CSS file on 127.0.0.1 with one worker; wrk (-t1 -c8) asks for it
with `Accept-Encoding: gzip` (and zstd, br for frontd), then with none (identity). The CPU time
of the server's processes (utime + stime from /proc) over the run, divided by the MiB of CSS
served, is the cost per MiB; the identity run's cost is subtracted to leave compression alone.

With --old-tree DIR (a checkout of another frontd, e.g. `git archive main frontd | tar -x -C DIR`),
it also runs the static-small check: a 96-byte file with no rule configured, frontd of DIR and of
this tree alternately, --rounds times each.

Every server listens on 127.0.0.1 only and is stopped by its own PID; nothing outlives the run.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TICK = os.sysconf("SC_CLK_TCK")
CSS = b"".join(b".rule-%d { color: #%06x; margin: %dpx auto; padding: 0 4px; font-family: Helvetica, Arial, "
               b"sans-serif }\n" % (i, i * 2654435761 % 0xFFFFFF, i % 17) for i in range(1200))[:100 * 1024]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, deadline: float = 15.0) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)  # polling a port a server is starting on, with a deadline
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


def tree_cpu(pid: int) -> float:
    """utime + stime (seconds) of pid and its children (one level: master and workers)."""
    pids = [pid]
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            pids += [int(p) for p in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
    except OSError:
        pass
    total = 0
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total / TICK


def wrk(port: int, path: str, seconds: int, header: str | None) -> tuple[float, int]:
    """(requests/s, requests)"""
    cmd = ["wrk", "-t1", "-c8", f"-d{seconds}s", f"http://127.0.0.1:{port}{path}"]
    if header:
        cmd[1:1] = ["-H", header]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30).stdout
    if "Non-2xx" in out:
        raise RuntimeError(f"error responses from 127.0.0.1:{port}{path}: {out}")
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    return rps, requests


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def start_frontd(work: Path, port: int, compress: str | None, tree: Path) -> subprocess.Popen[bytes]:
    conf = work / f"frontd-{port}.conf"
    conf.write_text(f'listen = ["127.0.0.1:{port}"]\nworkers = 1\nerror_log = "{work}/frontd-error.log"\n'
                    f'access_log = "off"\n[[vhost]]\nnames = ["localhost"]\ndefault = true\nroot = "{work}/www"\n'
                    + (f"compress = {compress}\n" if compress else ""))
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.Popen([sys.executable, "-m", "frontd", "-c", str(conf)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def start_nginx(work: Path, port: int, level: int) -> subprocess.Popen[bytes]:
    prefix = work / f"nginx-{port}"
    (prefix / "logs").mkdir(parents=True, exist_ok=True)
    conf = prefix / "nginx.conf"
    conf.write_text(f"""worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log;
events {{ worker_connections 256; }}
http {{
  access_log off;
  include /etc/nginx/mime.types;
  client_body_temp_path {prefix}/tmp; proxy_temp_path {prefix}/tmp; fastcgi_temp_path {prefix}/tmp;
  uwsgi_temp_path {prefix}/tmp; scgi_temp_path {prefix}/tmp;
  gzip on; gzip_comp_level {level}; gzip_types text/css; gzip_min_length 1024;
  server {{ listen 127.0.0.1:{port}; root {work}/www; }}
}}
""")
    return subprocess.Popen(["nginx", "-p", str(prefix), "-c", str(conf), "-g", "daemon off;"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def measure(proc: subprocess.Popen[bytes], port: int, path: str, seconds: int, header: str | None,
            size: int) -> tuple[float, float]:
    """(requests/s, CPU ms per MiB of file served)"""
    wait_port(port)
    wrk(port, path, 1, header)  # warm-up
    before = tree_cpu(proc.pid)
    rps, requests = wrk(port, path, seconds, header)
    cpu = tree_cpu(proc.pid) - before
    return rps, cpu * 1000 / (requests * size / 2**20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--old-tree", type=Path)
    parser.add_argument("--only", help="run only the cases whose name contains this (\"frontd\", \"zstd\")")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="frontd-compress-bench-") as tmp:
        work = Path(tmp)
        work.chmod(0o755)  # nginx's workers run as another user
        (work / "www").mkdir()
        (work / "www" / "a.css").write_bytes(CSS)
        (work / "www" / "index.html").write_bytes(b"x" * 96)
        cases: list[tuple[str, str, object, str | None]] = [
            case for case in [
            ("nginx gzip 1", "nginx", 1, "Accept-Encoding: gzip"),
            ("nginx gzip 6", "nginx", 6, "Accept-Encoding: gzip"),
            ("nginx identity", "nginx", 1, None),
            ("frontd gzip", "frontd", "true", "Accept-Encoding: gzip"),
            ("frontd zstd", "frontd", "true", "Accept-Encoding: zstd"),
            ("frontd br", "frontd", "true", "Accept-Encoding: br"),
            ("frontd identity", "frontd", "true", None),
            ] if args.only is None or args.only in case[0]
        ]
        results: dict[str, list[tuple[float, float]]] = {}
        for _ in range(args.rounds):
            for name, server, option, header in cases:
                port = free_port()
                proc = (start_nginx(work, port, int(option)) if server == "nginx"  # type: ignore[call-overload]
                        else start_frontd(work, port, str(option), REPO))
                try:
                    results.setdefault(name, []).append(
                        measure(proc, port, "/a.css", args.seconds, header, len(CSS)))
                finally:
                    stop(proc)
        print(f"100 KiB CSS, wrk -t1 -c8 -d{args.seconds}s, median of {args.rounds}; CPU ms per MiB of CSS")
        print(f"{'case':18} {'req/s':>8} {'CPU ms/MiB':>11} {'minus identity':>15}")
        med = {name: sorted(rows)[len(rows) // 2] for name, rows in results.items()}
        for name, (rps, cost) in med.items():
            base = med.get("nginx identity" if name.startswith("nginx") else "frontd identity", (0, 0.0))[1]
            print(f"{name:18} {rps:8.0f} {cost:11.1f} {cost - base:15.1f}")
        if args.old_tree:
            small: dict[str, list[float]] = {"old": [], "new": []}
            for _ in range(args.rounds):
                for label, tree in (("old", args.old_tree), ("new", REPO)):
                    port = free_port()
                    proc = start_frontd(work, port, None, tree)
                    try:
                        wait_port(port)
                        wrk(port, "/index.html", 1, None)
                        small[label].append(wrk(port, "/index.html", args.seconds, None)[0])
                    finally:
                        stop(proc)
            for label, rows in small.items():
                print(f"static-small {label}: " + " ".join(f"{r:.0f}" for r in rows) + " req/s")


if __name__ == "__main__":
    main()

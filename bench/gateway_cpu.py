"""A worker's CPU per gateway request (FastCGI, SCGI, CGI), without the whole bench harness.

The sibling of `cpu_per_request.py` for the gateway scenarios of ../shared/bench: it builds the
bench's C programs (the libfcgi responder and the `hello` CGI) into a temporary directory, starts
the backends the way the bench does (two libfcgi processes sharing a TCP and a Unix listening
socket, php-fpm with a static pool of two, flup's SCGI and FastCGI servers from this Python),
then `python -m frontd` from a tree with one worker and a route per backend (`keepalive = 8` where
the bench's frontd config sets it), and runs `wrk -t1 -c32` per scenario. The figure is the
worker's utime + stime (from /proc/PID/stat, before and after) divided by the requests wrk
counted; for CGI the scripts' own time is left out (they are reaped children, counted apart).
Everything listens on 127.0.0.1 or in the temporary directory and is stopped by PID at the end.

    python3 bench/gateway_cpu.py                                  # every scenario, 5 s each
    python3 bench/gateway_cpu.py --scenarios fastcgi-c,scgi-flup --repeat 3
    python3 bench/gateway_cpu.py --tree /tmp/frontd-before        # another checkout's frontd
    python3 bench/gateway_cpu.py --scenarios fastcgi-php --profile   # also py-spy on the worker

The machine is shared: compare before/after in one sitting, alternating trees, and look at the
load average printed beside each line.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from cpu_per_request import launch, measure, profile, run_wrk, stop, wait_until  # noqa: E402

SHARED = HERE.parent.parent.parent / "shared" / "bench"  # /work/shared/bench beside the worktrees
SCENARIOS = {  # name: the URL path, as in bench/frontd.toml
    "fastcgi-c": "/fcgi-c/",
    "fastcgi-c-unix": "/fcgi-c-unix/",
    "fastcgi-php": "/php/hello.php",
    "scgi-flup": "/scgi-flup/",
    "fastcgi-flup": "/fcgi-flup/",
    "cgi-c": "/cgi-bin/hello",
    "cgi-sh": "/cgi-bin/hello.sh",
}
DEFAULT = "fastcgi-c,fastcgi-c-unix,fastcgi-php,scgi-flup,cgi-c"
PHP_FPM_CONF = """[global]
pid = {work}/php-fpm.pid
error_log = {work}/php-fpm.log
daemonize = no

[bench]
user = nobody
group = nogroup
listen = 127.0.0.1:{port}
listen.allowed_clients = 127.0.0.1
pm = static
pm.max_children = 2
pm.max_requests = 0
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


class Backends:
    """The bench's backends, each a process of ours stopped by PID."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.procs: list[subprocess.Popen[bytes]] = []
        self.ports: dict[str, int] = {}

    def _spawn(self, argv: list[str], **kw: object) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True, **kw)  # type: ignore[call-overload]
        self.procs.append(proc)
        return proc

    def build(self) -> None:
        (self.work / "cgi-bin").mkdir()
        (self.work / "www").mkdir()
        fixtures = SHARED / "fixtures"
        for src, out, libs in ((fixtures / "backends" / "fcgi_hello.c", self.work / "fcgi_hello", ["-lfcgi"]),
                               (fixtures / "cgi-bin" / "hello.c", self.work / "cgi-bin" / "hello", [])):
            subprocess.run(["gcc", "-O2", "-o", str(out), str(src), *libs], check=True)
        shutil.copy(fixtures / "cgi-bin" / "hello.sh", self.work / "cgi-bin" / "hello.sh")
        (self.work / "cgi-bin" / "hello.sh").chmod(0o755)
        shutil.copy(fixtures / "backends" / "hello.php", self.work / "www" / "hello.php")
        self.work.chmod(0o755)  # php-fpm's children run as nobody and read hello.php

    def start(self, wanted: set[str]) -> None:
        if wanted & {"fastcgi-c", "fastcgi-c-unix"}:
            # As the bench (and spawn-fcgi -F 2): two processes sharing one socket on fd 0.
            for name, family, where in (("fastcgi-c", socket.AF_INET, ("127.0.0.1", 0)),
                                        ("fastcgi-c-unix", socket.AF_UNIX, str(self.work / "fcgi-c.sock"))):
                with socket.socket(family, socket.SOCK_STREAM) as s:
                    s.bind(where)
                    s.listen(1024)
                    if family == socket.AF_INET:
                        self.ports[name] = s.getsockname()[1]
                    for _ in range(2):
                        self._spawn([str(self.work / "fcgi_hello")], stdin=s.fileno())
        app = str(SHARED / "fixtures" / "backends" / "wsgi_hello.py")
        for name, proto in (("scgi-flup", "scgi"), ("fastcgi-flup", "fcgi")):
            if name in wanted:
                port = self.ports[name] = free_port()
                self._spawn([sys.executable, app, proto, f"127.0.0.1:{port}"])
                wait_until(lambda: listening(port), 20, name)
        if "fastcgi-php" in wanted:
            fpm = shutil.which("php-fpm8.2") or shutil.which("php-fpm")
            if fpm is None:
                raise SystemExit("php-fpm is not installed")
            port = self.ports["fastcgi-php"] = free_port()
            conf = self.work / "php-fpm.conf"
            conf.write_text(PHP_FPM_CONF.format(work=self.work, port=port))
            self._spawn([fpm, "--nodaemonize", "--fpm-config", str(conf)])
            wait_until(lambda: listening(port), 20, "php-fpm")

    def routes(self) -> str:
        www = self.work / "www"
        out = [f'[[vhost]]\nnames = ["localhost"]\ndefault = true\nroot = "{www}"\n',
               f'  [[vhost.route]]\n  prefix = "/cgi-bin/"\n  cgi = "{self.work / "cgi-bin"}"\n',
               f'  [[vhost.route]]\n  prefix = "/fcgi-c-unix/"\n  fastcgi = "unix:{self.work / "fcgi-c.sock"}"\n'
               '  keepalive = 8\n']
        for name, prefix, kind, extra in (("fastcgi-c", "/fcgi-c/", "fastcgi", "  keepalive = 8\n"),
                                          ("fastcgi-php", "/php/", "fastcgi", f'  keepalive = 8\n  root = "{www}"\n'),
                                          ("scgi-flup", "/scgi-flup/", "scgi", ""),
                                          ("fastcgi-flup", "/fcgi-flup/", "fastcgi", "")):
            port = self.ports.get(name, 9)  # a route to the discard port when not started
            out.append(f'  [[vhost.route]]\n  prefix = "{prefix}"\n  {kind} = "127.0.0.1:{port}"\n{extra}')
        return "\n".join(out)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


def syscalls(label: str, worker: int, port: int, path: str, seconds: int, connections: int) -> None:
    """`strace -c` on the worker under wrk's load: each system call's count per request."""
    trace = subprocess.Popen(["strace", "-c", "-p", str(worker)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: _traced(worker), 10, "strace to attach")
        requests = run_wrk(port, path, seconds, connections)
    finally:
        trace.send_signal(signal.SIGINT)
        _, report = trace.communicate(timeout=30)
    counts = []
    for line in report.splitlines():
        fields = line.split()
        if len(fields) >= 5 and fields[3].isdigit() and fields[-1] != "total":
            counts.append((int(fields[3]), fields[-1]))
    counts.sort(reverse=True)
    total = sum(n for n, _ in counts)
    print(f"{label:15} {total / requests:5.1f} system calls/request (under strace, {requests} requests): "
          + ", ".join(f"{name} {n / requests:.2f}" for n, name in counts if n / requests >= 0.05), flush=True)


def _traced(pid: int) -> bool:
    """True once a tracer is attached to `pid` (TracerPid in /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("TracerPid:"):
            return line.split()[1] != "0"
    return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tree", type=Path, default=HERE.parent, help="the checkout whose frontd runs")
    parser.add_argument("--scenarios", default=DEFAULT, help=f"comma-separated, of {', '.join(SCENARIOS)}")
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--profile", action="store_true",
                        help="after the measurements, py-spy record the worker under each scenario's load")
    parser.add_argument("--syscalls", action="store_true",
                        help="after the measurements, the worker's system calls per request (strace -c)")
    args = parser.parse_args()
    names = args.scenarios.split(",")
    unknown = [name for name in names if name not in SCENARIOS]
    if unknown:
        raise SystemExit(f"unknown scenario(s): {', '.join(unknown)}")
    with tempfile.TemporaryDirectory(prefix="frontd-gw-") as tmp:
        work = Path(tmp)
        backends = Backends(work)
        backends.build()
        backends.start(set(names))
        (work / "frontd").mkdir()
        proc = None
        try:
            proc, port, worker = launch(args.tree.resolve(), work / "frontd", backends.routes())
            for name in names:
                path = SCENARIOS[name].lstrip("/")
                run_wrk(port, path, 1, args.connections)  # warm up: pools filled, code paths hot
                for _ in range(args.repeat):
                    measure(name, worker, port, path, args.seconds, args.connections)
            if args.profile:
                for name in names:
                    profile(work.parent / f"frontd-gw-{name}.raw", worker, port, SCENARIOS[name].lstrip("/"),
                            args.seconds, args.connections)
            if args.syscalls:
                for name in names:
                    syscalls(name, worker, port, SCENARIOS[name].lstrip("/"), args.seconds, args.connections)
        finally:
            if proc is not None:
                stop(proc)
            backends.stop()


if __name__ == "__main__":
    main()

"""A worker's CPU per request for static files, without the whole bench harness.

Starts `python -m frontd` from this tree (one worker, `access_log = "off"`, a docroot with a
96-byte `small.txt`, a 64 KiB and a 1 MiB file), runs `wrk -t1 -c32` against each file and
divides the worker's utime + stime (from /proc/PID/stat, before and after) by the requests wrk
counted. Everything listens on 127.0.0.1 and is stopped by PID at the end.

    python3 bench/cpu_per_request.py                       # all three files, 5 s each
    python3 bench/cpu_per_request.py --files small --seconds 5 --repeat 3
    python3 bench/cpu_per_request.py --profile small       # also py-spy on the worker (raw file)

The machine is shared: compare before/after in one sitting, alternating trees if possible
(`--tree DIR` runs another checkout's frontd), and look at the load average printed beside.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
FILES = {"small": ("small.txt", 96), "64KiB": ("64k.bin", 64 * 1024), "1MiB": ("1m.bin", 1 << 20)}
CLK_TCK = os.sysconf("SC_CLK_TCK")
SETTLED = 2.2  # seconds: more than the age at which the file cache keeps a file


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds (fields 14 and 15 of /proc/PID/stat)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                text = (entry / "stat").read_text()
            except OSError:
                continue
            if int(text[text.rindex(")") + 2:].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def wait_until(condition, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.05)


def start(tree: Path, work: Path) -> tuple[subprocess.Popen[bytes], int, int]:
    """frontd from `tree`: its process, its port and its one worker's pid."""
    docroot = work / "www"
    docroot.mkdir()
    for name, size in FILES.values():
        (docroot / name).write_bytes((b"frontd static file bench.\n" * (size // 26 + 1))[:size])
    old = time.time() - 3600  # as a deployed site's files are
    for name, _ in FILES.values():
        os.utime(docroot / name, (old, old))
    # The file cache keeps a file once its ctime (now: it cannot be set back) is two seconds old.
    created = time.time()
    wait_until(lambda: time.time() - created > SETTLED, SETTLED + 5, "the files' ctime to settle")
    return launch(tree, work, f'[[vhost]]\nnames = ["localhost"]\ndefault = true\nroot = "{docroot}"\n')


def launch(tree: Path, work: Path, vhosts: str) -> tuple[subprocess.Popen[bytes], int, int]:
    """frontd from `tree` with one worker, no access log and these `[[vhost]]` tables: its
    process, its port and its one worker's pid."""
    error_log = work / "error.log"
    conf = work / "frontd.conf"
    conf.write_text(f'listen = ["127.0.0.1:0"]\nworkers = 1\nerror_log = "{error_log}"\naccess_log = "off"\n'
                    f'pid_file = "{work}/frontd.pid"\n\n{vhosts}')
    env = dict(os.environ, PYTHONPATH=str(tree))
    proc = subprocess.Popen([sys.executable, "-m", "frontd", "-c", str(conf)], cwd=work, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=open(work / "stderr", "wb"), start_new_session=True)

    def ready() -> tuple[int, int] | None:
        if proc.poll() is not None:
            raise SystemExit(f"frontd exited: {(work / 'stderr').read_text()}")
        text = error_log.read_text() if error_log.exists() else ""
        port = re.search(r"listening on 127\.0\.0\.1:(\d+)", text)
        kids = children(proc.pid)
        if port and re.search(r"started with \d+ worker", text) and len(kids) == 1:
            return int(port.group(1)), kids[0]
        return None

    port, worker = wait_until(ready, 20, "frontd to start")
    return proc, port, worker


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def run_wrk(port: int, path: str, seconds: int, connections: int) -> int:
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", f"http://127.0.0.1:{port}/{path}"],
                         capture_output=True, text=True, timeout=seconds + 30, check=True).stdout
    m = re.search(r"(\d+) requests in", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: .*", out)
    if m is None or errors is not None:
        raise SystemExit(f"wrk: {out}")
    return int(m.group(1))


def measure(label: str, worker: int, port: int, path: str, seconds: int, connections: int) -> None:
    """One wrk run against `path`; prints requests/s and the worker's CPU per request."""
    load = os.getloadavg()[0]
    before = cpu_seconds(worker)
    requests = run_wrk(port, path, seconds, connections)
    used = cpu_seconds(worker) - before
    print(f"{label:15} {requests / seconds:9.0f} req/s {used * 1e6 / requests:7.1f} µs CPU/req"
          f"  (load {load:.2f})", flush=True)


def profile(out: Path, worker: int, port: int, path: str, seconds: int, connections: int) -> None:
    """py-spy record (raw, 200 Hz) the worker for `seconds` under wrk's load on `path`."""
    spy = Path(sys.executable).with_name("py-spy")
    record = subprocess.Popen([str(spy), "record", "-r", "200", "-f", "raw", "--nonblocking",
                               "-d", str(seconds), "--pid", str(worker), "-o", str(out)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run_wrk(port, path, seconds + 1, connections)
    record.wait(seconds + 30)
    print(f"profile: {out}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tree", type=Path, default=HERE.parent, help="the checkout whose frontd runs")
    parser.add_argument("--files", default="small,64KiB,1MiB")
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--profile", metavar="FILE", help="py-spy record the worker under this file's load")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="frontd-cpu-") as tmp:
        proc, port, worker = start(args.tree, Path(tmp))
        try:
            run_wrk(port, FILES["small"][0], 1, args.connections)  # warm up
            for key in args.files.split(","):
                name = FILES[key][0]
                for _ in range(args.repeat):
                    measure(key, worker, port, name, args.seconds, args.connections)
            if args.profile:
                out = Path(tmp).parent / f"frontd-{args.profile}.raw"
                profile(out, worker, port, FILES[args.profile][0], args.seconds, args.connections)
        finally:
            stop(proc)


if __name__ == "__main__":
    main()

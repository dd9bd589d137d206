"""The Python side of a static request alone: one HTTP/1.1 Connection in this process, fed by a
transport that answers every response with the next request, no sockets and no kernel.

What it prints is the process's CPU time per request over N keep-alive requests for a 96-byte
file: the figure that moves when the request path's Python changes, with far less noise than
a run under wrk (no client, no scheduler between two processes). `--profile` prints cProfile's
table instead (slower; for the shape, not the totals).

    PYTHONPATH=. python3 bench/static_inprocess.py 100000
    PYTHONPATH=/tmp/other-tree python3 bench/static_inprocess.py 100000   # another checkout
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import tempfile
import time
from pathlib import Path
from typing import Any

from frontd.config.load import load_config
from frontd.handlers.dispatch import Dispatcher
from frontd.protocol.http1 import Connection
from frontd.request import Request

# The file cache keeps a file once its ctime is two seconds old (as a deployed site's are); a
# constant here, so that trees without the cache run too.
SETTLED_NS = 2_000_000_000
REQUEST = b"GET /small.txt HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"


class NoLog:
    def record(self, request: Request, status: int, size: int, duration: float = 0.0, *, cut: bool = False) -> None:
        pass


class Echo(asyncio.Transport):
    """A client that sends the next request as soon as a response is written."""

    def __init__(self) -> None:
        super().__init__()
        self.responses = 0
        self.protocol: Connection | None = None
        self.closing = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8080), "peername": ("127.0.0.1", 40000)}.get(name, default)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.responses += 1
        assert self.protocol is not None
        asyncio.get_running_loop().call_soon(self.protocol.data_received, REQUEST)

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(list_of_data))

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return 0

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def serve(conf: Path, count: int, profile: bool) -> float:
    config = load_config(str(conf))
    conn = Connection(Dispatcher(config), config.limits, NoLog())
    transport = Echo()
    transport.protocol = conn
    conn.connection_made(transport)
    conn.data_received(REQUEST)
    task = asyncio.ensure_future(conn.run())
    while transport.responses < 500:  # warm up (and fill the file cache)
        await asyncio.sleep(0.001)
    profiler = cProfile.Profile() if profile else None
    started, first = time.process_time(), transport.responses
    if profiler is not None:
        profiler.enable()
    while transport.responses < first + count:
        await asyncio.sleep(0.01)
    if profiler is not None:
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
    per_request = (time.process_time() - started) / (transport.responses - first)
    transport.closing = conn.eof = True
    conn.connection_lost(None)
    await asyncio.wait_for(task, 5)
    return per_request


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("count", type=int, nargs="?", default=100_000)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="frontd-inprocess-") as tmp:
        root = Path(tmp) / "www"
        root.mkdir()
        small = root / "small.txt"
        small.write_bytes(b"x" * 96)
        os.utime(small, (1_600_000_000, 1_600_000_000))
        conf = Path(tmp) / "frontd.conf"
        conf.write_text(f'listen = ["127.0.0.1:0"]\naccess_log = "off"\n[[vhost]]\nnames = ["localhost"]\n'
                        f'default = true\nroot = "{root}"\n')
        while time.time_ns() - small.stat().st_ctime_ns <= SETTLED_NS:
            time.sleep(0.05)
        per_request = asyncio.run(serve(conf, args.count, args.profile))
    print(f"{per_request * 1e6:.2f} µs CPU per request, in-process ({args.count} requests)")


if __name__ == "__main__":
    main()

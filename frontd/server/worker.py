"""A worker process: one event loop accepting on the inherited listeners and serving connections."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket

from frontd.config.model import Config
from frontd.handlers.dispatch import Dispatcher
from frontd.server.connection import Connection
from frontd.server.logs import AccessLog

log = logging.getLogger("frontd")
STREAM_LIMIT = 1 << 16


class Worker:
    def __init__(self, config: Config, sockets: list[socket.socket]) -> None:
        self.config = config
        self.sockets = sockets
        self.connections: set[Connection] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.stopping = asyncio.Event()
        self.graceful = False

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        self.access_log = AccessLog(self.config.access_log)
        self.dispatcher = Dispatcher(self.config)
        # Past max_connections the worker stops accepting until a connection ends.
        self.slots = asyncio.Semaphore(self.config.limits.max_connections)
        for signum, graceful in ((signal.SIGTERM, False), (signal.SIGINT, False), (signal.SIGQUIT, True)):
            loop.add_signal_handler(signum, self._stop, graceful)
        loop.add_signal_handler(signal.SIGUSR1, self._reopen)
        acceptors = [asyncio.create_task(self._accept(sock)) for sock in self.sockets]
        await self.stopping.wait()
        for task in acceptors:
            task.cancel()
        if self.graceful:
            await self._drain()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.access_log.flush()

    def _stop(self, graceful: bool) -> None:
        self.graceful = graceful
        self.stopping.set()

    def _reopen(self) -> None:
        from frontd.server.logs import reopen_error_log

        self.access_log.reopen()
        reopen_error_log()
        log.info("log files reopened")

    async def _drain(self) -> None:
        """Graceful stop: idle connections close now, busy ones get up to shutdown_timeout."""
        try:
            async with asyncio.timeout(self.config.shutdown_timeout):
                while self.tasks:
                    for conn in list(self.connections):
                        if conn.idle:
                            conn.writer.close()
                    await asyncio.wait(list(self.tasks), timeout=0.05)
        except TimeoutError:
            log.warning("shutdown_timeout reached with %d connections open", len(self.tasks))

    async def _accept(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self.slots.acquire()
            try:
                sock, _ = await loop.sock_accept(listener)
            except OSError as exc:
                self.slots.release()
                log.error("accept failed: %s", exc)
                await asyncio.sleep(0.1)  # EMFILE and the like: back off instead of spinning
                continue
            except BaseException:
                self.slots.release()
                raise
            task = asyncio.create_task(self._serve(sock))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _serve(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        try:
            reader = asyncio.StreamReader(limit=STREAM_LIMIT, loop=loop)
            protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
            transport, _ = await loop.connect_accepted_socket(lambda: protocol, sock)
            writer = asyncio.StreamWriter(transport, protocol, reader, loop)
            conn = Connection(reader, writer, self.dispatcher, self.config.limits, self.access_log)
            self.connections.add(conn)
            try:
                await conn.run()
            finally:
                self.connections.discard(conn)
        except OSError:
            sock.close()
        finally:
            self.slots.release()


def run_worker(config: Config, sockets: list[socket.socket]) -> None:
    asyncio.run(Worker(config, sockets).run())

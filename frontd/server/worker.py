"""A worker process: one event loop accepting on the inherited listeners and serving connections.

The master forks workers and signals them: TERM/INT fast stop, QUIT graceful stop (stop accepting,
close idle keep-alive connections, let busy ones finish within shutdown_timeout), USR1 reopen logs,
USR2 re-read certificate files (a new ACME certificate; one that fails to load keeps the old one).
A worker never outlives its master.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import ssl
from collections.abc import Callable

from frontd.config.model import Config
from frontd.errors import HTTPError
from frontd.handlers.dispatch import Dispatcher
from frontd.protocol.http1 import Connection
from frontd.protocol.http2 import PREFACE, H2Protocol
from frontd.protocol.proxy_header import V1_MAX_LENGTH, header_length, parse
from frontd.protocol.tls import Certificates, handshake_failure, quiet_undecodable_server_names
from frontd.protocol.tls_alpn01 import AlpnChallenges
from frontd.request import TLSInfo
from frontd.server.child import set_parent_death_signal
from frontd.server.logs import AccessLogs, reopen_error_log
from frontd.wire.errors import WireError

log = logging.getLogger("frontd")
ACCEPT_RETRY_DELAY = 0.1  # after EMFILE and the like: back off instead of spinning
MASTER_POLL_INTERVAL = 1.0  # where prctl is missing, how often to look for the master
READY = b"R"  # written on the readiness pipe once the worker can serve (master.py waits for it)
# Closing a TLS connection sends close_notify and waits this long for the client's (asyncio's
# default is 30 s): a client that vanished does not hold a socket for half a minute.
TLS_SHUTDOWN_TIMEOUT = 5.0
EVENT_LOOP_ENV = "FRONTD_EVENT_LOOP"  # "asyncio" or "uvloop": overrides the config's event_loop


class Worker:
    """One worker's event loop: accepts on the listeners, serves, stops as its signals say."""

    def __init__(self, config: Config, sockets: list[socket.socket], master_pid: int | None = None,
                 tls_sockets: frozenset[int] = frozenset(), certificates: Certificates | None = None,
                 ready: int | None = None, proxy_sockets: frozenset[int] = frozenset(),
                 h2_sockets: frozenset[int] = frozenset()) -> None:
        """`tls_sockets`: the file descriptors among `sockets` of TLS listeners, served with
        `certificates` (loaded by the master before the fork). `ready`: the readiness pipe's write
        end, from a master that waits for READY. `proxy_sockets`: the listeners whose connections
        start with a PROXY header. `h2_sockets`: those that take HTTP/2 (ALPN h2 on TLS, h2c with
        prior knowledge on plain ones)."""
        self.config = config
        self.h2_sockets = h2_sockets
        self.sockets = sockets
        self.tls_sockets = tls_sockets
        self.proxy_sockets = proxy_sockets
        self.certificates = certificates
        self.alpn_challenges = AlpnChallenges(config)  # ACME tls-alpn-01 (RFC 8737)
        self.master_pid = master_pid
        self.ready = ready
        self.connections: set[Connection] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.stopping = asyncio.Event()
        self.graceful = False
        self.active = 0  # connections being served, against limits.max_connections
        self.accepting = False

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        log.debug("event loop: %s", "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio")
        self.access_log = AccessLogs(self.config)
        certificates = self.certificates
        self.dispatcher = Dispatcher(self.config, https_port=self._https_port(), has_certificate=(
            certificates.has_certificate if certificates is not None else None))
        if self.tls_sockets:
            quiet_undecodable_server_names()
        for signum, graceful in ((signal.SIGTERM, False), (signal.SIGINT, False), (signal.SIGQUIT, True)):
            loop.add_signal_handler(signum, self._stop, graceful)
        loop.add_signal_handler(signal.SIGUSR1, self._reopen)
        loop.add_signal_handler(signal.SIGUSR2, self._reload_certificates)
        # The master forks with its signals blocked; now that the handlers exist, let them in
        # (a QUIT that arrived meanwhile is delivered here, not lost and not fatal).
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        watchdog = asyncio.create_task(self._watch_master()) if self.master_pid is not None else None
        self._listen(True)
        if self.ready is not None:
            # Log files open, dispatcher built, handlers set, accepting: the master may now retire
            # the workers this one replaces.
            os.write(self.ready, READY)
            os.close(self.ready)
            self.ready = None
        await self.stopping.wait()
        log.info("worker %s", "shutting down gracefully" if self.graceful else "stopping")
        self._listen(False)
        self.dispatcher.close()  # pooled backend connections: closed now, none pooled from here on
        # Our copies only: the master and the next generation of workers keep the listeners open.
        for sock in self.sockets:
            sock.close()
        if watchdog is not None:
            watchdog.cancel()
        if self.graceful:
            await self._drain()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.access_log.flush()

    def _stop(self, graceful: bool) -> None:
        if self.stopping.is_set():
            # A TERM after a QUIT turns the graceful stop into a fast one.
            if not graceful and self.graceful:
                self.graceful = False
                for task in list(self.tasks):
                    task.cancel()
            return
        self.graceful = graceful
        self.stopping.set()

    async def _watch_master(self) -> None:
        """Exit when the master dies, so that no orphan keeps serving an old configuration."""
        assert self.master_pid is not None
        if set_parent_death_signal(signal.SIGTERM):
            # The master may have died before the request took effect.
            if os.getppid() != self.master_pid:
                self._stop(False)
            return
        while os.getppid() == self.master_pid:
            await asyncio.sleep(MASTER_POLL_INTERVAL)
        log.warning("master %d is gone; stopping", self.master_pid)
        self._stop(False)

    def _reopen(self) -> None:
        self.access_log.reopen()
        reopen_error_log()
        log.info("log files reopened")

    def _reload_certificates(self) -> None:
        if self.certificates is None:
            return
        for _, error in self.certificates.load():
            log.error("certificate reload: %s", error)
        log.info("certificates re-read")

    def _https_port(self) -> int | None:
        """The port of the first TCP TLS listener (where redirect_https sends plain-HTTP clients)."""
        for sock in self.sockets:
            if sock.fileno() in self.tls_sockets and sock.family != socket.AF_UNIX:
                return int(sock.getsockname()[1])
        return None

    async def _drain(self) -> None:
        """Graceful stop: idle connections close now, busy ones get up to shutdown_timeout."""
        try:
            async with asyncio.timeout(self.config.shutdown_timeout):
                while self.tasks:
                    for conn in list(self.connections):
                        if conn.idle:
                            conn.close()
                    await asyncio.wait(list(self.tasks), timeout=0.05)
        except TimeoutError:
            log.warning("shutdown_timeout reached with %d connections open", len(self.tasks))

    def _listen(self, on: bool) -> None:
        """Watch the listeners for connections, or stop watching them.

        Accepting happens in a reader callback rather than in tasks awaiting sock_accept: a task
        cancelled just after the kernel handed it a connection would drop that connection (the
        client sees a reset), which a graceful stop or a reload must never do.
        """
        if on == self.accepting:
            return
        loop = asyncio.get_running_loop()
        for listener in self.sockets:
            if on:
                loop.add_reader(listener.fileno(), self._accept, listener)
            else:
                loop.remove_reader(listener.fileno())
        self.accepting = on

    def _resume(self) -> None:
        if not self.stopping.is_set() and self.active < self.config.limits.max_connections:
            self._listen(True)

    def _accept(self, listener: socket.socket) -> None:
        """One connection per readiness event, so that busy and idle workers share the load."""
        try:
            sock, _ = listener.accept()
        except (BlockingIOError, InterruptedError):
            return  # another worker took it
        except OSError as exc:
            log.error("accept failed: %s", exc)
            self._listen(False)
            asyncio.get_running_loop().call_later(ACCEPT_RETRY_DELAY, self._resume)
            return
        sock.setblocking(False)
        self.active += 1
        if self.active >= self.config.limits.max_connections:
            # Past max_connections the worker stops accepting until a connection ends.
            self._listen(False)
        fd = listener.fileno()
        task = asyncio.create_task(self._serve(sock, fd in self.tls_sockets, fd in self.proxy_sockets,
                                               fd in self.h2_sockets))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _serve(self, sock: socket.socket, tls: bool = False, proxy: bool = False, h2: bool = False) -> None:
        loop = asyncio.get_running_loop()
        transport: asyncio.Transport | None = None
        try:
            peer: tuple[str, int] | None = None
            if proxy:
                # The PROXY header comes before anything else, TLS included.
                try:
                    found = await self._proxy_header(sock)
                except asyncio.CancelledError:  # a fast stop while the header is awaited
                    sock.close()
                    raise
                if found is False:
                    sock.close()
                    return
                peer = found if isinstance(found, tuple) else None
            if sock.family != socket.AF_UNIX:
                # asyncio sets TCP_NODELAY only when sock.proto is IPPROTO_TCP, and accepted
                # sockets report 0: without it a response's last small write waits for the
                # client's delayed ACK (40 ms).
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            pending = _Pending()
            if tls and self.certificates is not None:
                transport = await self._handshake(sock, pending, h2)
                if transport is None:
                    return
            else:
                if h2:
                    h2 = await _h2c_preface(sock, self.config.limits.header_timeout)
                transport, _ = await loop.connect_accepted_socket(lambda: pending, sock)
            ssl_object = transport.get_extra_info("ssl_object")
            info = Certificates.info(ssl_object) if ssl_object is not None else None
            limits = self.dispatcher.client_limits
            counted, refused = self._count_connection(sock, peer)
            try:
                if h2 and (ssl_object is None or ssl_object.selected_alpn_protocol() == "h2"):
                    # HTTP/2 (ALPN h2, or the h2c preface): the transport goes to the HTTP/2
                    # protocol, which serves until the connection ends or the worker stops.
                    http2 = H2Protocol(self.dispatcher, self.config.limits, self.access_log, info,
                                       peer=peer, refused=refused)
                    pending.hand_over(transport, http2)
                    await http2.serve(self.stopping)
                    return
                conn = self._protocol(transport, pending, info, peer, refused)
                self.connections.add(conn)
                try:
                    await conn.run()
                finally:
                    self.connections.discard(conn)
            finally:
                if counted is not None and limits is not None:
                    limits.close(counted)
        except OSError:
            sock.close()
        except Exception:
            # A defect in setting a connection up: one error line, and the client is not left
            # waiting on a connection nobody serves.
            log.exception("connection setup failed, client: %s", _peer_name(sock))
            if transport is not None:
                transport.abort()
            else:
                sock.close()
        finally:
            self.active -= 1
            self._resume()

    def _protocol(self, transport: asyncio.Transport, pending: _Pending, tls: TLSInfo | None,
                  peer: tuple[str, int] | None, refused: HTTPError | None) -> Connection:
        """The one place where a connection's protocol is chosen, after the PROXY header and the
        TLS handshake, and handed the transport with whatever arrived meanwhile."""
        conn = Connection(self.dispatcher, self.config.limits, self.access_log, tls, peer=peer, refused=refused)
        pending.hand_over(transport, conn)
        return conn

    def _count_connection(self, sock: socket.socket, peer: tuple[str, int] | None) -> tuple[str | None, HTTPError | None]:
        """client_connections: the client counted for this connection (None: not counted), and
        the 429 its first request gets when it is over the limit.

        A trusted proxy's connections are not counted (the clients it forwards for share them);
        the client a PROXY header names is. The limit answers 429 after the first request head
        rather than closing at accept: a browser that opened one connection too many sees a
        status, and the refused connection is bounded by header_timeout like any other.
        """
        limits = self.dispatcher.client_limits
        if limits is None or not limits.connections:
            return None, None
        if peer is None and sock.family == socket.AF_UNIX:
            return None, None  # no address to count by
        client = peer[0] if peer is not None else _peer_name(sock)
        trusted = self.dispatcher.trusted_proxies
        if trusted is not None and client in trusted:
            return None, None
        if limits.open(client):
            return client, None
        return None, limits.refusal(client)

    async def _proxy_header(self, sock: socket.socket) -> tuple[str, int] | bool:
        """Read the PROXY header off the raw socket within header_timeout, and not one byte past
        it: the client it names, True to keep the socket's peer (LOCAL, UNKNOWN, or a peer not
        in trusted_proxies), False when there is no valid header (one log line; close)."""
        client = _peer_name(sock)
        try:
            async with asyncio.timeout(self.config.limits.header_timeout):
                header = parse(await _read_header(sock))
        except WireError as exc:
            log.info("PROXY header refused: %s, client: %s", exc, client)
            return False
        except TimeoutError:
            log.info("PROXY header not complete within header_timeout (%gs), client: %s",
                     self.config.limits.header_timeout, client)
            return False
        except (OSError, EOFError):
            log.info("PROXY header: the client closed the connection, client: %s", client)
            return False
        if header.source is None:
            return True
        trusted = self.dispatcher.trusted_proxies
        if trusted is not None and client not in trusted:
            log.info("PROXY header from %s not believed: not in trusted_proxies", client)
            return True
        return header.source

    async def _handshake(self, sock: socket.socket, protocol: asyncio.BaseProtocol,
                         h2: bool = False) -> asyncio.Transport | None:
        """The TLS handshake, within header_timeout; a failure costs one info line and the socket.
        ALPN offers h2 when `h2`."""
        assert self.certificates is not None
        loop = asyncio.get_running_loop()
        client = _peer_name(sock)
        context, challenge = self.certificates.listening_context(h2), None
        timeout = self.config.limits.header_timeout
        try:
            if self.alpn_challenges.enabled:
                started = loop.time()
                found = await self.alpn_challenges.context_for(sock, timeout)
                if found is not None:
                    context, challenge = found
                timeout = max(timeout - (loop.time() - started), 0.001)  # one header_timeout in all
            transport, _ = await loop.connect_accepted_socket(
                lambda: protocol, sock, ssl=context, ssl_handshake_timeout=timeout,
                ssl_shutdown_timeout=TLS_SHUTDOWN_TIMEOUT)
        except (OSError, ssl.SSLError, EOFError) as exc:
            sock.close()
            log.info("TLS handshake failed: %s, client: %s", self._handshake_failure(exc), client)
            return None
        if challenge is not None:
            # RFC 8737 §3: the handshake is the whole answer; no data follows it.
            log.info("acme: tls-alpn-01 challenge certificate presented for %s, client: %s", challenge, client)
            transport.close()
            return None
        return transport  # type: ignore[return-value]


    def _handshake_failure(self, exc: BaseException) -> str:
        """Why a handshake failed, in a few words: OpenSSL's reason, a timeout, or a client gone."""
        if isinstance(exc, ssl.SSLError):
            return handshake_failure(str(exc.reason or exc))
        if isinstance(exc, (TimeoutError, ConnectionAbortedError)):
            return f"not complete within header_timeout ({self.config.limits.header_timeout:g}s)"
        if isinstance(exc, (ConnectionResetError, BrokenPipeError, EOFError)):
            return "the client closed the connection"
        return str(exc) or type(exc).__name__


class _Pending(asyncio.Protocol):
    """A connection's protocol until the worker has chosen the real one: it keeps what arrives
    meanwhile (bytes, the client's end, a lost connection) for `hand_over`."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.eof = False
        self.lost: tuple[Exception | None] | None = None
        self.paused = False
        self.over_tls = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.over_tls = transport.get_extra_info("sslcontext") is not None

    def data_received(self, data: bytes) -> None:
        self.data += data

    def eof_received(self) -> bool:
        self.eof = True
        return not self.over_tls  # keep a half-closed TCP connection open for its answer

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = (exc,)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False

    def hand_over(self, transport: asyncio.Transport, protocol: asyncio.Protocol) -> None:
        """Make `protocol` the transport's, and tell it what happened so far."""
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        if self.paused:
            protocol.pause_writing()
        if self.data:
            data = bytes(self.data)
            self.data.clear()
            protocol.data_received(data)
        if self.eof:
            protocol.eof_received()
        if self.lost is not None:
            protocol.connection_lost(self.lost[0])


def _peer_name(sock: socket.socket) -> str:
    """The peer's address for a log line: "unix:" on Unix sockets, "?" once it is gone."""
    try:
        peer = sock.getpeername()
    except OSError:
        return "?"
    return str(peer[0]) if isinstance(peer, tuple) else "unix:"


async def _readable(sock: socket.socket) -> None:
    """Wait until the socket has bytes to read (or an end of file)."""
    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    loop.add_reader(sock.fileno(), lambda: ready.done() or ready.set_result(None))
    try:
        await ready
    finally:
        loop.remove_reader(sock.fileno())


async def _h2c_preface(sock: socket.socket, timeout: float) -> bool:
    """Whether a plain connection starts with the HTTP/2 preface (RFC 9113 §3.4), peeked at and
    left in the socket. An HTTP/1.1 request differs from it by its second byte at the latest;
    a stall, an end of file or a timeout leave the connection to HTTP/1.1 and its own timeouts."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            peeked = sock.recv(len(PREFACE), socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            try:
                async with asyncio.timeout_at(deadline):
                    await _readable(sock)
            except TimeoutError:
                return False
            continue
        except OSError:
            return False
        if peeked == PREFACE:
            return True
        if not peeked or not PREFACE.startswith(peeked) or loop.time() > deadline:
            return False
        # A part of the preface is in: readiness would fire at once, so look again shortly.
        await asyncio.sleep(0.005)


async def _read_header(sock: socket.socket) -> bytes:
    """The PROXY header at the start of the socket's stream, exactly: bytes are peeked at and only
    those known to belong to the header are consumed, so the TLS handshake or the HTTP request
    after it finds its first byte in the socket. Raises WireError, EOFError or OSError."""
    buf = b""
    while True:
        length = header_length(buf)
        if length is not None and len(buf) >= length:
            return buf
        want = V1_MAX_LENGTH if length is None else length - len(buf)
        try:
            peeked = sock.recv(want, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            await _readable(sock)
            continue
        if not peeked:
            raise EOFError("end of stream inside the PROXY header")
        whole = header_length(buf + peeked)
        take = len(peeked) if whole is None else min(len(peeked), whole - len(buf))
        buf += sock.recv(take)




def run_worker(config: Config, sockets: list[socket.socket], master_pid: int | None = None,
               tls_sockets: frozenset[int] = frozenset(), certificates: Certificates | None = None,
               ready: int | None = None, proxy_sockets: frozenset[int] = frozenset(),
               h2_sockets: frozenset[int] = frozenset()) -> None:
    """Serve until told to stop; with `master_pid`, also stop when that master dies; with `ready`,
    write READY on that descriptor once serving."""
    with asyncio.Runner(loop_factory=loop_factory(config.event_loop)) as runner:
        runner.run(Worker(config, sockets, master_pid, tls_sockets, certificates, ready, proxy_sockets,
                          h2_sockets).run())


def loop_factory(setting: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The worker's event loop: uvloop's for "uvloop" (when installed), else asyncio's own (None).
    FRONTD_EVENT_LOOP, when set, overrides the config's choice."""
    setting = os.environ.get(EVENT_LOOP_ENV) or setting
    if setting == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        log.warning("event loop: uvloop is not installed; running on asyncio's loop")
        return None
    return uvloop.new_event_loop

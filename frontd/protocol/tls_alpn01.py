"""ACME tls-alpn-01 (RFC 8737) on the TLS listeners: the challenge certificate for "acme-tls/1".

The CA validates a name by opening a TLS connection with that SNI name and ALPN "acme-tls/1" only;
the server must present the self-signed certificate that the ACME process wrote to
`{storage}/challenges/tls-alpn-01/{name}.pem`, negotiate "acme-tls/1", and nothing more (§3: the
connection carries no data after the handshake).

How the certificate is chosen: Python's ssl lets the server choose a certificate only in the SNI
callback, and the client's ALPN list is not visible there (OpenSSL's ALPN callback, which runs
later, is not exposed). So before the handshake the worker peeks at the ClientHello on the raw
socket with MSG_PEEK, which leaves the bytes for OpenSSL to read, and parses its server_name and
ALPN extensions (protocol/client_hello.py). When "acme-tls/1" is offered and a challenge file for
the name exists, the handshake runs with a context holding only that certificate and ALPN
"acme-tls/1"; otherwise with the usual SNI-selected contexts. Only configurations that use
tls-alpn-01 pay for the peek.
"""

from __future__ import annotations

import asyncio
import select
import socket
import ssl

from frontd.certs.store import tls_alpn01_path
from frontd.config.model import Config
from frontd.protocol.client_hello import ClientHello, parse_client_hello
from frontd.wire.errors import WireError

ACME_TLS_ALPN = "acme-tls/1"
MAX_PEEK = (1 << 16) + 64  # a ClientHello of the largest size parse_client_hello accepts, in records
MAX_PEEK_WAIT = 0.05  # a partial ClientHello: wait this long at most between peeks
_POLLRDHUP = getattr(select, "POLLRDHUP", 0)  # Linux: the peer shut down its writing side


class AlpnChallenges:
    """Picks the RFC 8737 challenge context for a connection, when there is one to pick."""

    def __init__(self, config: Config) -> None:
        acme = config.acme
        self.storage = acme.storage if acme is not None else ""
        self.enabled = (acme is not None and acme.challenge == "tls-alpn-01"
                        and any(vhost.tls == "acme" for vhost in config.vhosts))

    async def context_for(self, sock: socket.socket, timeout: float) -> tuple[ssl.SSLContext, str] | None:
        """(challenge context, name) when the client asks for acme-tls/1 and a challenge is pending
        for its SNI name; None otherwise. TimeoutError when no whole ClientHello came in `timeout`."""
        try:
            hello = await peek_client_hello(sock, timeout)
        except WireError:
            return None  # not TLS, or broken: the handshake says so in its own log line
        if hello is None or hello.server_name is None or ACME_TLS_ALPN not in hello.alpn:
            return None
        try:
            path = tls_alpn01_path(self.storage, hello.server_name)
        except ValueError:
            return None  # not a name that can have a challenge file
        try:
            return challenge_context(path), hello.server_name
        except (OSError, ssl.SSLError):
            return None  # no challenge pending for this name (or it just ended)


def challenge_context(path: str) -> ssl.SSLContext:
    """A context serving only the challenge certificate (and its key, in the same PEM file)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2  # RFC 8737 §4: TLS 1.2 or later
    context.load_cert_chain(path)
    context.set_alpn_protocols([ACME_TLS_ALPN])
    return context


async def peek_client_hello(sock: socket.socket, timeout: float) -> ClientHello | None:
    """The ClientHello at the head of `sock`'s receive queue, left there (MSG_PEEK); None when the
    client closed first. WireError when it is not one; TimeoutError after `timeout`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    pause = 0.001
    while True:
        try:
            data: bytes | None = sock.recv(MAX_PEEK, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            data = None
        if data == b"":
            return None
        if data is None:
            await _readable(sock, deadline - loop.time())
            continue
        hello = parse_client_hello(data)
        if hello is not None:
            return hello
        if len(data) >= MAX_PEEK:
            raise WireError("ClientHello", f"not complete in {MAX_PEEK} bytes", data[:16], section="RFC 8446 §4.1.2")
        if _peer_done(sock):
            return None  # half a ClientHello and the end: the handshake reports the client gone
        # Part of it is here: the socket stays readable, so waiting for readability would spin.
        # The rest is normally one segment behind; look again shortly.
        if loop.time() + pause > deadline:
            raise TimeoutError("ClientHello incomplete")
        await asyncio.sleep(pause)
        pause = min(pause * 2, MAX_PEEK_WAIT)


def _peer_done(sock: socket.socket) -> bool:
    """Whether the client shut its side down. A peek keeps returning the unread bytes after the
    end, never b"", so the end is asked of poll(2): POLLRDHUP (Linux), POLLHUP, POLLERR."""
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN | _POLLRDHUP)
    return any(events & (_POLLRDHUP | select.POLLHUP | select.POLLERR) for _, events in poller.poll(0))


async def _readable(sock: socket.socket, timeout: float) -> None:
    if timeout <= 0:
        raise TimeoutError("no ClientHello")
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()
    loop.add_reader(sock.fileno(), lambda: ready.done() or ready.set_result(None))
    try:
        async with asyncio.timeout(timeout):
            await ready
    except TimeoutError:
        raise TimeoutError("no ClientHello") from None
    finally:
        loop.remove_reader(sock.fileno())

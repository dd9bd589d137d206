"""Who may come in: allow/deny by client address, HTTP Basic authentication (RFC 7617) and
FastCGI authorizers (frontd/rules/authorizer.py).

A `Gate` is built once per vhost and per route that has a rule (`Access.gate_for`); a request on
a route without rules finds None and pays one dict lookup. The gate runs in the order CONFIG.md
gives: deny, allow, auth, authorizer.
"""

from __future__ import annotations

import base64
import binascii
import logging

from frontd.config.model import BasicAuth, Config, Route, VHost
from frontd.errors import Forbidden, InternalServerError, Unauthorized
from frontd.http.addresses import client_allowed, compile_networks
from frontd.request import Request
from frontd.response import ResponseSink
from frontd.rules.authorizer import Authorizer
from frontd.rules.htpasswd import HtpasswdError, PasswordFile
from frontd.status import metrics

log = logging.getLogger("frontd")

# RFC 8555 §8.3: the CA fetches http-01 answers without credentials; never behind auth.
ACME_CHALLENGE_PREFIX = "/.well-known/acme-challenge/"


class BasicCheck:
    """`auth = { realm, htpasswd }`: 401 with the challenge unless the credentials are right."""

    def __init__(self, auth: BasicAuth, file: PasswordFile) -> None:
        self.realm = auth.realm
        self.file = file
        # RFC 7617 §2.1: charset="UTF-8" tells clients how to encode user and password.
        self.challenge = ((b"www-authenticate", f'Basic realm="{auth.realm}", charset="UTF-8"'.encode()),)

    def refuse(self, why: str, *, attempt: bool) -> Unauthorized:
        if attempt:
            metrics.STATS.auth_failed()
        return Unauthorized(f'auth realm "{self.realm}": {why}', headers=self.challenge)

    async def check(self, request: Request) -> None:
        header = request.header(b"authorization")
        if header is None:
            raise self.refuse("no credentials", attempt=False)
        scheme, _, token = header.strip().partition(b" ")
        if scheme.lower() != b"basic":
            raise self.refuse(f"scheme {scheme[:20].decode('latin-1')!r} is not Basic", attempt=True)
        try:
            decoded = base64.b64decode(token.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise self.refuse("malformed Basic credentials (not base64)", attempt=True) from None
        user, colon, password = decoded.partition(b":")
        if not colon:
            raise self.refuse("malformed Basic credentials (no colon)", attempt=True)
        shown = user[:64].decode("utf-8", "replace")
        try:
            ok = await self.file.verify(user, password)
        except HtpasswdError as exc:
            # Never an open door: a file that cannot be read lets nobody in.
            raise InternalServerError(f'auth realm "{self.realm}": {exc}') from None
        if not ok:
            raise self.refuse(f"user {shown!r}: unknown user or wrong password", attempt=True)
        request.remote_user = user.decode("utf-8", "replace")


class Gate:
    """The access rules of one vhost or route, compiled."""

    def __init__(self, allow: tuple[str, ...] | None, deny: tuple[str, ...], basic: BasicCheck | None,
                 authorizer: Authorizer | None = None) -> None:
        self.allow = compile_networks(allow) if allow is not None else None
        self.deny = compile_networks(deny)
        self.basic = basic
        self.authorizer = authorizer

    async def check(self, request: Request, sink: ResponseSink) -> bool:
        """Raise the refusal (403, 401, 500); True when the gate answered the request itself."""
        if self.deny or self.allow is not None:
            client = request.client_addr
            if self.deny and client_allowed(client, self.deny):
                raise Forbidden(f"client {client} is denied by deny")
            if self.allow is not None and not client_allowed(client, self.allow):
                raise Forbidden(f"client {client} is not in allow")
        if request.path.startswith(ACME_CHALLENGE_PREFIX):
            return False
        if self.basic is not None:
            await self.basic.check(request)
        if self.authorizer is not None:
            return await self.authorizer.check(request, sink)
        return False


class Access:
    """Every gate of a configuration, by the id of its vhost or route."""

    def __init__(self, config: Config) -> None:
        self.files: dict[str, PasswordFile] = {}
        self.gates: dict[int, Gate] = {}
        for vhost in config.vhosts:
            for owner in (vhost, *vhost.routes):
                gate = self.build(owner)
                if gate is not None:
                    self.gates[id(owner)] = gate

    def build(self, owner: VHost | Route) -> Gate | None:
        authorizer = Authorizer(owner) if isinstance(owner, Route) and owner.authorizer else None
        if owner.allow is None and not owner.deny and owner.auth is None and authorizer is None:
            return None
        basic = None
        if owner.auth is not None:
            path = owner.auth.htpasswd
            file = self.files.get(path)
            if file is None:
                file = self.files[path] = PasswordFile(path)
            basic = BasicCheck(owner.auth, file)
        return Gate(owner.allow, owner.deny, basic, authorizer)

    def gate_for(self, vhost: VHost, route: Route | None) -> Gate | None:
        return self.gates.get(id(route) if route is not None else id(vhost))

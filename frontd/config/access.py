"""Access rules (docs/access.md): allow, deny and auth on a vhost or a route, and a route's authorizer."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from frontd.config.model import Address, BasicAuth, Route
from frontd.config.units import show
from frontd.config.values import ValueReader
from frontd.http.passwords import HtpasswdError, read_htpasswd

# Access rules (docs/access.md): on a vhost, and on a route of any kind, where they replace the vhost's.
ACCESS_KEYS: tuple[str, ...] = ("allow", "deny", "auth")
AUTH_KEYS: tuple[str, ...] = ("realm", "htpasswd")


class AccessSection(ValueReader):
    """`allow`, `deny`, `auth` and `authorizer`."""

    def access(self, table: dict[str, object], path: str) -> dict[str, Any]:
        """The access keys set in a vhost or route table: allow, deny (networks) and auth (a
        BasicAuth, or None for `auth = false`)."""
        values: dict[str, Any] = {}
        for name in ("allow", "deny"):
            if name in table:
                values[name] = self.networks(table[name], f"{path}.{name}")
        if "auth" in table:
            values["auth"] = self.basic_auth(table["auth"], f"{path}.auth")
        return values

    def route_access(self, route: Route, table: dict[str, object], path: str, vhost: dict[str, Any]) -> Route:
        """A route with its effective access rules: each key the route sets replaces the vhost's,
        list by list (`allow = []` refuses everyone). Behind auth, a gateway does not see the
        credentials (HTTP_AUTHORIZATION) unless the route sets pass_authorization = true."""
        values = {**vhost, **self.access(table, path)}
        if values.get("auth") is not None and "pass_authorization" not in table:
            values["pass_authorization"] = False
        if "authorizer" in table:
            values["authorizer"] = self.authorizer(table["authorizer"], f"{path}.authorizer", route)
        return replace(route, **values) if values else route

    def authorizer(self, value: object, key: str, route: Route) -> tuple[Address, ...]:
        """`authorizer = ADDRESS | [ADDRESS, ...]`: FastCGI applications in the AUTHORIZER role;
        `authorizer = true` on a fastcgi route with spawn: the spawned application answers both
        roles (flup's `roles=(FCGI_RESPONDER, FCGI_AUTHORIZER)`)."""
        if value is True:
            if route.kind != "fastcgi" or not route.spawn:
                self.fail(key, "authorizer = true needs a fastcgi route with spawn (the spawned application "
                          'is then the authorizer too); otherwise give its address, such as "unix:/run/auth.sock"')
            return route.backends
        return self.backends(value, key)

    def basic_auth(self, value: object, key: str) -> BasicAuth | None:
        """`auth = { realm = "...", htpasswd = "path" }`, or false (none: lifts the vhost's). The
        file is read now: a missing file or an unsupported hash is an error of `frontd -t`."""
        if value is False:
            return None
        if not isinstance(value, dict):
            self.fail(key, f'expected {{ realm = "...", htpasswd = "path" }} or false, got {show(value)}')
        self.check_keys(value, AUTH_KEYS, key)
        for name in AUTH_KEYS:
            if name not in value:
                self.fail(key, f'missing key "{name}"')
        realm = self.string(value["realm"], f"{key}.realm", "a realm name")
        if any(ord(c) < 0x20 or c in '\x7f"\\' for c in realm):
            self.fail(f"{key}.realm", f"must not contain quotes, backslashes or control characters, got {show(realm)}")
        htpasswd = self.readable_file(value["htpasswd"], f"{key}.htpasswd")
        try:
            read_htpasswd(htpasswd)
        except HtpasswdError as exc:
            self.fail(f"{key}.htpasswd", str(exc))
        return BasicAuth(realm=realm, htpasswd=htpasswd)

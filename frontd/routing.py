"""Virtual host and route selection: exact names, longest wildcard, default; longest prefix."""

from __future__ import annotations

import ipaddress

from frontd.config.model import Config, Route, VHost


class Router:
    """Tables compiled once per configuration so that each request costs a dict lookup or two."""

    def __init__(self, config: Config) -> None:
        self._exact: dict[str, VHost] = {}
        # "*.example.test" is stored as ".example.test": a host matches when it ends with the suffix
        # and has at least one label before it.
        self._wildcards: dict[str, VHost] = {}
        default: VHost | None = None
        for vhost in config.vhosts:
            for name in vhost.names:
                if name.startswith("*."):
                    self._wildcards.setdefault(name[1:], vhost)
                else:
                    self._exact.setdefault(name, vhost)
            if vhost.default and default is None:
                default = vhost
        self._default = default or config.vhosts[0]
        self._routes: dict[int, tuple[Route, ...]] = {
            id(vhost): tuple(sorted(vhost.routes, key=lambda r: len(r.prefix), reverse=True))
            for vhost in config.vhosts
        }

    def vhost(self, host: str) -> VHost:
        """The vhost for a Host name already lower-cased, without port or trailing dot.

        Exact names first, then the longest matching wildcard, then the default vhost (the one
        with `default = true`, else the first).
        """
        found = self._exact.get(host)
        if found is not None:
            return found
        if host.startswith("["):
            # An IPv6 literal has many spellings ("[::1]", "[0:0::1]"); the config holds the
            # compressed one (RFC 5952 §4), so compare in that form.
            try:
                found = self._exact.get(f"[{ipaddress.IPv6Address(host[1:-1])}]")
            except ValueError:
                found = None
            return found or self._default
        if self._wildcards:
            # Suffixes from the longest: "a.b.example.test" tries ".b.example.test", then
            # ".example.test", then ".test"; one dict lookup per label.
            dot = host.find(".", 1)
            while dot > 0:
                found = self._wildcards.get(host[dot:])
                if found is not None:
                    return found
                dot = host.find(".", dot + 1)
        return self._default

    def route(self, vhost: VHost, path: str) -> Route | None:
        """The longest prefix matching on whole segments: "/fcgi/" takes "/fcgi" and "/fcgi/x"."""
        for route in self._routes[id(vhost)]:
            prefix = route.prefix
            if path.startswith(prefix) or path == prefix[:-1]:
                return route
        return None

"""Virtual host and route selection: exact names, longest wildcard, default; longest prefix."""

from __future__ import annotations

from frontd.config.model import Config, Route, VHost


class Router:
    """Tables compiled once per configuration so that each request costs a dict lookup or two."""

    def __init__(self, config: Config) -> None:
        self._exact: dict[str, VHost] = {}
        wildcards: list[tuple[str, VHost]] = []
        default: VHost | None = None
        for vhost in config.vhosts:
            for name in vhost.names:
                if name.startswith("*."):
                    wildcards.append((name[1:], vhost))  # ".example.test"
                else:
                    self._exact[name] = vhost
            if vhost.default and default is None:
                default = vhost
        # Longest suffix first, so "*.a.example.test" wins over "*.example.test".
        self._wildcards = sorted(wildcards, key=lambda item: len(item[0]), reverse=True)
        self._default = default or config.vhosts[0]
        self._routes: dict[int, tuple[Route, ...]] = {
            id(vhost): tuple(sorted(vhost.routes, key=lambda r: len(r.prefix), reverse=True))
            for vhost in config.vhosts
        }

    def vhost(self, host: str) -> VHost:
        """The vhost for a Host name already lower-cased, without port or trailing dot."""
        found = self._exact.get(host)
        if found is not None:
            return found
        for suffix, vhost in self._wildcards:
            if host.endswith(suffix) and len(host) > len(suffix):
                return vhost
        return self._default

    def route(self, vhost: VHost, path: str) -> Route | None:
        """The longest prefix matching on whole segments: "/fcgi/" takes "/fcgi" and "/fcgi/x"."""
        for route in self._routes[id(vhost)]:
            prefix = route.prefix
            if path.startswith(prefix) or path == prefix[:-1]:
                return route
        return None

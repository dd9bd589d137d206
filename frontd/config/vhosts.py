"""`[[vhost]]` tables: names, root, status page, routes and the vhost's own access log."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from frontd.config.access import ACCESS_KEYS, AccessSection
from frontd.config.address import parse_hostname
from frontd.config.model import ACCESS_LOG_FORMATS, Route, VHost
from frontd.config.routes import RoutesSection
from frontd.config.tls import TLSSection
from frontd.config.units import show

VHOST_KEYS: tuple[str, ...] = ("names", "default", "root", "index", "autoindex", "route", "status", "status_allow",
                               "tls_certificate", "tls_key", "tls", "redirect_https", "rewrite", "try_files",
                               "error_pages", *ACCESS_KEYS,
                               "headers", "compress", "compress_types", "compress_min_size", "precompressed",
                               "access_log", "access_log_format")
_VHOST_DEFAULTS = VHost(names=())


class VHostsSection(RoutesSection, AccessSection, TLSSection):
    """`[[vhost]]`: each table, its names, and its routes read in order."""

    def vhosts(self, value: object) -> tuple[VHost, ...]:
        if value is None:
            self.fail("vhost", "no virtual host; add at least one [[vhost]] section")
        tables = self.tables(value, "vhost", "vhost")
        if not tables:
            self.fail("vhost", "no virtual host; add at least one [[vhost]] section")
        owners: dict[str, str] = {}
        default_key: str | None = None
        vhosts: list[VHost] = []
        for i, table in enumerate(tables):
            vhost = self.vhost(table, f"vhost[{i}]", owners)
            if vhost.default:
                if default_key is not None:
                    self.fail(f"vhost[{i}].default", f"{default_key} is already the default")
                default_key = f"vhost[{i}]"
            vhosts.append(vhost)
        for i, vhost in enumerate(vhosts):
            # Unmatched requests go to the default vhost, else to the first.
            fallback = vhost.default or (i == 0 and default_key is None)
            if not vhost.names and not fallback:
                self.fail(
                    f"vhost[{i}]",
                    "no names and not the default, so no request can reach it "
                    "(add names or set default = true)",
                )
        return tuple(vhosts)

    def vhost(self, table: dict[str, object], path: str, owners: dict[str, str]) -> VHost:
        self.check_keys(table, VHOST_KEYS, path)
        names = self.names(table.get("names", []), f"{path}.names", path, owners)
        self.vhost_label = names[0] if names else path.replace("[", "").replace("]", "")
        default = self.boolean(table["default"], f"{path}.default") if "default" in table else False
        root = self.directory(table["root"], f"{path}.root") if "root" in table else None
        index = (
            self.file_names(table["index"], f"{path}.index")
            if "index" in table
            else _VHOST_DEFAULTS.index
        )
        autoindex = (
            self.boolean(table["autoindex"], f"{path}.autoindex") if "autoindex" in table else False
        )
        status = self.status_path(table["status"], f"{path}.status") if "status" in table else None
        status_allow = (self.networks(table["status_allow"], f"{path}.status_allow")
                        if "status_allow" in table else _VHOST_DEFAULTS.status_allow)
        access = self.access(table, path)
        rules = self.vhost_rules(table, path, root)
        route_tables = self.tables(table.get("route", []), f"{path}.route", "vhost.route")
        output = self.output_keys(table, path)
        routes: list[Route] = []
        prefixes: dict[str, str] = {}
        for j, route_table in enumerate(route_tables):
            route_path = f"{path}.route[{j}]"
            route = self.route(route_table, route_path, index, autoindex, rules.get("error_pages", ()))
            route = self.route_access(route, route_table, route_path, access)
            route = replace(route, **self.resolve_output(output, self.output_keys(route_table, route_path), route_path,
                                                         files=route.kind == "static" or route.root is not None))
            if route.prefix in prefixes:
                self.fail(
                    f"{route_path}.prefix",
                    f"{show(route.prefix)} is already the prefix of {prefixes[route.prefix]}",
                )
            prefixes[route.prefix] = route_path
            routes.append(route)
        if root is None and not routes and status is None:
            self.fail(path, "serves nothing: set root or add a [[vhost.route]]")
        tls_values = self.vhost_tls(table, path, names)
        return VHost(
            names=names,
            default=default,
            root=root,
            index=index,
            autoindex=autoindex,
            routes=tuple(routes),
            status=status,
            status_allow=status_allow,
            **tls_values,
            **access,
            **rules,
            **self.resolve_output({}, output, path),
            **self.vhost_access_log(table, path),
        )

    def names(
        self, value: object, key: str, vhost: str, owners: dict[str, str]
    ) -> tuple[str, ...]:
        items = [] if value == [] else self.one_or_more(value, key, "a host name", "host names")
        names: list[str] = []
        for item, item_key in items:
            text = self.string(item, item_key, "a host name")
            if ":" in text and not text.startswith("["):
                self.fail(item_key, f"a name has no port (the port is ignored), got {show(text)}")
            name = parse_hostname(text, self.where(item_key), wildcard=True)
            if name in owners:
                self.fail(item_key, f"{show(name)} is already a name of {owners[name]}")
            owners[name] = vhost
            names.append(name)
        return tuple(names)

    def vhost_access_log(self, table: dict[str, object], path: str) -> dict[str, Any]:
        """A vhost's own `access_log` ("-", "off" or a file) and `access_log_format`."""
        values: dict[str, Any] = {}
        if "access_log" in table:
            values["access_log"] = target = self.log_file(table["access_log"], f"{path}.access_log", ("-", "off"))
            if target not in ("-", "off"):  # opened by the workers, as the top-level one
                self.reachable_by_workers(target, f"{path}.access_log", self.top_user, self.top_group)
        if "access_log_format" in table:
            values["access_log_format"] = self.choice(table["access_log_format"], f"{path}.access_log_format",
                                                      ACCESS_LOG_FORMATS)
        return values

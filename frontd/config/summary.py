"""`frontd -t`: the effective configuration, every default filled in."""

from __future__ import annotations

import shlex
from dataclasses import fields

from frontd.config.model import GATEWAY_KINDS, Config, Limits, Listener, ProxyTarget, Route, VHost
from frontd.config.routes import ROUTE_OPTIONS
from frontd.config.units import format_duration, format_rate, format_size, show


def summary(config: Config) -> str:
    """The effective configuration, as `frontd -t` prints it: every default filled in, every path
    absolute, and each vhost's routes in match order (longest prefix first)."""
    limits = config.limits
    lines = [
        f"# effective configuration of {config.path}",
        f"listen {', '.join(_describe_listener(listener, config.http2(listener)) for listener in config.listener_options())}",
        f"workers {config.workers}",
        f"pid_file {config.pid_file or '(none)'}",
        f"error_log {config.error_log}",
        f"access_log {config.access_log}"
        + (f"  format {config.access_log_format}" if config.access_log_format != "combined" else ""),
        f"log_level {config.log_level}",
    ]
    if config.user is not None:
        lines.append(f"user {config.user}")
    if config.group is not None:
        lines.append(f"group {config.group}")
    lines.append(f"shutdown_timeout {format_duration(config.shutdown_timeout)}")
    if config.trusted_proxies:
        lines.append(f"trusted_proxies {' '.join(config.trusted_proxies)}")
    if config.tls_listeners():
        lines.append(f"tls min_version={config.tls.min_version} alpn={'h2,' if config.tls.http2 else ''}http/1.1 "
                     f"session_tickets={'on' if config.tls.session_tickets else 'off'}")
    if config.acme is not None:
        acme = config.acme
        line = f"acme storage={acme.storage}"
        if any(vhost.tls == "acme" for vhost in config.vhosts):  # the CA matters only then
            line += (f" directory={acme.directory} challenge={acme.challenge}"
                     + (f" email={acme.email}" if acme.email else "")
                     + (f" ca_bundle={acme.ca_bundle}" if acme.ca_bundle else ""))
        lines.append(line)
    if any(route.spawn for vhost in config.vhosts for route in vhost.routes):
        lines.append(f"run_dir {config.run_dir}")
    lines.append(
        "limits "
        + " ".join(
            f"{f.name}={_format_limit(f.name, getattr(limits, f.name))}" for f in fields(Limits)
        )
    )
    if config.script_extensions:
        lines.append(f"script_extensions {' '.join(config.script_extensions)}  (never served as static files)")
    has_default = any(v.default for v in config.vhosts)
    for i, vhost in enumerate(config.vhosts):
        lines.append("")
        names = " ".join(vhost.names) if vhost.names else "(no names)"
        if vhost.default:
            names += "  (default)"
        elif i == 0 and not has_default:
            names += "  (default: first vhost)"
        lines.append(f"vhost[{i}] {names}")
        index = " ".join(vhost.index) or "(none)"
        autoindex = "on" if vhost.autoindex else "off"
        lines.append(f"  root {vhost.root or '(none)'}  index {index}  autoindex {autoindex}")
        if vhost.tls_certificate is not None:
            lines.append(f"  tls_certificate {vhost.tls_certificate}  tls_key {vhost.tls_key}")
        elif vhost.tls is not None:
            lines.append(f"  tls {vhost.tls}")
        if vhost.redirect_https:
            lines.append("  redirect_https on")
        if vhost.status is not None:
            lines.append(f"  status {vhost.status}  allow {' '.join(vhost.status_allow) or '(nobody)'}")
        if vhost.access_log is not None or vhost.access_log_format is not None:
            lines.append(f"  access_log {vhost.access_log or config.access_log}  "
                         f"format {vhost.access_log_format or config.access_log_format}")
        if _describe_access(vhost):
            lines.append(f"  access {_describe_access(vhost)}")
        routes = sorted(vhost.routes, key=lambda r: len(r.prefix), reverse=True)
        width = max([len(r.prefix) for r in routes] + [1])
        for rule in vhost.rewrites:
            what = f"redirect {rule.status}" if rule.status is not None else "internal"
            lines.append(f"  rewrite {show(rule.match)} -> {show(rule.to)} ({what})")
        if vhost.try_files:
            lines.append(f"  try_files {' '.join(vhost.try_files)}  (vhost root)")
        if vhost.error_pages:
            lines.append(f"  error_pages {' '.join(f'{s}={p}' for s, p in vhost.error_pages)}")
        for route in routes:
            lines.append(f"  {route.prefix:<{width}}  {_describe_route(route)}")
            if route.try_files:
                lines.append(f"  {'':<{width}}    try_files {' '.join(route.try_files)}")
            if route.error_pages and route.error_pages != vhost.error_pages:
                lines.append(f"  {'':<{width}}    error_pages {' '.join(f'{s}={p}' for s, p in route.error_pages)}")
            if route.intercept_errors:
                lines.append(f"  {'':<{width}}    intercept_errors on (the backend's own errors use the pages)")
            if route.x_sendfile:
                lines.append(f"  {'':<{width}}    x_sendfile {' '.join(route.x_sendfile)} (X-Sendfile files; "
                             "X-Accel-Redirect to internal routes)")
            if route.internal:
                lines.append(f"  {'':<{width}}    internal (internal redirects only; clients get 404)")
        if vhost.root is not None and all(r.prefix != "/" for r in vhost.routes):
            lines.append(f"  {'/':<{width}}  static {vhost.root}  (vhost root)  {' '.join(_describe_output(vhost))}".rstrip())
        elif not any(r.prefix == "/" for r in vhost.routes):
            lines.append(f"  {'/':<{width}}  404  (no route, no root)")
    return "\n".join(lines)


def _describe_listener(listener: Listener, http2: bool) -> str:
    """`host:port (tls, h2, proxy_protocol)`: h2 by ALPN on TLS, h2c with prior knowledge otherwise."""
    options = [name for name, on in (("tls", listener.tls), ("h2" if listener.tls else "h2c", http2),
                                     ("proxy_protocol", listener.proxy_protocol)) if on]
    return f"{listener.address} ({', '.join(options)})" if options else str(listener.address)


def _format_limit(name: str, value: int | float) -> str:
    if name in ("max_connections", "client_connections", "client_burst", "http2_max_streams"):
        return str(value) if value else "off"
    if name == "client_rate":
        return format_rate(value) if value else "off"
    if name == "file_cache_size":
        return format_size(int(value)) if value else "off"
    if name.startswith("max_"):
        return format_size(int(value))
    return format_duration(float(value))


def _describe_route(route: Route) -> str:
    if route.kind == "redirect":
        return f"redirect {route.redirect} (status {route.redirect_status}; rest of the path and query appended)"
    parts: list[str] = [route.kind]
    if route.program is not None:
        script_name = route.prefix[:-1] or '""'
        parts.append(f"{route.program} (one program: SCRIPT_NAME={script_name}, PATH_INFO=the rest)")
    elif route.kind in ("static", "cgi"):
        parts.append(str(route.directory))
    elif route.kind == "proxy":
        parts.append(", ".join(_proxy_url(t) for t in route.proxy))
    else:
        parts.append(", ".join(str(a) for a in route.backends))
    options: list[str] = []
    if route.kind in GATEWAY_KINDS:
        if route.root is not None:
            options.append(f"root={route.root} (script mode)")
        else:
            script_name = route.prefix[:-1] or '""'
            options.append(f"SCRIPT_NAME={script_name} (application mount)")
    if route.index:
        options.append(f"index={','.join(route.index)}")
    if route.root is not None:
        options.append(f"extensions={','.join(route.extensions) or '(any)'}")
    if route.kind == "static":
        options.append(f"autoindex={'on' if route.autoindex else 'off'}")
    if route.kind != "static":
        options.append(f"timeout={format_duration(route.timeout)}")
    if route.kind != "static" and route.kind != "cgi":
        options.append(f"connect_timeout={format_duration(route.connect_timeout)}")
    if route.kind in ROUTE_OPTIONS["request_buffering"]:
        options.append(f"request_buffering={'on' if route.request_buffering else 'off'}")
    if route.kind in ROUTE_OPTIONS["response_buffering"]:
        options.append(f"response_buffering={'on' if route.response_buffering else 'off'}")
    if route.kind in ("fastcgi", "proxy"):
        options.append(f"keepalive={route.keepalive}")
        options.append(f"keepalive_timeout={format_duration(route.keepalive_timeout)}")
    if route.kind == "cgi":
        options.append(f"max_processes={route.max_processes}")
        options.append(f"path={route.path_env}")
        options.extend(f"interpreter{ext}={program}" for ext, program in route.interpreters)
    if route.kind == "cgi" or route.kind in GATEWAY_KINDS:
        options.append(f"pass_authorization={'on' if route.pass_authorization else 'off'}")
        options.extend(f"env.{name}={show(value)}" for name, value in route.env)
    if route.kind == "proxy":
        options.append(f"host={route.host}" if route.host else "host=(client's)")
    if _describe_access(route):
        options.append(_describe_access(route))
    if route.spawn:
        options.append(f"spawn={show(shlex.join(route.spawn))} processes={route.processes} cwd={route.cwd}")
        if route.user is not None:
            options.append(f"user={route.user}")
    options.extend(_describe_output(route))
    return "  ".join([" ".join(parts), " ".join(options)])


def _describe_output(owner: Route | VHost) -> list[str]:
    """The resolved output rules, as `-t` shows them: what each route really sends."""
    options = [f"header.{name.decode()}={show(value.decode('latin-1'))}" for name, value in owner.headers]
    if owner.compress is not None:
        options.append(f"compress={','.join(owner.compress.encodings)} min_size={format_size(owner.compress.min_size)}")
    if owner.precompressed:
        options.append("precompressed")
    return options


def _describe_access(owner: VHost | Route) -> str:
    """The effective access rules: "allow=... deny=... auth=realm:file", "" when there are none."""
    parts: list[str] = []
    if owner.allow is not None:
        parts.append(f"allow={','.join(owner.allow) or '(nobody)'}")
    if owner.deny:
        parts.append(f"deny={','.join(owner.deny)}")
    if owner.auth is not None:
        parts.append(f"auth={show(owner.auth.realm)}:{owner.auth.htpasswd}")
    if isinstance(owner, Route) and owner.authorizer:
        parts.append(f"authorizer={','.join(str(a) for a in owner.authorizer)}")
    return " ".join(parts)


def _proxy_url(target: ProxyTarget) -> str:
    address = target.address
    if address.kind == "unix":
        return f"http://unix:{address.path}" + (f":{target.path}" if target.path else "")
    return f"http://{address}{target.path or ''}"

"""Listener and backend addresses ("host:port", "[v6]:port", ":port", "unix:/path") and proxy URLs."""

from __future__ import annotations

import ipaddress
import os
import re

from frontd.config.model import Address, ConfigError, ProxyTarget
from frontd.config.units import show

# sockaddr_un.sun_path is 108 bytes on Linux, one of them the terminating NUL (unix(7)).
MAX_UNIX_PATH = 107

_PORT_RE = re.compile(r"[0-9]{1,5}")
_IPV4_LIKE_RE = re.compile(r"[0-9.]+")
# RFC 1123 §2.1 labels; "_" is tolerated because it occurs in real internal names.
_LABEL_RE = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
# RFC 3986 §3.3 path characters (pchar and "/"), percent-encoded octets included.
_URL_PATH_RE = re.compile(r"/[A-Za-z0-9\-._~!$&'()*+,;=:@/%]*")


def parse_hostname(host: str, where: str, *, wildcard: bool = False) -> str:
    """A DNS name or IPv4 address, lower-cased and without its trailing dot; "[v6]" stays bracketed.

    With `wildcard`, a leading "*." is allowed ("*.example.test", as vhost names use).
    """
    if host.startswith("[") and host.endswith("]"):  # an IPv6 literal, as a Host header has it
        try:
            return f"[{ipaddress.IPv6Address(host[1:-1])}]"
        except ValueError:
            raise ConfigError(f"{where}: bad IPv6 address {show(host)}") from None
    name = host.lower()
    if name.endswith(".") and name != ".":
        name = name[:-1]
    if not name:
        raise ConfigError(f"{where}: empty host name")
    labels = name.split(".")
    if wildcard and labels[0] == "*" and len(labels) > 1:
        labels = labels[1:]
    elif "*" in name:
        raise ConfigError(
            f'{where}: bad name {show(host)}: a wildcard is only allowed as a leading "*.", '
            f'as in "*.example.test"'
        )
    if _IPV4_LIKE_RE.fullmatch(name):
        try:
            ipaddress.IPv4Address(name)
        except ValueError:
            raise ConfigError(f"{where}: bad IPv4 address {show(host)}") from None
        return name
    if len(name) > 253 or not all(_LABEL_RE.fullmatch(label) for label in labels):
        raise ConfigError(
            f"{where}: bad host name {show(host)} (letters, digits, hyphens, dots; "
            f"labels of at most 63 characters)"
        )
    return name


def parse_unix_path(path: str, where: str, base_dir: str | None) -> str:
    """The absolute, normalised path of a Unix socket; relative paths resolve against `base_dir`."""
    if not path:
        raise ConfigError(f'{where}: empty Unix socket path (expected "unix:/path/to.sock")')
    if "\0" in path:
        raise ConfigError(f"{where}: Unix socket path contains a NUL byte")
    if path.endswith("/"):
        raise ConfigError(f"{where}: Unix socket path {show(path)} names a directory")
    if not os.path.isabs(path):
        if base_dir is None:
            raise ConfigError(f"{where}: Unix socket path {show(path)} must be absolute")
        path = os.path.join(base_dir, path)
    path = os.path.normpath(path)
    size = len(os.fsencode(path))
    if size > MAX_UNIX_PATH:
        raise ConfigError(
            f"{where}: Unix socket path {show(path)} is {size} bytes long; "
            f"the limit is {MAX_UNIX_PATH}"
        )
    return path


def _parse_port(text: str, where: str, address: str, *, listener: bool) -> int:
    low = 0 if listener else 1
    if not _PORT_RE.fullmatch(text) or not low <= int(text) <= 65535:
        raise ConfigError(
            f"{where}: bad port {show(text)} in {show(address)} (expected {low}..65535)"
        )
    return int(text)


def parse_address(
    text: str, where: str, *, listener: bool, base_dir: str | None = None
) -> Address:
    """A listener (`listener=True`) or backend address.

    "host:port", "[v6]:port", "unix:/path" (relative paths resolve against `base_dir`); listeners
    also take ":port" and "*:port" (all addresses, host "") and port 0 (any free port).
    """
    forms = (
        '"host:port", "[v6]:port", ":port" or "unix:/path"'
        if listener
        else '"host:port", "[v6]:port" or "unix:/path"'
    )
    if not isinstance(text, str):
        raise ConfigError(f"{where}: expected an address ({forms}), got {show(text)}")
    if text.startswith("unix:"):
        return Address("unix", path=parse_unix_path(text[5:], where, base_dir))
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ConfigError(f'{where}: missing "]" in {show(text)} (expected {forms})')
        literal, rest = text[1:end], text[end + 1 :]
        try:
            host = str(ipaddress.IPv6Address(literal))
        except ValueError:
            raise ConfigError(f"{where}: bad IPv6 address {show(literal)} in {show(text)}") from None
        if not rest.startswith(":"):
            raise ConfigError(f"{where}: missing port in {show(text)} (expected {forms})")
        return Address("tcp", host, _parse_port(rest[1:], where, text, listener=listener))
    host, colon, port_text = text.rpartition(":")
    if not colon:
        hint = f' (did you mean ":{text}"?)' if listener and _PORT_RE.fullmatch(text) else ""
        raise ConfigError(f"{where}: missing port in {show(text)}; expected {forms}{hint}")
    if ":" in host:
        raise ConfigError(
            f'{where}: an IPv6 address goes in brackets: "[{host}]:{port_text}", got {show(text)}'
        )
    port = _parse_port(port_text, where, text, listener=listener)
    if host in ("", "*"):
        if not listener:
            raise ConfigError(f"{where}: missing host in {show(text)} (expected {forms})")
        return Address("tcp", "", port)
    return Address("tcp", parse_hostname(host, where), port)


def parse_proxy_url(text: str, where: str, base_dir: str | None = None) -> ProxyTarget:
    """An HTTP backend URL: "http://host:port", "http://[v6]:port", "http://unix:/path/to.sock".

    An optional path ("http://127.0.0.1:8081/base/", or nginx's "http://unix:/run/app.sock:/base/")
    replaces the route's prefix; like the prefix it is normalised to end with "/".
    """
    example = '"http://127.0.0.1:8081" or "http://unix:/path/to.sock"'
    if not isinstance(text, str):
        raise ConfigError(f"{where}: expected an http:// URL such as {example}, got {show(text)}")
    scheme, sep, rest = text.partition("://")
    if not sep:
        raise ConfigError(f"{where}: expected an http:// URL such as {example}, got {show(text)}")
    if scheme.lower() != "http":
        raise ConfigError(
            f"{where}: only http:// backends are supported, got {show(scheme.lower() + '://')} "
            f"in {show(text)}"
        )
    if "?" in rest or "#" in rest:
        raise ConfigError(f"{where}: a proxy URL takes no query or fragment, got {show(text)}")
    path: str | None
    if rest.lower().startswith("unix:"):
        # nginx's form: the socket path ends at the first ":", the URI path follows it.
        socket_path, colon, path_text = rest[5:].partition(":")
        path = path_text if colon else None
        address = Address("unix", path=parse_unix_path(socket_path, where, base_dir))
    else:
        slash = rest.find("/")
        authority, path = (rest, None) if slash < 0 else (rest[:slash], rest[slash:])
        if "@" in authority:
            raise ConfigError(f"{where}: a proxy URL takes no user name or password, got {show(text)}")
        if not authority:
            raise ConfigError(f"{where}: missing host in {show(text)}")
        if authority.startswith("[") and "]" not in authority:
            raise ConfigError(f'{where}: missing "]" in {show(text)}')
        has_port = "]:" in authority if authority.startswith("[") else ":" in authority
        address = parse_address(
            authority if has_port else authority + ":80", where, listener=False
        )
    if path is not None:
        if not _URL_PATH_RE.fullmatch(path):
            raise ConfigError(
                f"{where}: bad path {show(path)} in {show(text)} (must start with \"/\"; "
                f"percent-encode spaces and other characters)"
            )
        if not path.endswith("/"):
            path += "/"
    return ProxyTarget(address, path)

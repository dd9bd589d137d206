"""The access keys (allow, deny, auth) in the configuration, and the gate's address checks."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from frontd.config.load import summary
from frontd.config.model import BasicAuth, Config, Route, VHost
from frontd.errors import Forbidden
from frontd.request import Request
from frontd.rules.access import Access
from tests.unit.test_config import error, load

BCRYPT = "$2y$05$mGA5HgPwitxQ26/mOzQwX.hSRdBcnoWZN3C/YQ.YBgFjYz1Cmf792"  # "secret", htpasswd -B -C 5


@pytest.fixture
def site(tmp_path: Path) -> Path:
    (tmp_path / "www").mkdir()
    (tmp_path / "htpasswd").write_text(f"alice:{BCRYPT}\n")
    return tmp_path


def vhost(extra: str = "", route: str | None = None) -> str:
    text = f'[[vhost]]\nroot = "www"\n{extra}\n'
    if route is not None:
        text += f'[[vhost.route]]\nprefix = "/app/"\nfastcgi = "127.0.0.1:9000"\n{route}\n'
    return text


def test_route_lists_replace_the_vhosts(site: Path) -> None:
    config = load(site, vhost('allow = ["10.0.0.0/8"]\ndeny = ["10.1.0.0/16"]', 'allow = []'))
    v = config.vhosts[0]
    assert v.allow == ("10.0.0.0/8",) and v.deny == ("10.1.0.0/16",)
    assert v.routes[0].allow == () and v.routes[0].deny == ("10.1.0.0/16",)  # deny inherited


def test_auth_inherited_lifted_and_pass_authorization(site: Path) -> None:
    config = load(site, vhost('auth = { realm = "Staff", htpasswd = "htpasswd" }', ""))
    v = config.vhosts[0]
    assert v.auth == BasicAuth("Staff", str(site / "htpasswd"))
    assert v.routes[0].auth == v.auth
    assert v.routes[0].pass_authorization is False  # behind auth the credentials stay with frontd
    config = load(site, vhost('auth = { realm = "Staff", htpasswd = "htpasswd" }', "pass_authorization = true"))
    assert config.vhosts[0].routes[0].pass_authorization is True
    config = load(site, vhost('auth = { realm = "Staff", htpasswd = "htpasswd" }', "auth = false"))
    assert config.vhosts[0].routes[0].auth is None
    assert config.vhosts[0].routes[0].pass_authorization is True  # no auth: as before


@pytest.mark.parametrize(("text", "expected"), [
    (vhost('allow = "10.0.0.0/8"'), 'vhost[0].allow: expected an array of addresses or networks'),
    (vhost('deny = ["10.0.0.1/8"]'), 'vhost[0].deny[0]: "10.0.0.1/8" has host bits set (did you mean "10.0.0.0/8"?)'),
    (vhost('', 'allow = ["nowhere"]'), 'vhost[0].route[0].allow[0]: expected an IP address or network'),
    (vhost('auth = true'), 'vhost[0].auth: expected { realm = "...", htpasswd = "path" } or false'),
    (vhost('auth = { realm = "x" }'), 'vhost[0].auth: missing key "htpasswd"'),
    (vhost('auth = { realm = "x", htpasswd = "htpasswd", user = "a" }'), 'vhost[0].auth: unknown key "user"'),
    (vhost('auth = { realm = "a\\"b", htpasswd = "htpasswd" }'), "vhost[0].auth.realm: must not contain quotes"),
    (vhost('auth = { realm = "x", htpasswd = "missing" }'), "vhost[0].auth.htpasswd: file"),
])
def test_mistakes(site: Path, text: str, expected: str) -> None:
    assert expected in error(site, text)


@pytest.mark.parametrize(("line", "expected"), [
    ("bob:secret", "line 1 (user 'bob'): a plain-text password (htpasswd -p) is refused"),
    ("bob:CirKSiw/u5I3I", "line 1 (user 'bob'): DES crypt (htpasswd -d) is refused"),  # htpasswd -nbd bob secret
    ("bob:$3$abc", "line 1 (user 'bob'): unknown hash scheme '3'"),
    ("bob:$apr1$short$", "line 1 (user 'bob'): a malformed hash"),
    ("no colon here", "line 1: expected user:hash"),
])
def test_refused_htpasswd_lines(site: Path, line: str, expected: str) -> None:
    (site / "bad").write_text(line + "\n")
    message = error(site, vhost('auth = { realm = "x", htpasswd = "bad" }'))
    assert f"vhost[0].auth.htpasswd: {site / 'bad'}: {expected}" in message


def request(client: str, path: str = "/") -> Request:
    return Request(method="GET", target=path, path=path, raw_path=path, query="", http_version="1.1",
                   headers=[], host="", client_addr=client, client_port=1, server_addr="127.0.0.1", server_port=80)


def test_gate_checks_deny_first_and_maps_ipv4_in_ipv6() -> None:
    route = Route(prefix="/", kind="static", directory="/", allow=("10.0.0.0/8",), deny=("10.9.0.0/16",))
    site = VHost(names=(), routes=(route,))
    gate = Access(Config(path="", listen=(), vhosts=(site,))).gate_for(site, route)
    assert gate is not None
    assert asyncio.run(gate.check(request("::ffff:10.1.2.3"), None)) is False  # type: ignore[arg-type]
    for client in ("::ffff:10.9.0.1", "10.9.0.1", "192.0.2.1", "unix:", "2001:db8::1"):
        with pytest.raises(Forbidden):
            asyncio.run(gate.check(request(client), None))  # type: ignore[arg-type]


def test_no_rules_no_gate() -> None:
    site = VHost(names=(), routes=(Route(prefix="/", kind="static", directory="/"),))
    access = Access(Config(path="", listen=(), vhosts=(site,)))
    assert access.gates == {}


def test_authorizer_on_any_route(site: Path) -> None:
    config = load(site, '[[vhost]]\nroot = "www"\n[[vhost.route]]\nprefix = "/s/"\nstatic = "www"\n'
                  'authorizer = ["unix:/run/a.sock", "127.0.0.1:9001"]\n')
    assert [str(a) for a in config.vhosts[0].routes[0].authorizer] == ["unix:/run/a.sock", "127.0.0.1:9001"]
    assert "authorizer=unix:/run/a.sock,127.0.0.1:9001" in summary(config)


@pytest.mark.parametrize(("route", "expected"), [
    ('static = "www"\nauthorizer = true', "route[0].authorizer: authorizer = true needs a fastcgi route with spawn"),
    ('static = "www"\nauthorizer = []', "route[0].authorizer: empty array"),
    ('static = "www"\nauthorizer = "nowhere"', "route[0].authorizer"),
])
def test_authorizer_mistakes(site: Path, route: str, expected: str) -> None:
    assert expected in error(site, f'[[vhost]]\nroot = "www"\n[[vhost.route]]\nprefix = "/s/"\n{route}\n')

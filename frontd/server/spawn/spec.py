"""What a spawn route runs (`AppSpec`), read from the configuration, and its argv placeholders."""

from __future__ import annotations

from dataclasses import dataclass

from frontd.config.model import Address, Config, Route

SD_LISTEN_FDS_START = 3  # sd_listen_fds(3)
FCGI_LISTENSOCK_FILENO = 0  # FastCGI 1.0 §2.2

Account = tuple[int, int, str]  # uid, gid, user name


class SpawnError(Exception):
    """Spawned backends cannot be set up (socket, run_dir); the message names what and why."""


@dataclass(frozen=True, slots=True)
class AppSpec:
    """What one spawn route runs: the same for all its processes."""

    label: str  # "fastcgi example.test/app/", in log lines
    kind: str
    socket: Address
    argv: tuple[str, ...]
    processes: int
    cwd: str
    env: tuple[tuple[str, str], ...]
    user: str | None

    @property
    def fd(self) -> int:
        return FCGI_LISTENSOCK_FILENO if self.kind in ("fastcgi", "uwsgi") else SD_LISTEN_FDS_START


def app_specs(config: Config) -> dict[str, AppSpec]:
    """The spawn routes of `config`, by socket address (what identifies a group across reloads)."""
    specs: dict[str, AppSpec] = {}
    for i, vhost in enumerate(config.vhosts):
        host = vhost.names[0] if vhost.names else f"vhost[{i}]"
        for route in vhost.routes:
            if route.spawn and route.socket is not None:
                specs[str(route.socket)] = spec_of(route, f"{route.kind} {host}{route.prefix}")
    return specs


def spec_of(route: Route, label: str) -> AppSpec:
    assert route.socket is not None
    return AppSpec(label=label, kind=route.kind, socket=route.socket, argv=route.spawn,
                   processes=route.processes, cwd=route.cwd or "/", env=route.env, user=route.user)


def substitute(argv: tuple[str, ...], address: Address, fd: int) -> list[str]:
    """argv with {socket}, {address} and {fd} replaced; nothing else in braces is touched."""
    path = address.path if address.kind == "unix" else str(address)
    return [arg.replace("{socket}", path).replace("{address}", str(address)).replace("{fd}", str(fd))
            for arg in argv]

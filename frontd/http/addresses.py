"""Client addresses against configured networks: allow/deny, status_allow, trusted_proxies.

One rule for all of them: an IPv4-mapped IPv6 address (an IPv4 client of a dual-stack listener)
is compared as IPv4, and a client without an IP address (a Unix-socket client) is in no network.
"""

from __future__ import annotations

import ipaddress

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def client_ip(client: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """A client address as the connection reports it, IPv4-mapped IPv6 ("::ffff:10.0.0.1", an
    IPv4 client of a dual-stack listener) as IPv4; None for Unix-socket clients ("unix:")."""
    try:
        address = ipaddress.ip_address(client.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def client_allowed(client: str, networks: tuple[Network, ...]) -> bool:
    """Whether a client address lies in one of `networks`; a client without one never does."""
    address = client_ip(client)
    return address is not None and any(address in network for network in networks)


def compile_networks(entries: tuple[str, ...]) -> tuple[Network, ...]:
    """Networks as load.py normalised them ("10.0.0.0/8", "::1/128")."""
    return tuple(ipaddress.ip_network(entry) for entry in entries)

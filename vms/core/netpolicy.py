"""Which hosts the server may connect to on a user's behalf (ONVIF probes, camera streams).

A facility manager names the host of a camera; without a fence that is a way to make the
server talk to anything it can reach (its database, a cloud metadata service, an intranet
site). Every address a name resolves to must lie in the configured camera networks, and the
connection goes to the address that was checked (no second lookup an attacker's DNS could
answer differently).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Where cameras live by default: loopback (test peers, a camera proxy on the box), the private
# ranges and carrier-grade NAT. Link-local (cloud metadata services) and public ranges are out.
DEFAULT_CAMERA_NETWORKS = (
    "127.0.0.0/8",
    "::1/128",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "fc00::/7",
)


class HostNotAllowed(ValueError):
    """The host is outside the camera networks, or cannot be resolved."""


def parse_networks(specs: Sequence[str]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(s.strip(), strict=False) for s in specs)


def literal_ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def check_literal(host: str, networks: Sequence[IPNetwork]) -> None:
    """Refuse a literal IP outside the networks (a name is checked when it is connected to)."""
    ip = literal_ip(host)
    if ip is not None and not any(ip in net for net in networks):
        raise HostNotAllowed(f"{host} is not in the camera networks this server may reach")


def resolve_allowed(host: str, port: int, networks: Sequence[IPNetwork]) -> str:
    """The address to connect to for `host`: every address it resolves to must be inside
    `networks` (one outside is a refusal, not a fallback)."""
    ip = literal_ip(host)
    if ip is not None:
        addresses = [ip]
    else:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise HostNotAllowed(f"cannot resolve {host}") from exc
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
        if not addresses:
            raise HostNotAllowed(f"cannot resolve {host}")
    outside = [a for a in addresses if not any(a in net for net in networks)]
    if outside:
        raise HostNotAllowed(f"{host} is not in the camera networks this server may reach")
    return str(addresses[0])

"""Which lab addresses labxblock may contact: the operator's allowed networks over built-in refusals.

A lab's address comes from its template's outputs, so a course author controls it.
Before a worker probes a lab, runs checks in it, or the gateway (or guacd) connects
to it, the address must pass an :class:`AddressPolicy`:

- built-in refusals: loopback, link-local (cloud metadata at 169.254.169.254 among
  them), unspecified, multicast, broadcast and reserved addresses;
- refusals the site adds: the addresses of its own services (database, broker,
  gateway, guacd…);
- the operator's ``allowed_networks``: by default everything else.

The most specific network that holds the address decides; on a tie the operator's
allowance wins. So ``allowed_networks: ["127.0.0.0/8"]`` (the local provider's demo)
allows loopback, while ``["10.0.0.0/8"]`` does not let labs reach a database at
``10.0.0.5`` that the site refuses as ``10.0.0.5/32``.

A host name is resolved once and every address it resolves to must pass; callers
connect to the address returned, never to the name again (no DNS rebinding).
Pure: no Django, so the gateway imports it too.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str], list[str]]

EVERYWHERE: tuple[Network, ...] = (ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0"))

# Refused unless the operator allows them explicitly, with the word an error message uses.
BUILT_IN_REFUSED: Mapping[Network, str] = MappingProxyType(
    {
        ipaddress.ip_network(net): label
        for net, label in (
            ("0.0.0.0/8", "unspecified"),
            ("127.0.0.0/8", "loopback"),
            ("169.254.0.0/16", "link-local (cloud metadata)"),
            ("224.0.0.0/4", "multicast"),
            ("240.0.0.0/4", "reserved"),
            ("255.255.255.255/32", "broadcast"),
            ("::/128", "unspecified"),
            ("::1/128", "loopback"),
            ("fe80::/10", "link-local"),
            ("ff00::/8", "multicast"),
        )
    }
)
SITE_SERVICE = "an address of this site's own services"


class AddressRefused(ValueError):
    """A lab address the policy does not allow; the message says which and why (no secrets in it)."""


def parse_networks(values: Iterable[Any], *, what: str) -> tuple[Network, ...]:
    """CIDR strings (a bare address is a /32 or /128) as networks; ValueError names ``what[i]``."""
    if isinstance(values, str | bytes):
        raise ValueError(f"{what}: expected a list of networks such as '10.0.0.0/8', got a string")
    networks = []
    for index, value in enumerate(values):
        try:
            networks.append(ipaddress.ip_network(str(value).strip(), strict=False))
        except ValueError:
            raise ValueError(f"{what}[{index}]: {value!r} is not a network such as '10.0.0.0/8'") from None
    return tuple(networks)


def normalise(address: str) -> Address:
    """The address as the kernel would use it: IPv4-mapped IPv6 (``::ffff:127.0.0.1``) is IPv4."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # a zone (fe80::1%eth0) names no other host
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def resolve(host: str) -> list[str]:
    """Every address ``host`` resolves to (a literal address resolves to itself, without DNS)."""
    try:
        return [str(normalise(host))]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise AddressRefused(f"lab address {host!r} does not resolve: {exc}") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True)
class AddressPolicy:
    """Allowed networks (the operator's) over refused ones (built in, plus the site's own services)."""

    allowed: tuple[Network, ...] = EVERYWHERE
    refused: tuple[Network, ...] = ()

    def refusal(self, address: str) -> str | None:
        """Why ``address`` is refused, or None if it is allowed."""
        try:
            ip = normalise(address)
        except ValueError:
            return "not an IP address"
        best_allowed = max((n.prefixlen for n in self.allowed if ip in n), default=-1)
        refusals = [(n.prefixlen, BUILT_IN_REFUSED.get(n, SITE_SERVICE)) for n in self._refused() if ip in n]
        best_refused = max(refusals, default=(-1, ""))
        if best_refused[0] > best_allowed:
            return best_refused[1]
        if best_allowed < 0:
            return "outside the allowed networks"
        return None

    def check_address(self, address: str) -> str:
        """``address`` normalised, or AddressRefused."""
        why = self.refusal(address)
        if why is not None:
            raise AddressRefused(f"lab address {address} is not allowed: {why}")
        return str(normalise(address))

    def check(self, host: str, port: Any, *, resolver: Resolver = resolve) -> tuple[str, int]:
        """Validate a lab's host and port; the address to connect to (every resolved one must pass)."""
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise AddressRefused(f"lab port {port!r} is not a port number (1-65535)")
        if not isinstance(host, str) or not host.strip():
            raise AddressRefused("the lab has no address")
        addresses = resolver(host.strip())
        if not addresses:
            raise AddressRefused(f"lab address {host!r} does not resolve")
        checked = [self.check_address(a) for a in addresses]
        return checked[0], port

    def _refused(self) -> tuple[Network, ...]:
        return (*BUILT_IN_REFUSED, *self.refused)


__all__ = [
    "BUILT_IN_REFUSED",
    "EVERYWHERE",
    "AddressPolicy",
    "AddressRefused",
    "normalise",
    "parse_networks",
    "resolve",
]

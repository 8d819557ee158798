"""Who a client is for the per-client caps, and the counts kept under them.

An IPv4 client is its address. An IPv6 client is its network of
``ipv6_client_prefix`` bits (default /64): one host is usually given a whole
/64, so counting each /128 apart would let it open the caps' worth of sockets
from every one of its addresses. An IPv4 address mapped into IPv6 is the IPv4 one.
"""

from __future__ import annotations

import ipaddress
from collections import Counter


def client_key(host: str, ipv6_prefix: int) -> str:
    """The key the per-client caps count ``host`` under (anything not an address: itself)."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network((ip, ipv6_prefix), strict=False))
    return str(ip)


class Slots:
    """Open things per client key, at most ``cap`` each (one event loop: no locking)."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.counts: Counter[str] = Counter()

    def take(self, key: str) -> bool:
        """Count one more for ``key``; False (nothing counted) if it already has ``cap``."""
        if self.counts[key] >= self.cap:
            return False
        self.counts[key] += 1
        return True

    def give(self, key: str) -> None:
        """One of ``key``'s is closed."""
        self.counts[key] -= 1
        if self.counts[key] <= 0:
            del self.counts[key]

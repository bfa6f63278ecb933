"""Which network addresses the crawler may connect to.

A crawled page names URLs; a name can resolve to the crawler's own machine, its network or a
cloud metadata service. Only public (globally routed, unicast) addresses are fetched, unless an
address is on the allow list (``SHOAL_CRAWL_ALLOW_PRIVATE_HOSTS``): entries ``ADDR``,
``ADDR:PORT``, ``[IPv6]:PORT``, a network ``ADDR/BITS`` (any port), or ``*`` for any address.
The tests and the demo allow the one loopback address and port of their local site.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class BadAllowEntry(ValueError):
    """An allow-list entry that is not an address, a network or ``*``."""


@dataclass(frozen=True)
class AllowEntry:
    network: IPNetwork | None  # None: every address
    port: int | None = None  # None: every port

    def allows(self, address: IPAddress, port: int) -> bool:
        in_network = self.network is None or (
            address.version == self.network.version and address in self.network)
        return in_network and (self.port is None or self.port == port)


def parse_allow_entry(text: str) -> AllowEntry:
    entry = text.strip()
    if entry == "*":
        return AllowEntry(None)
    host, port = entry, None
    if entry.startswith("["):  # [::1]:8080 or [::1]
        host, _, rest = entry[1:].partition("]")
        if rest:
            port = _port(rest.removeprefix(":"), text)
    elif entry.count(":") == 1:  # 127.0.0.1:8080 (a bare IPv6 address has several colons)
        host, _, rest = entry.partition(":")
        port = _port(rest, text)
    try:
        network = ipaddress.ip_network(host, strict=False)
    except ValueError:
        raise BadAllowEntry(f"not an address, ADDR:PORT, network or '*': {text!r}") from None
    return AllowEntry(network, port)


def _port(text: str, entry: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise BadAllowEntry(f"bad port in {entry!r}")
    return int(text)


def parse_allow_list(entries: list[str]) -> tuple[AllowEntry, ...]:
    return tuple(parse_allow_entry(e) for e in entries if e.strip())


def canonical(address: str) -> IPAddress:
    """The address itself: an IPv4-mapped IPv6 address (``::ffff:127.0.0.1``) is its IPv4."""
    ip = ipaddress.ip_address(address.strip("[]").split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def literal_address(host: str) -> IPAddress | None:
    """``host`` as an address if it is written as one in canonical form, else None (a name, or
    a legacy spelling such as ``2130706433`` or ``0x7f.1``, which resolution turns into one)."""
    try:
        return canonical(host)
    except ValueError:
        return None


def is_public(address: IPAddress) -> bool:
    """Globally routed unicast: not loopback, private, link-local, shared, reserved, the
    unspecified address (``0.0.0.0`` reaches this machine) or multicast."""
    return address.is_global and not address.is_multicast


def refusal(address: IPAddress, port: int, allowed: tuple[AllowEntry, ...]) -> str | None:
    """Why connecting to ``address:port`` is refused, or None when it may be fetched."""
    if is_public(address) or any(entry.allows(address, port) for entry in allowed):
        return None
    return f"{address} is not a public address"

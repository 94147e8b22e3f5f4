"""The SSRF guard: Headwater never connects to a non-public address unless told it may.

A name is resolved by `GuardedResolver`, which refuses it when any address it resolves to is not
public, and every socket is checked again on the very address it is about to connect to
(`guarded_socket`, a socket factory), so an IP literal, a cached or a re-bound DNS answer cannot
reach loopback, private, link-local (cloud metadata), shared (100.64/10), unspecified, multicast
or reserved space, nor their IPv4-mapped, 6to4, Teredo or NAT64 forms, nor IPv4 spelt in the C
library's legacy numeric forms (`legacy_ipv4_address`: `127.1`, `2130706433`).

    is_forbidden_address("169.254.169.254")    # True
    is_forbidden_address("8.8.8.8")            # False

The forwarder (forwarder.py) turns a `Refused` into the ForbiddenAddress the pipeline answers.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver

from headwater.upstream.transport import ForbiddenAddress

__all__ = ["ForbiddenAddress", "GuardedResolver", "Refused", "guarded_socket", "is_forbidden_address",
           "legacy_ipv4_address"]

_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def is_forbidden_address(address: str) -> bool:
    """True when connecting to `address` (an IP literal, IPv6 scope allowed) must be refused."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return True  # not an address we understand: refuse
    if ip.version == 6:
        if ip.ipv4_mapped is not None:  # ::ffff:a.b.c.d is the IPv4 host a.b.c.d
            return _not_public(ip.ipv4_mapped)
        embedded = ip.sixtofour
        if embedded is None and ip.teredo is not None:
            embedded = ip.teredo[1]
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None and _not_public(embedded):
            return True
    return _not_public(ip)


def _not_public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return (
        not ip.is_global
        or ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )


class Refused(Exception):
    """Raised inside the connector (not an OSError, so aiohttp lets it through untouched)."""

    def __init__(self, address: str):
        super().__init__(address)
        self.address = address


class GuardedResolver(AbstractResolver):
    """aiohttp's default resolver, refusing names that resolve to any non-public address."""

    def __init__(self) -> None:
        self._inner = aiohttp.DefaultResolver()

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> Any:
        hosts = await self._inner.resolve(host, port, family)
        for resolved in hosts:
            if is_forbidden_address(resolved["host"]):
                raise Refused(resolved["host"])
        return hosts

    async def close(self) -> None:
        await self._inner.close()


def legacy_ipv4_address(host: str) -> str | None:
    """The address a host spelt in one of inet_aton's legacy numeric forms means, or None.

        legacy_ipv4_address("127.1")         # "127.0.0.1" (so do "2130706433" and "0x7f.1")
        legacy_ipv4_address("127.0.0.1")     # None: the usual form, which the guard already reads
    """
    try:
        address = socket.inet_ntoa(socket.inet_aton(host))
    except OSError:
        return None
    return None if address == host else address


def guarded_socket(addr_info: tuple) -> socket.socket:
    """The last word: checks the address the socket is about to connect to, whatever resolved it."""
    family, type_, proto, _, sockaddr = addr_info
    if is_forbidden_address(sockaddr[0]):
        raise Refused(sockaddr[0])
    return socket.socket(family=family, type=type_, proto=proto)

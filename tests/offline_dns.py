"""A stand-in for ``socket.getaddrinfo`` that never sends a DNS query: tests must not leave the machine.

IP literals resolve to themselves, ``localhost`` to the loopback address, and the names in ``NAMES`` to
documentation addresses; every other name fails the way an unknown host does.
"""

from __future__ import annotations

import ipaddress
import socket

# Public-looking names for tests of the target check (documentation ranges: never routed anywhere).
NAMES = {
    "hooks.example.com": "192.0.2.10",  # TEST-NET-1: is_global is False, so it also stands for "not public"
    "public.example.net": "8.8.8.8",  # a global address: allowed without an allow-list (never contacted)
    "rebinds.example.org": "10.0.0.7",
}


def offline_resolve(host: str, port, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0):  # noqa: A002
    host = host.strip("[]")
    if host == "localhost":
        host = "127.0.0.1"
    host = NAMES.get(host, host)
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known") from None
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    sockaddr = (str(address), int(port or 0)) if address.version == 4 else (str(address), int(port or 0), 0, 0)
    return [(family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", sockaddr)]

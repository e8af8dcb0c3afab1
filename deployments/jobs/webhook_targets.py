"""Which URLs a webhook may be sent to: no server-side request forgery through `webhook_url`.

A caller must not be able to make the service POST into its own network (the cloud metadata address, the
Redis server, a pod's neighbours). So a target must resolve only to public addresses and use https, unless
its host, one of its addresses or a network containing them is on the configured allow-list. The check runs
when the job is submitted (a 400 that names the field) and again before every delivery, because a name's
addresses can change in between.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from pipelines.common.errors import InvalidInputError

FIELD = "webhook_url"
MAX_URL_CHARS = 2048
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class WebhookTargetError(InvalidInputError):
    """The URL is malformed, or resolves to an address no webhook may reach."""


def check_webhook_url(url: str, allowed_hosts: list[str], *, resolve=socket.getaddrinfo) -> list[Address]:
    """Raise :class:`WebhookTargetError` unless ``url`` may receive webhooks; return the addresses checked."""
    if len(url) > MAX_URL_CHARS:
        raise WebhookTargetError(f"`{FIELD}` is over {MAX_URL_CHARS} characters", field=FIELD)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise WebhookTargetError(f"`{FIELD}` is not a valid URL: {exc}", field=FIELD) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookTargetError(f"`{FIELD}` must be an absolute http(s) URL, got {url[:80]!r}", field=FIELD)
    if parts.username is not None or parts.password is not None:
        raise WebhookTargetError(f"`{FIELD}` must not carry credentials (user:password@)", field=FIELD)
    if parts.fragment:
        raise WebhookTargetError(f"`{FIELD}` must not have a #fragment", field=FIELD)
    host = parts.hostname.lower()
    try:
        infos = resolve(host, port or (443 if parts.scheme == "https" else 80), type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, OSError) as exc:
        raise WebhookTargetError(f"the host of `{FIELD}` ({host}) cannot be resolved: {exc}", field=FIELD) from None
    addresses = sorted({ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos}, key=str)
    if not addresses:
        raise WebhookTargetError(f"the host of `{FIELD}` ({host}) has no address", field=FIELD)
    listed = [address for address in addresses if _allowed(host, address, allowed_hosts)]
    if len(listed) == len(addresses):
        return addresses  # every address is on the allow-list: plain http is fine there
    for address in addresses:
        if address in listed:
            continue
        if not _public(address):
            raise WebhookTargetError(
                f"`{FIELD}` points at {host} ({address}), a {_describe(address)} address; webhooks go only to "
                "public hosts unless the configuration allows this one (ingress.webhooks.allowed_hosts)",
                field=FIELD,
            )
    if parts.scheme != "https":
        raise WebhookTargetError(f"`{FIELD}` must use https (plain http only for allowed hosts)", field=FIELD)
    return addresses


def _allowed(host: str, address: Address, allowed_hosts: list[str]) -> bool:
    for entry in allowed_hosts:
        entry = entry.strip().lower()
        try:
            if address in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            if entry == host:
                return True
    return False


def _public(address: Address) -> bool:
    mapped = getattr(address, "ipv4_mapped", None)
    if mapped is not None:  # ::ffff:127.0.0.1 is loopback too
        address = mapped
    return address.is_global and not address.is_multicast


def _describe(address: Address) -> str:
    for name in ("loopback", "link_local", "private", "multicast", "reserved", "unspecified"):
        if getattr(address, f"is_{name}", False):
            return name.replace("_", "-")
    return "non-public"

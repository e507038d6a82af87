"""Which endpoints the service may send requests to: an optional allowlist of hosts and networks."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
from urllib.parse import urlsplit

from serve_app.errors import RequestError


def normalize_api_url(api_url: str) -> str:
    """evalscope wants the base URL; users often paste the full chat-completions endpoint."""
    url = api_url.rstrip("/")
    for suffix in ("/chat/completions", "/completions"):
        if url.endswith(suffix):
            return url[: -len(suffix)]
    return url


async def check_target(url: str, allowed: list[str]) -> None:
    """Refuse (400) a URL whose host is not allowed; an empty allowlist allows every host.

    An entry is a host name (matched exactly) or an IP network in CIDR form (`10.0.0.0/8`, `127.0.0.1/32`),
    which a host matches when every address it resolves to lies inside an allowed network.
    """
    if not allowed:
        return
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("http", "https") or not host:
        raise RequestError(f"{url!r} is not an http(s) URL")
    names = {entry.lower() for entry in allowed if not _network(entry)}
    if host in names:
        return
    networks = [network for entry in allowed if (network := _network(entry))]
    addresses = await _addresses(host)
    if addresses and networks and all(any(address in network for network in networks) for address in addresses):
        return
    raise RequestError(f"target host {host!r} is not allowed here; allowed targets: {', '.join(allowed)}")


def _network(entry: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    try:
        return ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return None


async def _addresses(host: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError:
        return []
    return [ipaddress.ip_address(info[4][0]) for info in infos]


async def unreachable_reason(url: str, timeout_s: float) -> str | None:
    """Why a TCP connection to the URL's host and port cannot be opened, or None when it can."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(parts.hostname, port), timeout_s)
    except asyncio.TimeoutError:
        return f"{parts.hostname}:{port} did not accept a connection within {timeout_s:g} s"
    except OSError as exc:
        # asyncio words a refused connection as "Connect call failed"; the errno says what happened.
        known_errno = exc.errno and not isinstance(exc, socket.gaierror)
        return f"{parts.hostname}:{port}: {os.strerror(exc.errno) if known_errno else exc.strerror or exc}"
    writer.close()
    return None

"""Which host a request may name, and which peers' forwarded headers are believed.

Absolute URLs in answers (result files by reference) are built from ``public_url`` when
it is set, else from the address the request was sent to. So that a client cannot make
the service sign URLs to a host of its choosing (``Host: attacker.example``), every
request is checked by :class:`HostGuard`, outermost in the app:

- ``X-Forwarded-Host``/``-Proto``/``-For`` and ``Forwarded`` count only from a peer in
  ``forwarded_allow_ips`` (default ``127.0.0.1``, uvicorn's setting of that name); from
  anyone else they are ignored;
- the host (after that) must be in ``allowed_hosts``, else ``400 {"detail": "invalid
  host ..."}``. The default list: the bind address, ``localhost``, ``127.0.0.1``,
  ``::1`` and ``public_url``'s host; bound to ``0.0.0.0`` or ``::``, also the machine's
  own names and addresses. ``*`` allows any host (URLs then follow it: set
  ``public_url``). A leading dot (``.example.com``) allows the domain and its subdomains.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

import psutil
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from apipod.config import Config

logger = logging.getLogger(__name__)

_ANY_ADDRESS = ("0.0.0.0", "::", "")
_LOOPBACK = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class HostPolicy:
    """``allowed``: host names (lower case, no port); ``any_host``: ``*`` was given."""

    allowed: frozenset[str]
    suffixes: tuple[str, ...]
    any_host: bool
    trusted: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    trust_all: bool

    @classmethod
    def from_config(cls, config: Config) -> HostPolicy:
        names = list(config.allowed_hosts) or default_hosts(config)
        entries = {n.strip().lower().strip("[]") for n in names if n.strip()}
        networks = tuple(
            ipaddress.ip_network(ip, strict=False) for ip in config.forwarded_allow_ips if ip != "*"
        )
        return cls(
            allowed=frozenset(e for e in entries if not e.startswith(".")),
            suffixes=tuple(e for e in entries if e.startswith(".")),
            any_host="*" in entries,
            trusted=networks,
            trust_all="*" in config.forwarded_allow_ips,
        )

    def allows(self, host: str) -> bool:
        if self.any_host:
            return True
        name = host_name(host)
        return name in self.allowed or any(name.endswith(s) or name == s[1:] for s in self.suffixes)

    def trusts(self, peer: str | None) -> bool:
        if self.trust_all:
            return True
        if not peer:
            return False
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return False
        return any(address in network for network in self.trusted)


def default_hosts(config: Config) -> list[str]:
    """The bind address, loopback names and ``public_url``'s host; for a wildcard bind
    also this machine's host name and interface addresses. Not ``getfqdn()``: it asks
    DNS, and this runs on the event loop at the first request (a slow resolver would stall
    every connection); a name DNS gives the box goes in ``allowed_hosts``."""
    hosts = [config.host, *_LOOPBACK]
    if config.public_url:
        hosts.append(urlsplit(config.public_url).hostname or "")
    if config.host in _ANY_ADDRESS:
        hosts += [socket.gethostname(), *_interface_addresses()]
    return [h for h in hosts if h and h not in _ANY_ADDRESS]


def _interface_addresses() -> Iterable[str]:
    try:
        interfaces = psutil.net_if_addrs()
    except (OSError, psutil.Error):
        return []
    families = (socket.AF_INET, socket.AF_INET6)
    return [
        a.address.split("%")[0]
        for addresses in interfaces.values()
        for a in addresses
        if a.family in families
    ]


def _answers_as(policy: HostPolicy, host: str, scope: Scope) -> bool:
    """``host`` is allowed, or is the address this connection arrived at (the socket's
    own, which a client cannot choose: ``testserver`` under Starlette's TestClient)."""
    if policy.allows(host):
        return True
    server = scope.get("server")
    return bool(server) and host_name(host) == str(server[0]).lower().strip("[]")


def host_name(host: str) -> str:
    """``host`` without its port and IPv6 brackets, lower case (``[::1]:80`` -> ``::1``)."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host[1:]
    if host.count(":") == 1:
        return host.split(":", 1)[0]
    return host


class HostGuard:
    """ASGI wrapper applying :class:`HostPolicy` (see the module docstring)."""

    def __init__(self, app: ASGIApp, config_of: Callable[[], Config]) -> None:
        self._app = app
        self._config_of = config_of
        self._cached: tuple[Config, HostPolicy, ASGIApp] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self._app(scope, receive, send)
            return
        policy, proxied = self._policy()
        client = scope.get("client")
        if policy.trusts(client[0] if client else None):
            _apply_forwarded_host(scope)
            inner = proxied  # uvicorn's middleware applies X-Forwarded-Proto and -For
        else:
            inner = self._app
        host = _header(scope, b"host")
        # No Host header: URLs use the address the server is bound to. /health makes no
        # URL, and load balancers probe it by whatever address they know.
        if host is not None and not _answers_as(policy, host, scope) and scope["path"] != "/health":
            await _refuse(host, scope, send)
            return
        await inner(scope, receive, send)

    def _policy(self) -> tuple[HostPolicy, ASGIApp]:
        config = self._config_of()
        if self._cached is None or self._cached[0] is not config:
            policy = HostPolicy.from_config(config)
            proxied = ProxyHeadersMiddleware(self._app, trusted_hosts="*")
            self._cached = (config, policy, proxied)
        return self._cached[1], self._cached[2]


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


def _apply_forwarded_host(scope: Scope) -> None:
    """A trusted proxy's ``X-Forwarded-Host`` (or ``Forwarded: host=``, and its
    ``proto=``) becomes the request's host (and scheme)."""
    forwarded = _forwarded_pairs(_header(scope, b"forwarded"))
    host = _header(scope, b"x-forwarded-host") or forwarded.get("host")
    if forwarded.get("proto") in ("http", "https") and not _header(scope, b"x-forwarded-proto"):
        scope["scheme"] = forwarded["proto"]
    if host:
        host = host.split(",")[0].strip()
        headers = [(k, v) for k, v in scope["headers"] if k != b"host"]
        scope["headers"] = [*headers, (b"host", host.encode("latin-1"))]


def _forwarded_pairs(value: str | None) -> dict[str, str]:
    """The first element of an RFC 7239 ``Forwarded`` header, as lower-case keys."""
    if not value:
        return {}
    pairs: dict[str, str] = {}
    for part in value.split(",")[0].split(";"):
        key, _, text = part.partition("=")
        pairs[key.strip().lower()] = text.strip().strip('"')
    return pairs


async def _refuse(host: str, scope: Scope, send: Send) -> None:
    if scope["type"] != "http":  # a websocket: refused before it is accepted
        await send({"type": "websocket.close", "code": 1008})
        return
    shown = host[:100]
    logger.info("refused a request for host %r (not in allowed_hosts)", shown)
    detail = f"invalid host {shown!r}: this service does not answer as that host (allowed_hosts)"
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 400, "headers": headers})
    await send({"type": "http.response.body", "body": body})
